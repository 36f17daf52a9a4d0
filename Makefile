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
	$(PY) -m pip install -q -e '.[peer,dev,plots,ray]'
	# silero-vad (stream --vad) without its dependencies: its extras pull torchaudio, which replaces torch
	$(PY) -m pip install -q --no-deps 'silero-vad>=6.2,<7'
	touch $@

demo: setup
	$(WW) transcribe src/weightwise/data/samples/*.flac
	$(WW) eval --model whisper-tiny.en --data samples --peer faster-whisper --out results/demo.json

# lint-imports: the layers contract in pyproject.toml ([tool.importlinter]); ruff: [tool.ruff] there
# (`ruff format --check src tests benchmarks` joins them once the tree has had its one format pass)
test: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(PY) -m pytest -q --durations=10

bench-foundation: setup
	PATH=$(VENV)/bin:$$PATH bash benchmarks/foundation_wer.sh
