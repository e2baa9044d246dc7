# `make demo`: set up and run the main job.  `make test`: set up and run the tests.
# Each creates .venv (pinned requirements) and builds the kernels in place; CUDA kernels are
# compiled when nvcc is found (TORCH_CUDA_ARCH_LIST picks the GPUs; see setup.py).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SOURCES := setup.py $(wildcard csrc/*.cpp csrc/*.h csrc/cpu/*.cpp csrc/cpu/*.h csrc/cuda/*.cu csrc/cuda/*.cuh)

.PHONY: setup build test demo bench lint clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed

$(VENV)/.built: $(VENV)/.installed $(SOURCES)
	$(PY) setup.py build_ext --inplace
	touch $@

build: $(VENV)/.built

test: build
	$(PY) -m pytest -q --durations=25 tests

demo: build
	$(PY) tools/quickstart.py

bench: build
	$(PY) bench/bench_ops.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/clang-format --dry-run --Werror csrc/*.cpp csrc/*.h csrc/cpu/*.cpp csrc/cpu/*.h csrc/cuda/*.cu csrc/cuda/*.cuh

clean:
	rm -rf build dets/*.so dets/_build_info.py $(VENV)
