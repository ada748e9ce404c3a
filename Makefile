# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out
export HF_HUB_OFFLINE ?= 1
export TORCH_EXTENSIONS_DIR ?= $(HOME)/.cache/slp/torch_extensions

.PHONY: install demo test test-fast lint clean

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

demo: $(STAMP)
	$(PY) scripts/demo.py --out $(DEMO_OUT)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) lint
	$(PY) -m pytest -q -ra

# The default suite without the slow end-to-end runs (multi-process DeepSpeed, learning tests).
test-fast: $(STAMP) lint
	$(PY) -m pytest -q -ra -m "not slow"

clean:
	rm -rf $(DEMO_OUT) .pytest_cache .ruff_cache
