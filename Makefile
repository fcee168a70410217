# Two commands on a fresh machine: `make demo` and `make test`. Both bootstrap .venv from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.exray-installed
# CPU wheel of PyTorch first, pinned, so that nothing pulls the CUDA build.
TORCH  := torch==2.13.0

.PHONY: venv test test-rebuilds lint demo bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "exray needs Python >= 3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

# The tests whose outcome depends on trained weights (-m trained), on rebuilt fixtures: three other seeds,
# then two training threads (a stand-in for another CPU's float order). Each variant caches its own tiny zoo.
REBUILD_SEEDS ?= 1 2 3
test-rebuilds: $(STAMP)
	for seed in $(REBUILD_SEEDS); do \
	  EXRAY_TEST_SEED=$$seed $(BIN)/python -m pytest -n 2 --dist loadgroup -q -m trained || exit 1; \
	done
	EXRAY_TEST_THREADS=2 $(BIN)/python -m pytest -n 2 --dist loadgroup -q -m trained

demo: $(STAMP)
	$(BIN)/exray demo

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
