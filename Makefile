# edgecnn: every target creates the environment it needs if it is missing.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WEB_STAMP := web_demo/node_modules/.installed

# torchvision does not import beside the pinned torch; its parity suite gets an environment of its own.
TV_VENV := .venv-torchvision
ifeq ($(shell uname -m),aarch64)
TV_PINS := torch==2.9.1 torchvision==0.24.1
else
TV_PINS := torch==2.14.1 torchvision==0.29.1
endif

MODEL ?= mobilenet_v2
# ALPHA, RES/RHO and NUM_CLASSES default to 1.0, the model's resolution and 1000, or to what a named
# WEIGHTS (lite0-imagenet, fashion-mnist-demo) was trained as
SIZE_ARGS := $(if $(RES),--resolution $(RES)) $(if $(RHO),--rho $(RHO))
# make export replaces an earlier export of the same variant (the CLI itself asks for --force).
EXPORT_ARGS := --model $(MODEL) $(if $(ALPHA),--alpha $(ALPHA)) $(SIZE_ARGS) $(if $(NUM_CLASSES),--num-classes $(NUM_CLASSES)) $(if $(FORMATS),--formats $(FORMATS)) \
	$(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(CALIB),--calib $(CALIB)) \
	$(if $(CALIB_COUNT),--calib-count $(CALIB_COUNT)) $(if $(OUT),--out $(OUT)) \
	$(if $(filter 0,$(VALIDATE)),--no-validate) $(if $(VERBOSE),--verbose) \
	$(if $(INT8_REPAIR),--int8-repair $(INT8_REPAIR)) $(if $(INT8_TARGET),--int8-target $(INT8_TARGET)) --force
# make validate VARIANT=mobilenet_v2_a0.75_r224 [IMAGES=dir] [LABELS_DIR=dir] [LABEL_MAP=file] [COUNT=n]
VALIDATE_ARGS := $(or $(EXPORT_DIR),export/$(VARIANT)) $(if $(IMAGES),--images $(IMAGES)) \
	$(if $(LABELS_DIR),--labels-dir $(LABELS_DIR)) $(if $(LABEL_MAP),--label-map $(LABEL_MAP)) \
	$(if $(COUNT),--count $(COUNT)) $(if $(DATASET),--dataset $(DATASET)) $(if $(DATASET_COUNT),--dataset-count $(DATASET_COUNT))


.PHONY: test-quick lint docs setup test test-slow test-full test-torchvision list summary export validate sweep bench bench-device clean \
	scorecard scorecard-render train-demo train-zoo inspect-int8 int8-zoo int8-error-split bench-zoo bench-thirdparty bench-executorch demo-card android-assets android-check android-test \
	web-demo web-serve bench-web

# Each target installs only what it uses: an export needs the Python environment alone. `make setup` (and so
# `make test`) installs everything.
PY_ENV := $(STAMP)
JAVA := $(VENV)/.apt-java
BROWSER := $(VENV)/.apt-browser $(WEB_STAMP)
ADB := $(VENV)/.apt-adb
FASHION := $(VENV)/.apt-fashion
# the Fashion-MNIST files where the named weights or dataset need them (labels, calibration, test images)
FASHION_IF_NAMED = $(if $(findstring fashion,$(WEIGHTS)$(DATASET)$(VARIANTS)),$(FASHION))

setup: $(PY_ENV) $(JAVA) $(BROWSER) $(ADB) $(FASHION)

