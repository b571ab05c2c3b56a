# Set-up from nothing: a virtual environment with the pinned torch, then the extension, then the command.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEPS   := $(VENV)/.deps-installed
BUILT  := $(VENV)/.cnnfast-built
SOURCES := setup.py pyproject.toml $(shell find csrc -type f 2>/dev/null)

.PHONY: all check test bench build clean gpu-check test-torch213

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
# GPU_CHECK_FLAGS passes flags on (tools/gpu_check.py --help); GPU_CHECK_FLAGS=--dry-run runs it on the
# CPU, with a python that has torch and the build (PYTHON=.venv/bin/python here).
gpu-check:
	$(PYTHON) tools/gpu_check.py $(GPU_CHECK_FLAGS)

# The oldest torch at hand, 2.13.0 (the CPU-only build on this machine's disk), in a second venv: the
# extension is built against it in a copy of the checkout (build/torch213/src, so that the in-place
# build against .venv's torch is left alone) and the CPU test suite runs there. torchvision is not
# installed (PyPI's builds do not load beside this torch), so the tests that need it skip.
# TORCH213_TESTS: the suite less the CUDA kernels run through the CUDA-on-CPU harness (its own tests
# in test_cuda_on_cpu.py and test_cuda_on_cpu_sm80.py, the tensor-core engine's in test_conv2d_mma.py,
# the machine-code checks in test_cuda_kernels.py, and each op's
# test_cuda_kernel_* tests in tests/test_<op>.py): g++ builds of the CUDA kernels' source, which
# includes no torch header, so the torch version changes only their float64 reference; they are a
# third of the suite's time. tests/test_bench_rivals.py needs the rivals extra (ONNX Runtime, OpenVINO),
# which this stage does not install.
# Measured here on 2 shared cores (load average about 3): these tests 2.6 min, the stage 6.5 min
# from a new venv (venv 1 min, copy and CPU-only build 2.8 min); the whole suite's tests took 3.1
# to 6 min.
TORCH213      := .venv-torch213
TORCH213_BIN  := $(TORCH213)/bin
TORCH213_DEPS := $(TORCH213)/.deps-installed
TORCH213_SRC  := build/torch213/src
TORCH213_TESTS ?= tests --ignore=tests/test_cuda_on_cpu.py --ignore=tests/test_cuda_on_cpu_sm80.py \
	--ignore=tests/test_conv2d_mma.py --ignore=tests/test_cuda_kernels.py --ignore=tests/test_bench_rivals.py \
	-k "not test_cuda_kernel"

$(TORCH213_DEPS):
	test -x $(TORCH213_BIN)/python || $(PYTHON) -m venv $(TORCH213)
	$(TORCH213_BIN)/python -m pip install --quiet --upgrade pip
	$(TORCH213_BIN)/python -m pip install --quiet torch==2.13.0 numpy ninja setuptools wheel pytest pytest-benchmark \
		hypothesis tqdm matplotlib scikit-learn scikit-image
	touch $@

test-torch213: $(TORCH213_DEPS)
	rm -rf $(TORCH213_SRC) && mkdir -p $(TORCH213_SRC)
	git ls-files -z --cached --others --exclude-standard | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C $(TORCH213_SRC)
	cd $(TORCH213_SRC) && CNNFAST_CUDA=0 $(CURDIR)/$(TORCH213_BIN)/python setup.py build_ext --inplace
	cd $(TORCH213_SRC) && $(CURDIR)/$(TORCH213_BIN)/python -m pytest $(TORCH213_TESTS)

clean:
	rm -rf build $(VENV) $(TORCH213) *.egg-info cnnfast/*.so cnnfast/_build_config.py
