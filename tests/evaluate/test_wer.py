"""weightwise.evaluate.wer / normalize on hand-made examples (counts worked out by hand)."""

from __future__ import annotations

import pytest

from weightwise.evaluate import normalize, normalizer_name, word_errors


def _counts(refs, hyps):
    c = word_errors(refs, hyps)
    return c.substitutions, c.deletions, c.insertions, c.n_ref_words


def test_perfect_match():
    c = word_errors(["the cat sat"], ["the cat sat"])
    assert _counts(["the cat sat"], ["the cat sat"]) == (0, 0, 0, 3)
    assert c.wer == 0.0


def test_one_substitution_one_deletion():
    # the cat SAT on THE mat -> the cat SIT on mat: sat->sit (S), "the" missing (D)
    c = word_errors(["the cat sat on the mat"], ["the cat sit on mat"])
    assert _counts(["the cat sat on the mat"], ["the cat sit on mat"]) == (1, 1, 0, 6)
    assert c.wer == pytest.approx(2 / 6)


def test_insertion():
    assert _counts(["a b c"], ["a x b c"]) == (0, 0, 1, 3)
    assert word_errors(["a b c"], ["a x b c"]).wer == pytest.approx(1 / 3)


def test_everything_deleted_and_everything_inserted():
    assert _counts(["one two three four"], [""]) == (0, 4, 0, 4)
    assert word_errors(["one two three four"], [""]).wer == 1.0
    c = word_errors(["a"], ["b c d"])  # one substitution + two insertions
    assert _counts(["a"], ["b c d"]) == (1, 0, 2, 1)
    assert c.wer == 3.0  # WER can exceed 1


def test_corpus_counts_are_summed_not_averaged():
    refs = ["the cat sat on the mat", "a b c", "hello world"]
    hyps = ["the cat sit on mat", "a x b c", "hello world"]
    # utterance WERs 2/6, 1/3, 0 average to 0.222; the corpus WER is (1+1+1)/(6+3+2) = 3/11
    c = word_errors(refs, hyps)
    assert _counts(refs, hyps) == (1, 1, 1, 11)
    assert c.wer == pytest.approx(3 / 11)


def test_empty_reference():
    assert word_errors([""], [""]).wer == 0.0
    c = word_errors([""], ["noise words"])
    assert (c.insertions, c.n_ref_words, c.wer) == (2, 0, 1.0)


def test_bad_arguments():
    with pytest.raises(ValueError):
        word_errors(["a"], ["a", "b"])
    with pytest.raises(ValueError):
        word_errors([], [])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello, World!", "hello world"),
        ("HE COULD WAIT NO LONGER", "he could wait no longer"),
        ("He could wait no longer.", "he could wait no longer"),
        ("Mr. Smith", "mister smith"),
        ("Dr. Jones", "doctor jones"),
        ("Keep an eye on him.", "keep an eye on him"),
        ("STUFF IT INTO YOU HIS BELLY COUNSELLED HIM", "stuff it into you his belly counseled him"),
        ("  spaced   out\ttext\n", "spaced out text"),
        ("I'm glad", "i am glad"),
        ("", ""),
        (None, ""),
    ],
)
def test_normalize_examples(text, expected):
    assert normalize(text) == expected


def test_normalize_makes_reference_and_hypothesis_styles_agree():
    assert normalize("Wash your hands of me.") == normalize("WASH YOUR HANDS OF ME")
    assert word_errors([normalize("Mr. Brown's colour")], [normalize("mister brown's color")]).wer == 0.0


def test_normalizer_name_has_a_version():
    from importlib.metadata import version

    assert normalizer_name().endswith("==" + version("whisper-normalizer"))
    assert "EnglishTextNormalizer" in normalizer_name()