# Debian packages, by what uses them: a JDK with JUnit 4 and Gson (the Android demo's Java core and its
# golden tests), Chromium and openssl (the web demo's self-test and HTTPS; nothing downloads a browser of its
# own), adb (`edgecnn bench --device adb`), Fashion-MNIST (the trained models' data).
APT_java := default-jdk-headless junit4 libgoogle-gson-java
APT_browser := chromium openssl
APT_adb := adb
APT_fashion := dataset-fashion-mnist
$(VENV)/.apt-%: Makefile | $(BIN)/python
	@missing=""; for p in $(APT_$*); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then :; \
	elif ! command -v apt-get >/dev/null; then echo "note: no apt-get here; install$$missing yourself for the paths that need it" >&2; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "make: cannot install the Debian packages$$missing (not root, no sudo): apt-get install$$missing" >&2; exit 1; fi
	touch $@

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The web demo's npm packages, exactly as web_demo/package-lock.json pins them (Node.js from Debian if
# missing; an existing Node.js, e.g. NodeSource's, is kept).
$(WEB_STAMP): web_demo/package-lock.json | $(VENV)/.apt-browser
	@command -v npm >/dev/null || { if [ "$$(id -u)" = 0 ]; then apt-get install -y -qq --no-install-recommends nodejs npm; \
		else sudo apt-get install -y -qq --no-install-recommends nodejs npm; fi; }
	cd web_demo && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,lint,docs,tflite,coreml,executorch,imagenet,cluster]'
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps geffnet==1.0.2  # third-party models for the tests
	touch $@

# the docs site builds strict (a broken link or a page missing from the nav fails), then the suite
test: setup docs
	$(BIN)/python -m pytest -m "not slow" -n 2 --durations=15

# what needs no converter: records, the gate, CLI parsing, layout, tables, the zoo's shapes and figures
test-quick: $(PY_ENV) $(JAVA)
	$(BIN)/python -m pytest -m "quick and not slow" --durations=10

# ruff (lint, import order, format) and mypy on the package, as configured in pyproject.toml
lint: $(STAMP)
	$(BIN)/ruff check edgecnn
	$(BIN)/ruff format --check edgecnn
	$(BIN)/mypy

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet --site-dir build/site

# everything: the slow conversions too, and torchvision itself in its own environment
test-slow: setup
	$(BIN)/python -m pytest -m slow

# TensorFlow only for the baseline of the benchmark: the `bench` extra, installed on demand.
$(VENV)/.installed-bench: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,tflite,coreml,executorch,imagenet,cluster,bench]'
	touch $@

bench: $(VENV)/.installed-bench bench-executorch
	$(BIN)/python benchmarks/keras_baseline.py

# our .pte against ExecuTorch's stock flow and our TFLite (4 models), and the four-format export's wall time
bench-executorch: $(PY_ENV)
	$(BIN)/python -m benchmarks.bench_executorch

test-full: test test-slow test-torchvision

