"""From sensitivity (KL, nats per token) to a predicted WER increase (points), checked on the audio.

Calibration audio has no transcripts, so the WER a plan adds is measured against the float model's
own transcripts of it ("pseudo-WER": the words the plan changes). Predicted increase of a plan =
alpha x the sum of its groups' KL (additive across groups, an approximation). alpha is fitted on
pseudo-WER points measured on the calibration audio: it starts at the pooled ratio
sum(pseudo-WER) / sum(KL) of the uniform baselines that have scores, then each plan the planner
proposes is measured (closed loop) and alpha is bisected (`AlphaSearch`): a plan that overshoots
the budget raises alpha, one that holds it lowers alpha to try a bolder plan. The lowest-energy plan
whose MEASURED pseudo-WER fits the budget is kept, and its alpha is the map reported.

Pseudo-WER counts changed words, not new errors: a plan that flips "lady's" to "ladies'" costs a
word even where both are wrong, so it over-states the WER increase measured against references
(whisper-tiny.en, 64 train-clean-100 utterances: uniform int8 weights changed 0.50 points of words
there and cost +0.21 on test-other). With a transcribed tuning manifest (`--tune`), the closed loop
measures the real WER increase on it instead (`wer_points`, plan minus the float model), so the
budget is spent on errors, not on churn; the KL sensitivities still need no transcripts.

A plan is accepted on a paired interval, not on its point value (`Delta`): the per-utterance
differences in errors against the float model give the increase's standard error (a ratio estimator
over utterances), and the upper bound at `confidence` must fit the budget. On 3,550 tuning words the
loop's plans measured -0.56 to +0.50 for summed KLs 0.0065 to 0.013: taking the cheapest plan whose
point value fit the budget picked lucky draws (+0.39 there, +1.21 on test-other).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import torch

from weightwise.compress.candidates import Candidate, Group, applied
from weightwise.compress.sensitivity import Reference
from weightwise.data import Manifest, iter_audio
from weightwise.decode import DecodingOptions, transcribe
from weightwise.errors import InputError
from weightwise.evaluate.normalize import normalize, normalizer_for
from weightwise.evaluate.wer import word_errors

Normalizer = Callable[[str | None], str]
Encoder = Callable[[object, torch.Tensor], torch.Tensor]  # (model, window features) -> encoder output
DEFAULT_ALPHA = 30.0  # WER points per nat of mean per-token KL, used only when no point moved a word


@dataclass(frozen=True)
class CalibPoint:
    name: str  # "uniform:<label>" or "plan:<round>"
    kl_sum: float  # nats per token, summed over the plan's groups
    pseudo_wer_points: float  # measured in the closed loop (pseudo-WER, or the WER increase with --tune)
    alpha: float | None = None  # the alpha that produced this plan (plans only)
    labels: dict | None = None  # planned groups per candidate label (plans only)
    upper_points: float | None = None  # the paired interval's upper bound (what the budget gate reads)
    # the same increase on each `--tune` manifest alone (several given): {source: Delta fields}
    parts: dict | None = None


@dataclass(frozen=True)
class Delta:
    """A WER increase (points) measured in the closed loop, with its paired standard error.

    `upper_points` = points + z x se_points, z the one-sided normal quantile of the loop's
    confidence: the bound the budget gate compares (z = 0: the point value)."""

    points: float
    se_points: float = 0.0
    z: float = 0.0
    utterances: int = 0
    words: int = 0
    parts: tuple[tuple[str, Delta], ...] = ()  # (source, its Delta) per tuning manifest, when several

    @property
    def upper_points(self) -> float:
        return self.points + self.z * self.se_points

    def parts_dict(self) -> dict | None:
        """{source: {points, se_points, upper_points, utterances, words}} of the parts, or None."""
        if not self.parts:
            return None
        fields = ("points", "se_points", "upper_points", "utterances", "words")
        return {source: {f: getattr(d, f) for f in fields} for source, d in self.parts}

    @classmethod
    def of(cls, value: Delta | float) -> Delta:
        """A `Delta` as is; a bare number (a measurement without per-utterance counts) as its point."""
        return value if isinstance(value, Delta) else cls(float(value))


def z_of(confidence: float) -> float:
    """One-sided normal quantile: 0.5 -> 0 (the point value), 0.9 -> 1.28."""
    return NormalDist().inv_cdf(confidence)


def paired_delta(errors: Sequence[int], float_errors: Sequence[int], words: Sequence[int], z: float) -> Delta:
    """Increase of corpus WER (points) from `float_errors` to `errors` (per utterance, same
    order, `words` reference words each), and its standard error: the ratio estimator's
    linearised variance over utterances, n / (n - 1) x sum((d_i - delta x w_i)^2) / W^2 (paired:
    an utterance both models get wrong the same way adds nothing)."""
    if not (len(errors) == len(float_errors) == len(words)) or not words:
        sizes = f"{len(errors)}/{len(float_errors)}/{len(words)}"
        raise ValueError(f"paired_delta needs equal, non-empty lists, got {sizes}")
    total, n = sum(words), len(words)
    diffs = [e - f for e, f in zip(errors, float_errors, strict=True)]
    delta = sum(diffs) / total
    spread = sum((d - delta * w) ** 2 for d, w in zip(diffs, words, strict=True))
    se = math.sqrt(n / (n - 1) * spread) / total if n > 1 else 0.0
    return Delta(100.0 * delta, 100.0 * se, z, n, total)


#: Points that changed more words than this are left out of the fit: a model that no longer
#: transcribes (50% magnitude pruning or low-rank everywhere: KL ~7 nats, pseudo-WER ~100) has
#: saturated and would pull alpha far below its value for the small changes a budget allows.
SATURATED_POINTS = 20.0
#: A uniform probe whose summed KL is above this is not measured at all: it would be left out of the
#: fit as saturated anyway (whisper-tiny.en: 50% magnitude pruning or low-rank 95% on the decoder,
#: ~7 nats per token, decode to ~100% WER, each to the 224-token limit on every utterance), while
#: int4 on every decoder weight sums to ~0.1.
SATURATED_KL = 1.0


def fit_alpha(points: list[CalibPoint]) -> float | None:
    """Pooled ratio sum(pseudo-WER) / sum(KL) over the unsaturated `points`; None if none moved a word."""
    used = [p for p in points if p.kl_sum > 0 and p.pseudo_wer_points <= SATURATED_POINTS]
    x = sum(p.kl_sum for p in used)
    y = sum(p.pseudo_wer_points for p in used)
    return y / x if x > 0 and y > 0 else None


@dataclass
class AlphaSearch:
    """Bisection (in log space) on alpha: a larger alpha gives a more cautious plan. `low` is the
    largest alpha whose plan overshot the budget on the calibration audio, `high` the smallest whose
    plan held it; without both, the search steps by `factor` towards the missing side."""

    alpha: float
    low: float | None = None
    high: float | None = None
    factor: float = 4.0

    def update(self, pseudo_wer_points: float, budget: float) -> float | None:
        """Record the measurement of the plan made with `alpha`; the next alpha, or None when done."""
        if pseudo_wer_points > budget:
            self.low = max(self.low or 0.0, self.alpha)
        else:
            self.high = min(self.high or float("inf"), self.alpha)
        if self.low is not None and self.high is not None:
            if self.high / self.low < 1.25:
                return None
            self.alpha = (self.low * self.high) ** 0.5
        elif self.high is not None:
            self.alpha = self.high / self.factor
        else:
            self.alpha = self.low * self.factor
        return self.alpha


def check_calib_words(reference: Reference, budget: float, source: str, norm: Normalizer = normalize) -> int:
    """Words in the float model's transcripts of the calibration audio (see `check_words`)."""
    return check_words(
        [text for _utt, text in reference.transcripts], budget, f"--calib {source}", "the float model says", norm
    )


