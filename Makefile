# fomm-pipeline: each target creates .venv when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/pip -qq --disable-pip-version-check

.PHONY: demo test numeric lint bench venv clean

venv: $(STAMP)

# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build. pip at -qq prints errors only. pip
# byte-compiles what it installs on one core; compileall does it once at the end on all of them (`make venv` 120 s
# → 84–102 s on 2 cores): no process pays for it, even where PYTHONDONTWRITEBYTECODE is set (a file that does not
# compile is skipped)
$(STAMP): pyproject.toml constraints.txt
	@echo "installing into $(VENV) (a few minutes the first time)"
	@test -d $(VENV) || $(PY) -m venv $(VENV)
	@$(PIP) install --upgrade pip
	@$(PIP) install --no-compile torch==2.13.0
	@$(PIP) install --no-compile -c constraints.txt -e ".[dev,eval,export,photos]"
	@# face-alignment requires the GUI build opencv-python; both wheels own cv2/: swap it for the headless one
	@$(PIP) uninstall -y opencv-python
	@$(PIP) install --no-compile --no-deps --force-reinstall -c constraints.txt opencv-python-headless
	@$(BIN)/python -m compileall -q -j 0 $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))') > /dev/null || true
	@touch $(STAMP)
	@echo "installed: $$($(BIN)/python -c 'import torch, ray, mlflow; print("torch", torch.__version__, "· ray", ray.__version__, "· mlflow", mlflow.__version__)')"

demo: $(STAMP)
	$(BIN)/python pipelines/demo.py --out demo_output

# the tests marked `numeric` (numbers within stated tolerances) run first with oneDNN's kernels capped at AVX2 and at
# SSE4.1, both at once on one core each (a tolerance that holds only on this CPU fails fast), then the whole suite.
# The AVX2 pass caps PyTorch's own vectorised kernels at AVX2 too (ATEN_CPU_CAPABILITY): an AVX2-only CPU as it is
NUMERIC_TESTS := tests/fomm tests/evaluation/test_metrics.py tests/evaluation/test_reconstruction.py \
	tests/training/test_ddp_step.py tests/training/test_sync_bn.py

NUMERIC_RUN := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m numeric $(NUMERIC_TESTS)

# the suite in two pytest-xdist processes of one thread each, each test file whole in one of them with its own Ray
# cluster, MLflow server and moto S3: one process alone leaves a quarter of two cores idle while it waits on Ray,
# MLflow and subprocesses (TEST_PROCESSES=1 TEST_THREADS=2 runs it so). The files with long tests go first
# (tests/conftest.py), not xdist's default of the files with the most tests.
TEST_PROCESSES ?= 2
TEST_THREADS ?= 1

# on an x86 CPU with AVX2 and nothing above it (no AVX-512, AMX or AVX-VNNI) the AVX2 pass ran the numeric tests with
# the CPU's own kernels: the suite leaves them out rather than run them the same way a second time (~50 CPU-s).
# Read when `test` runs (=, not :=), not on every make
AVX2_IS_NATIVE = $(shell f=/proc/cpuinfo; [ -r $$f ] && grep -qw avx2 $$f && \
	! grep -qwE 'avx512[a-z0-9_]*|amx[a-z0-9_]*|avx_vnni[a-z0-9_]*' $$f && echo yes)

test: $(STAMP) lint numeric
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -q -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder --durations=15 $(if $(AVX2_IS_NATIVE),-m "not numeric") tests

# a failed run's log is printed whole, a passed one's last line
numeric: $(STAMP)
	@echo "numeric tests under ONEDNN_MAX_CPU_ISA=AVX2 (+ ATEN_CPU_CAPABILITY=avx2) and =SSE41 …"
	@for pass in AVX2:avx2 SSE41:; do isa=$${pass%%:*}; aten=$${pass#*:}; \
	   (env ONEDNN_MAX_CPU_ISA=$$isa $${aten:+ATEN_CPU_CAPABILITY=$$aten} $(NUMERIC_RUN) > $(VENV)/numeric-$$isa.log 2>&1; \
	    echo $$? > $(VENV)/numeric-$$isa.rc) & \
	 done; wait; failed=0; \
	 for isa in AVX2 SSE41; do \
	   if [ "$$(cat $(VENV)/numeric-$$isa.rc)" = 0 ]; then echo "  $$isa: $$(tail -n 1 $(VENV)/numeric-$$isa.log)"; \
	   else cat $(VENV)/numeric-$$isa.log; failed=1; fi; \
	 done; exit $$failed

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	mkdir -p bench_output
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) demo_output bench_output
