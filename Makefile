# Set-up and everyday commands. Everything installs into .venv; nothing global.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CVTOOL := $(VENV)/bin/cvtool
# This machine's pip serves these from local disk; override to pick another build.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
DEMO_DATA := runs/demo-data

.PHONY: install demo demo-hotdog test test-fast bench gpu-check clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

$(DEMO_DATA)/banana-detection: | install
	$(CVTOOL) data synth bananas --out $@ --size 96

$(DEMO_DATA)/hotdog: | install
	$(CVTOOL) data synth hotdog --out $@ --n 150

# The main job: TinySSD on synthetic bananas; the run directory gets predictions.png.
demo: install $(DEMO_DATA)/banana-detection
	$(CVTOOL) train-ssd --config configs/demo/ssd.yaml

demo-hotdog: install $(DEMO_DATA)/hotdog
	$(CVTOOL) finetune-hotdog --config configs/demo/hotdog.yaml

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) benchmarks/cifar.py

# One GPU machine's proof: the CUDA tests and the benchmark, into $(GPU_CHECK_OUT)/report.{json,md}.
# DRY_RUN=1 walks every step on a CPU (the CUDA tests skip, the benchmark runs --device cpu --quick).
GPU_CHECK_OUT ?= runs/gpu-check
gpu-check: install
	GPU_CHECK_OUT=$(GPU_CHECK_OUT) $(PY) benchmarks/gpu_check.py $(if $(DRY_RUN),--dry-run)

clean:
	rm -rf $(VENV) runs .pytest_cache
