# Everything a fresh Linux machine with Python 3.11 needs: `make demo` (the main job), `make test`.
# The environment is installed from constraints.txt (exact, tested versions); `make lock` refreshes it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := constraints.txt
EXTRAS := onnx,tflite,camera,export,dev

$(BIN)/.installed: pyproject.toml $(LOCK)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q 'pip==26.3'
	# The CPU build of torch first, so that nothing pulls a multi-GB CUDA build.
	$(BIN)/pip install -q -c $(LOCK) torch
	$(BIN)/pip install -q -c $(LOCK) -e '.[$(EXTRAS)]'
	touch $@

.PHONY: setup demo test test-all android-check lock check-aarch64 show
setup: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/imprint demo
	@echo 'next: . $(BIN)/activate puts imprint on your PATH for the README recipes (or run $(BIN)/imprint)'

# OpenCV with windows for `imprint camera --show` and the live demo: the GUI build replaces the headless one
# (both install the cv2 module, so the headless one goes first), at the version of the lock.
show: $(BIN)/.installed
	$(BIN)/pip uninstall -q -y opencv-python-headless
	$(BIN)/pip install -q -c $(LOCK) opencv-python

test: $(BIN)/.installed
	$(BIN)/python -m pytest -m "not slow"

test-all: $(BIN)/.installed
	$(BIN)/python -m pytest

# Re-resolve the newest versions the floors in pyproject.toml allow (after changing a dependency, or to take
# upstream fixes), then run `make test` on a fresh clone before committing the new lock.
lock: $(BIN)/.installed
	$(BIN)/pip install -q pip-tools
	$(BIN)/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links --upgrade \
		$(foreach e,$(subst $(comma), ,$(EXTRAS)),--extra $(e)) -o $(LOCK) pyproject.toml constraints.in
	# The lock names the release, not the local build label, so the same line fits a CPU wheel from any index.
	sed -i 's/^torch==\([0-9.]*\)+cpu/torch==\1/' $(LOCK)

comma := ,

# The runtime and the default bundle on aarch64 under qemu-user (root; 10-20 minutes; also in test-all).
check-aarch64: $(BIN)/.installed
	test -f bundles/lite0-imagenet/manifest.json || $(BIN)/imprint export --out bundles/lite0-imagenet --name lite0-imagenet
	bash scripts/check_aarch64.sh bundles/lite0-imagenet

android-check: $(BIN)/.installed
	bash scripts/install_android_check_deps.sh
	$(BIN)/python -m pytest tests/test_android_core.py tests/test_android_app.py tests/test_android_web.py

# The installable Android demo APK, offline and without Gradle (android_demo/README.md): the default bundle
# (exported if absent), ONNX Runtime's AAR (npm registry, sha256-pinned, cached in cache/android/), debug-signed.
# Writes build/android/imprinting-demo.apk (and -unsigned.apk, to sign a release); APK_BUNDLE=DIR ships another bundle.
.PHONY: apk
APK_BUNDLE ?= bundles/lite0-imagenet
apk: $(BIN)/.installed
	test -f $(APK_BUNDLE)/manifest.json || test '$(APK_BUNDLE)' != bundles/lite0-imagenet || \
		$(BIN)/imprint export --out bundles/lite0-imagenet --name lite0-imagenet
	bash android_demo/tools/build_apk.sh --bundle $(APK_BUNDLE)
