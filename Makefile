# Everything a fresh Linux machine with Python 3.11 needs: `make demo` (the main job), `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first, so that nothing pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[onnx,tflite,camera,export,dev]'
	touch $@

.PHONY: setup demo test test-all android-check
setup: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/imprint demo

test: $(BIN)/.installed
	$(BIN)/python -m pytest -m "not slow"

test-all: $(BIN)/.installed
	$(BIN)/python -m pytest

android-check: $(BIN)/.installed
	bash scripts/install_android_check_deps.sh
	$(BIN)/python -m pytest tests/test_android_core.py tests/test_android_app.py tests/test_android_web.py
