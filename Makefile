# weightwise: `make demo` sets up and runs the main job; `make test` runs the tests.
VENV ?= .venv
PY := $(VENV)/bin/python
WW := $(VENV)/bin/weightwise

.PHONY: setup demo test bench-foundation
setup: $(VENV)/.installed

# torch goes first and pinned: with no torch present, a dependency would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[peer,dev,plots,ray,onnx]'
	# silero-vad (stream --vad) without its dependencies: its extras pull torchaudio, which replaces torch
	$(PY) -m pip install -q --no-deps 'silero-vad>=6.2,<7'
	touch $@

# The main job on the bundled samples: dense fp16 next to the committed optimized plan (energy per
# audio-second on jetson-orin-nano, the cut, WER, the top tensors) and where the optimizer's report is.
# Attention is assumed fused (score matrices on-chip) for both, as the plan's runtime says.
PLAN ?= benchmarks/plans/whisper-tiny.en-jetson-orin-nano.json
DEMO_DEVICE ?= jetson-orin-nano
demo: setup
	mkdir -p results/demo
	$(WW) profile --model whisper-tiny.en --precision fp16 --fused-attention --device $(DEMO_DEVICE) \
	  --data samples --threads 2 --out results/demo/fp16.json
	$(WW) profile --model whisper-tiny.en --precision fp16 --plan $(PLAN) --device $(DEMO_DEVICE) \
	  --data samples --threads 2 --out results/demo/plan.json
	$(PY) benchmarks/demo_summary.py results/demo/fp16.json results/demo/plan.json \
	  --report benchmarks/results/optimize/whisper-tiny.en-jetson-orin-nano-silver15/report.html

# pytest: two workers, one test file each at a time (module fixtures stay in one process; each worker
# has its own weights cache, tests/conftest.py): 11:37 -> 8:00 for the suite on 2 cores.
# lint-imports: the layers contract in pyproject.toml ([tool.importlinter]); ruff: [tool.ruff] there
# (`ruff format --check src tests benchmarks` joins them once the tree has had its one format pass)
test: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=10

bench-foundation: setup
	PATH=$(VENV)/bin:$$PATH bash benchmarks/foundation_wer.sh
