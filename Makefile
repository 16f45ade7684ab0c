# make setup | make test | make demo | make bench | make lock
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Offline, quiet tooling (no telemetry calls home).
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1

.PHONY: setup test test-fast demo bench lock clean

setup: $(STAMP)

# Idempotent: reruns only when the lock or the project metadata change.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

test: setup
	$(VENV)/bin/lint-imports
	$(PY) -m pytest tests

test-fast: setup
	$(PY) -m pytest tests -m "not slow"

# The main job on the SYNTHETIC default data: `dvc repro` runs demo_data, curate, prepare_spoof, train,
# calibrate and register, each a Prefect flow (see README); then `liveness promote` moves @champion. The stage commands call `python`, so the venv comes first.
# pipeline.prefect_server gives the stages' flows one Prefect server for the whole run (not one each: 20-30 s a stage).
demo: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pipeline.prefect_server -- $(VENV)/bin/dvc repro
	$(VENV)/bin/liveness promote || echo "(promotion refused: the table above says why)"
	@echo
	@echo "SYNTHETIC demo done. Look at:"
	@echo "  reports/metrics.json, reports/plots/*.png   calibration and ISO/IEC 30107-3 test metrics"
	@echo "  reports/calibration_scores.md   every score on calibration; which one ships and why"
	@echo "  reports/curation/summary.md, reports/spoof/summary.md   curation reports"
	@echo "  $(VENV)/bin/dvc metrics show ; $(VENV)/bin/dvc plots show   (HTML needs internet for its scripts; PNGs are offline)"
	@echo "  $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db   runs of every stage, the registry"
	@echo "  $(VENV)/bin/liveness predict data/raw/demo/celeba/img_align_celeba/000001.jpg   score with @champion"

bench: setup
	$(PY) bench/train_throughput.py --device auto
	$(PY) bench/infer_latency.py

# Re-pin every package from a fresh resolve of pyproject's dependencies (needs the package registry).
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet --upgrade pip==25.3
	.venv-lock/bin/pip install --quiet -e ".[dev]"
	{ echo "# Pinned install set for the liveness project (Python 3.11, x86_64)."; \
	  echo "# torch/torchvision are CUDA builds that also run on CPU; pip takes them from the local wheel store."; \
	  echo "# Regenerate: make lock"; \
	  .venv-lock/bin/pip freeze --exclude-editable | grep -v '^liveness'; } > requirements.lock
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) runs .pytest_cache
