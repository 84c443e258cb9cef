# edgecnn: every target creates the environment it needs if it is missing.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# torchvision does not import beside the pinned torch; its parity suite gets an environment of its own.
TV_VENV := .venv-torchvision
ifeq ($(shell uname -m),aarch64)
TV_PINS := torch==2.9.1 torchvision==0.24.1
else
TV_PINS := torch==2.14.1 torchvision==0.29.1
endif

MODEL ?= mobilenet_v2
ALPHA ?= 1.0
SIZE_ARGS := $(if $(RES),--resolution $(RES)) $(if $(RHO),--rho $(RHO))
# make export replaces an earlier export of the same variant (the CLI itself asks for --force).
EXPORT_ARGS := --model $(MODEL) --alpha $(ALPHA) $(SIZE_ARGS) $(if $(FORMATS),--formats $(FORMATS)) \
	$(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(CALIB),--calib $(CALIB)) \
	$(if $(CALIB_COUNT),--calib-count $(CALIB_COUNT)) $(if $(OUT),--out $(OUT)) \
	$(if $(filter 0,$(VALIDATE)),--no-validate) --force
# make validate VARIANT=mobilenet_v2_a0.75_r224 [IMAGES=dir] [LABELS_DIR=dir] [LABEL_MAP=file] [COUNT=n]
VALIDATE_ARGS := $(or $(EXPORT_DIR),export/$(VARIANT)) $(if $(IMAGES),--images $(IMAGES)) \
	$(if $(LABELS_DIR),--labels-dir $(LABELS_DIR)) $(if $(LABEL_MAP),--label-map $(LABEL_MAP)) \
	$(if $(COUNT),--count $(COUNT))

.PHONY: setup test test-slow test-full test-torchvision list summary export validate sweep bench clean

setup: $(STAMP) $(VENV)/.installed-apt

# Debian packages: adb, for `edgecnn bench --device adb` (optional: without it that path says so).
APT_PACKAGES := adb
$(VENV)/.installed-apt: | $(BIN)/python
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then :; \
	elif ! command -v apt-get >/dev/null; then echo "note: no apt-get here; install$$missing yourself for the paths that need it" >&2; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "make setup: cannot install the Debian packages$$missing (not root, no sudo): apt-get install$$missing" >&2; exit 1; fi
	touch $@

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,tflite,coreml,imagenet]'
	touch $@

test: setup
	$(BIN)/python -m pytest -m "not slow"

# everything: the slow conversions too, and torchvision itself in its own environment
test-slow: setup
	$(BIN)/python -m pytest -m slow

# TensorFlow only for the baseline of the benchmark: the `bench` extra, installed on demand.
$(VENV)/.installed-bench: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,tflite,coreml,imagenet,bench]'
	touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/keras_baseline.py

test-full: test test-slow test-torchvision

$(TV_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TV_VENV)
	$(TV_VENV)/bin/pip install --quiet --disable-pip-version-check $(TV_PINS) 'numpy>=2,<3' pytest==9.2.0
	$(TV_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

test-torchvision: $(TV_VENV)/.installed
	$(TV_VENV)/bin/python -m pytest tests/torchvision_parity -p no:cacheprovider

list: setup
	$(BIN)/edgecnn list

summary: setup
	$(BIN)/edgecnn summary $(MODEL) --alpha $(ALPHA) $(SIZE_ARGS)

export: setup
	$(BIN)/edgecnn export $(EXPORT_ARGS)

validate: setup
	@test -n "$(VARIANT)$(EXPORT_DIR)" || { echo "make validate: give VARIANT=<variant id> (a folder in export/) or EXPORT_DIR=<folder>" >&2; exit 2; }
	$(BIN)/edgecnn validate $(VALIDATE_ARGS)

# make sweep [MODEL=mobilenet_v2] [ALPHAS=0.35,0.5,0.75,1.0] [RESOLUTIONS=96,128,160,192,224] [LABELS_DIR=dir]
ALPHAS ?= 0.35,0.5,0.75,1.0
RESOLUTIONS ?= 96,128,160,192,224
sweep: setup
	$(BIN)/edgecnn sweep --model $(MODEL) --alphas $(ALPHAS) --resolutions $(RESOLUTIONS) \
		$(if $(LABELS_DIR),--labels-dir $(LABELS_DIR)) $(if $(LABEL_MAP),--label-map $(LABEL_MAP)) \
		$(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(CALIB),--calib $(CALIB)) $(if $(OUT),--out $(OUT))

clean:
	rm -rf $(VENV) $(TV_VENV) build *.egg-info