def check_words(
    texts: list[str], budget: float, where: str, who: str = "its transcripts hold", norm: Normalizer = normalize
) -> int:
    """Words in `texts`; a one-line InputError when one changed word already costs more than the
    budget (every plan that moves a word would fail the closed-loop check, so only the dense
    weights could be chosen)."""
    words = sum(len(norm(text).split()) for text in texts)
    if words == 0 or 100.0 / words > budget:
        raise InputError(
            f"{where}: {who} {words} words, so one changed word is {100.0 / max(words, 1):.2f} WER points, "
            f"more than --wer-budget {budget:g}; use more audio"
        )
    return words


@dataclass(frozen=True)
class UtteranceErrors:
    """Word errors per utterance (those with reference words), in manifest order."""

    errors: tuple[int, ...]
    words: tuple[int, ...]
    ids: tuple[str, ...] = ()  # the utterances counted, same order (empty: not recorded)

    @property
    def wer_points(self) -> float:
        return 100.0 * sum(self.errors) / sum(self.words) if self.words else 0.0

    def delta(self, base: UtteranceErrors | None, z: float, parts: Sequence[tuple[str, frozenset]] = ()) -> Delta:
        """This model's increase over `base` (None: a reference with no errors, as pseudo-WER's).

        `parts`: (source, utterance ids) of the manifests the audio was joined from; each part's own
        increase is then recorded in `Delta.parts` (the pooled one stays what the gate reads)."""
        if not self.words:
            return Delta(0.0, 0.0, z)
        base_errors = base.errors if base else (0,) * len(self.errors)
        pooled = paired_delta(self.errors, base_errors, self.words, z)
        split = []
        for source, ids in parts:
            rows = [i for i, utt in enumerate(self.ids) if utt in ids]
            if rows:
                pick = [[seq[i] for i in rows] for seq in (self.errors, base_errors, self.words)]
                split.append((source, paired_delta(*pick, z)))
        return dataclasses.replace(pooled, parts=tuple(split))


