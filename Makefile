# fomm-pipeline: each target creates .venv when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/pip -qq --disable-pip-version-check

.PHONY: demo test lint bench venv clean

venv: $(STAMP)

# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build. pip at -qq prints errors only.
$(STAMP): pyproject.toml constraints.txt
	@echo "installing into $(VENV) (a few minutes the first time)"
	@test -d $(VENV) || $(PY) -m venv $(VENV)
	@$(PIP) install --upgrade pip
	@$(PIP) install torch==2.13.0
	@$(PIP) install -c constraints.txt -e ".[dev,eval,export]"
	@# face-alignment requires the GUI build opencv-python; both wheels own cv2/: swap it for the headless one
	@$(PIP) uninstall -y opencv-python
	@$(PIP) install --no-deps --force-reinstall -c constraints.txt opencv-python-headless
	@touch $(STAMP)
	@echo "installed: $$($(BIN)/python -c 'import torch, ray, mlflow; print("torch", torch.__version__, "· ray", ray.__version__, "· mlflow", mlflow.__version__)')"

demo: $(STAMP)
	$(BIN)/python pipelines/demo.py --out demo_output

# the tests marked `numeric` (numbers within stated tolerances): `test` runs them again with oneDNN's kernels capped
# at AVX2, then at SSE4.1, so that a tolerance that holds only on this CPU fails here
NUMERIC_TESTS := tests/fomm tests/evaluation/test_metrics.py tests/evaluation/test_reconstruction.py \
	tests/training/test_ddp_step.py tests/training/test_sync_bn.py

test: $(STAMP) lint
	OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q --durations=15 tests
	ONEDNN_MAX_CPU_ISA=AVX2 OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q -m numeric $(NUMERIC_TESTS)
	ONEDNN_MAX_CPU_ISA=SSE41 OMP_NUM_THREADS=2 $(BIN)/python -m pytest -q -m numeric $(NUMERIC_TESTS)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	mkdir -p bench_output
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) demo_output bench_output
