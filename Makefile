# fomm-pipeline: each target creates .venv when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench venv clean

venv: $(STAMP)

# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,eval,export]"
	# face-alignment requires the GUI build opencv-python; both wheels own cv2/, so swap it for the headless one
	$(BIN)/pip uninstall -q -y opencv-python
	$(BIN)/pip install -q --no-deps --force-reinstall -c constraints.txt opencv-python-headless
	touch $(STAMP)

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