@torch.inference_mode()
def pseudo_wer_points(model, manifest: Manifest, reference: Reference, options: DecodingOptions) -> float:
    """WER (points) of `model`'s transcripts against the reference model's on the same audio."""
    return pseudo_errors(model, manifest, reference, options).wer_points


@torch.inference_mode()
def wer_points(model, manifest: Manifest, options: DecodingOptions) -> float:
    """WER (points) of `model` against the manifest's own transcripts (the `--tune` audio)."""
    return utterance_errors(model, manifest, options).wer_points


def pseudo_errors(
    model, manifest: Manifest, reference: Reference, options: DecodingOptions, encoder: Encoder | None = None
) -> UtteranceErrors:
    """`model`'s word errors per utterance against the reference model's transcripts (`encoder`:
    passed to `transcribe`, e.g. a bound `weightwise.optimize.encoder_memo.EncoderMemo`)."""
    return _errors(model, manifest, dict(reference.transcripts), options, encoder)


def utterance_errors(
    model, manifest: Manifest, options: DecodingOptions, encoder: Encoder | None = None
) -> UtteranceErrors:
    """`model`'s word errors per utterance against the manifest's own transcripts."""
    return _errors(model, manifest, {u.id: u.text or "" for u in manifest}, options, encoder)


@torch.inference_mode()
def _errors(
    model, manifest: Manifest, refs: dict[str, str], options: DecodingOptions, encoder: Encoder | None
) -> UtteranceErrors:
    errors, words, ids, norm = [], [], [], normalizer_for(model)
    for utt, samples in iter_audio(manifest):
        ref = norm(refs[utt.id])
        if ref.strip():  # an utterance with no reference words has none to change
            text = transcribe(model, samples, options, encoder=encoder).text
            counts = word_errors([ref], [norm(text)])
            errors.append(counts.substitutions + counts.deletions + counts.insertions)
            words.append(counts.n_ref_words)
            ids.append(utt.id)
    return UtteranceErrors(tuple(errors), tuple(words), tuple(ids))


@contextlib.contextmanager
def all_applied(model, assignment: dict[Group, Candidate], context=None):
    """Every group of `assignment` compressed in place for the block, then restored."""
    with contextlib.ExitStack() as stack:
        for group, candidate in assignment.items():
            stack.enter_context(applied(model.network, group, candidate.config, context))
        yield model
