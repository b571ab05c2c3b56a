# Set-up from nothing: a virtual environment with the pinned torch, then the extension, then the command.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEPS   := $(VENV)/.deps-installed
BUILT  := $(VENV)/.cnnfast-built
SOURCES := setup.py pyproject.toml $(shell find csrc -type f 2>/dev/null)

.PHONY: all check test bench build clean gpu-check

all: bench

$(DEPS): requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

# --no-build-isolation: build against the torch already in .venv instead of a second copy.
$(BUILT): $(DEPS) $(SOURCES)
	$(BIN)/python -m pip install --no-build-isolation --no-deps --editable .
	touch $@

build: $(BUILT)

check: $(BUILT)
	$(BIN)/cnnfast check

test: $(BUILT)
	$(BIN)/python -m pytest tests

bench: $(BUILT)
	$(BIN)/cnnfast bench --json bench.json --plot bench.png

# On a machine with a CUDA GPU: build for that GPU, run the GPU tests, bench every kernel against
# cuDNN and run compute-sanitizer, all time-boxed, results in $OUT or gpu-check/ (docs/gpu-check.md).
# It uses the python3 and torch it finds there, not .venv; without a GPU it stops at once.
# GPU_CHECK_FLAGS passes flags on, e.g. GPU_CHECK_FLAGS=--dry-run (see tools/gpu_check.py --help).
gpu-check:
	$(PYTHON) tools/gpu_check.py $(GPU_CHECK_FLAGS)

clean:
	rm -rf build $(VENV) *.egg-info cnnfast/*.so cnnfast/_build_config.py