$(TV_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TV_VENV)
	$(TV_VENV)/bin/pip install --quiet --disable-pip-version-check $(TV_PINS) 'numpy>=2,<3' pytest==9.2.0
	$(TV_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

test-torchvision: $(TV_VENV)/.installed
	$(TV_VENV)/bin/python -m pytest tests/torchvision_parity -p no:cacheprovider

list: $(PY_ENV)
	$(BIN)/edgecnn list

summary: $(PY_ENV)
	$(BIN)/edgecnn summary --model $(MODEL) --alpha $(or $(ALPHA),1.0) $(SIZE_ARGS)

export: $(PY_ENV) $(FASHION_IF_NAMED)
	$(BIN)/edgecnn export $(EXPORT_ARGS)

validate: $(PY_ENV) $(FASHION_IF_NAMED)
	@test -n "$(VARIANT)$(EXPORT_DIR)" || { echo "make validate: give VARIANT=<variant id> (a folder in export/) or EXPORT_DIR=<folder>" >&2; exit 2; }
	$(BIN)/edgecnn validate $(VALIDATE_ARGS)

# make inspect-int8 VARIANT=resnet18_a0.5_r64 [IMAGES=dir] [COUNT=n] [ARTIFACT=model_int8.pte]: per-layer int8 error, by PyTorch module
inspect-int8: $(PY_ENV)
	@test -n "$(VARIANT)$(EXPORT_DIR)" || { echo "make inspect-int8: give VARIANT=<variant id> (a folder in export/) or EXPORT_DIR=<folder>" >&2; exit 2; }
	$(BIN)/edgecnn inspect-int8 $(or $(EXPORT_DIR),export/$(VARIANT)) $(if $(IMAGES),--images $(IMAGES)) $(if $(COUNT),--count $(COUNT)) $(if $(ARTIFACT),--artifact $(ARTIFACT))

# make bench-device VARIANT=mobilenet_v2_a0.75_r224 BENCHMARK_BINARY=path [SERIAL=id]: the export's .tflite files
# on a phone over adb, with LiteRT's benchmark_model built for it
bench-device: $(PY_ENV) $(ADB)
	@test -n "$(VARIANT)$(EXPORT_DIR)" || { echo "make bench-device: give VARIANT=<variant id> (a folder in export/) or EXPORT_DIR=<folder>" >&2; exit 2; }
	$(BIN)/edgecnn bench $(or $(EXPORT_DIR),export/$(VARIANT)) --device adb $(if $(BENCHMARK_BINARY),--benchmark-binary $(BENCHMARK_BINARY)) \
		$(if $(SERIAL),--serial $(SERIAL))

# make sweep [MODEL=mobilenet_v2] [ALPHAS=0.35,0.5,0.75,1.0] [RESOLUTIONS=96,128,160,192,224] [LABELS_DIR=dir]
ALPHAS ?= 0.35,0.5,0.75,1.0
RESOLUTIONS ?= 96,128,160,192,224
sweep: $(PY_ENV) $(FASHION_IF_NAMED)
	$(BIN)/edgecnn sweep --model $(MODEL) $(if $(findstring :,$(MODEL)),,--alphas $(ALPHAS)) --resolutions $(RESOLUTIONS) \
		$(if $(LABELS_DIR),--labels-dir $(LABELS_DIR)) $(if $(LABEL_MAP),--label-map $(LABEL_MAP)) \
		$(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(CALIB),--calib $(CALIB)) $(if $(OUT),--out $(OUT)) \
		$(if $(RAY),--ray $(filter-out local,$(RAY)))

# make scorecard [MODELS=resnet18,...] [CARD_ALPHAS=1.0,0.5] [FORMATS=...] [RAY=local|HOST:PORT] [OUT=dir]:
# every registered model at its default resolution; a day on one 2-core machine, so RAY=HOST:PORT of a
# cluster (ray start --head on one machine, ray start --address=HOST:PORT on the others)
CARD_ALPHAS ?= 1.0,0.5
scorecard: $(PY_ENV)
	$(BIN)/edgecnn scorecard --alphas $(CARD_ALPHAS) $(if $(MODELS),--models $(MODELS)) \
		$(if $(FORMATS),--formats $(FORMATS)) $(if $(OUT),--out $(OUT)) $(if $(RAY),--ray $(filter-out local,$(RAY)))

# make scorecard-render [CARD=benchmarks/scorecard/scorecard.json]: scorecard.md and .png (and the JSON, in the
# current schema) again beside CARD, with today's registry figures (published top-1); measures nothing
CARD ?= benchmarks/scorecard/scorecard.json
scorecard-render: $(STAMP)
	$(BIN)/edgecnn scorecard --render $(CARD)

# The project's own trained model: MobileNetV2 (alpha 0.5, 32 px) on Fashion-MNIST, about 15 min on 2 cores;
# then its model card with every format's accuracy on the 10,000 test images.
DEMO_EXPORT := export/fashion-mnist-demo
train-demo: $(PY_ENV) $(FASHION)
	$(BIN)/python -m edgecnn.weights.training
	$(MAKE) demo-card

# one small model per family on Fashion-MNIST (edgecnn/weights/recipes.py), and two geffnet models: each 5-50 min on 2 cores
ZOO_RECIPES := fashion-mnist-resnet18 fashion-mnist-googlenet fashion-mnist-vgg16 fashion-mnist-densenet121 \
	fashion-mnist-mobilenet-v3-small fashion-mnist-efficientnet-b0 \
	fashion-mnist-geffnet-mnasnet-050 fashion-mnist-geffnet-mobilenetv3-large-075
train-zoo: $(PY_ENV) $(FASHION)
	@for w in $(ZOO_RECIPES); do $(BIN)/python -m edgecnn.weights.training --weights $$w || exit 1; done

# one variant per family: fp32 against int8 TFLite latency at 1 and 2 threads, interleaved (benchmarks/results/)
bench-zoo: $(PY_ENV)
	$(BIN)/python -m benchmarks.bench_zoo

# five geffnet models through `edgecnn export --model geffnet:create_model` at 128 px: parity, int8 purity and pieces,
# int8/fp32 latency from each export's own report (benchmarks/results/bench-thirdparty.*)
bench-thirdparty: $(PY_ENV)
	$(BIN)/python -m benchmarks.bench_thirdparty

# int8 against fp32 on every committed trained model, before and after repair, on the 10,000 test images
int8-zoo: $(PY_ENV) $(FASHION)
	$(BIN)/python -m benchmarks.int8_zoo

# where one trained model's int8 error comes from: weights against activations, and each activation tensor
int8-error-split: $(PY_ENV) $(FASHION)
	$(BIN)/python -m benchmarks.int8_error_split --weights $(or $(WEIGHTS),fashion-mnist-efficientnet-b0) $(if $(COUNT),--count $(COUNT))

demo-card: $(PY_ENV) $(FASHION)
	$(BIN)/edgecnn export --model mobilenet_v2 --weights fashion-mnist-demo --out $(DEMO_EXPORT) --force --no-validate
	$(BIN)/edgecnn validate $(DEMO_EXPORT) --dataset fashion-mnist --out $(DEMO_EXPORT)/fashion-mnist-test
	$(BIN)/python -m edgecnn.harness.model_card $(DEMO_EXPORT)/fashion-mnist-test/report.json

# The Android demo: assets (models, catalog.json, golden files) for EXPORTS (export folders or ids), or else for
# the VARIANTS, exported if missing.
# real classifiers first: ImageNet's EfficientNet-Lite0 and the Fashion-MNIST demo; then a random-weight MobileNetV2
VARIANTS ?= efficientnet_lite0:1.0:224:lite0-imagenet mobilenet_v2:0.5:32:fashion-mnist-demo mobilenet_v2:0.75:224
android-assets: $(PY_ENV) $(FASHION_IF_NAMED)
	$(BIN)/edgecnn android-assets $(if $(EXPORTS),$(EXPORTS),--variants "$(VARIANTS)")

# javac over the app's sources against Android's API 23 platform jar (from Debian's previous release)
# and compile-only LiteRT declarations; skips with its reason where the jar cannot be fetched.
android-check: $(PY_ENV) $(JAVA)
	bash android_demo/tools/android-check.sh

# the Java core's JUnit tests and the Python -> Java golden tests (also part of make test)
android-test: $(PY_ENV) $(JAVA) $(FASHION)
	$(BIN)/python -m pytest tests/test_android.py

# The phone web demo: a static site running the VARIANTS' ONNX and TFLite files in the browser, built into
# web_demo/site and self-tested in headless Chromium; web-serve serves it to phones on the network (HTTPS).
web-demo: $(PY_ENV) $(BROWSER) $(FASHION_IF_NAMED)
	$(BIN)/edgecnn web-demo $(if $(EXPORTS),$(EXPORTS),--variants "$(VARIANTS)") --selftest --screenshot web_demo/site-phone.png

web-serve: $(PY_ENV) $(VENV)/.apt-browser
	$(BIN)/edgecnn web-serve $(if $(PORT),--port $(PORT))

# the page's latency in headless Chromium next to Python's for the same files: benchmarks/results/web.*
bench-web: $(PY_ENV) $(BROWSER) $(FASHION)
	$(BIN)/python -m benchmarks.bench_web

clean:
	rm -rf $(VENV) $(TV_VENV) build *.egg-info
