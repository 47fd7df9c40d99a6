# Two commands from a fresh clone:
#   make demo   set up (venv, CPU torch, the project), then learn -> apply -> search on the bundled
#               shapes model and an example clip; prints where the outputs are
#   make test   set up the same way, then run the test suite (CI's command: .ci/run calls it)
#   make quick  the inner loop: the suite without the tests marked slow (under a minute on two cores)
#   make lint   ruff check and mypy (motionlib/ and store/) with the venv's tools (CI runs it after the tests)
# Re-running is fast: the install step is redone only when pyproject.toml changed.
# VENV=… picks the virtual environment (CI uses its own); EXTRAS=… the optional extras installed.

PYTHON ?= python3
VENV ?= .venv
EXTRAS ?= test,eval,serve
TORCH ?= torch==2.13.0
DEMO ?= demo-out
comma := ,
BIN := $(VENV)/bin
STAMP := $(VENV)/.motionlib-installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: setup demo test quick lint clean-demo

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

demo: $(STAMP)
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	MOTIONLIB_HOME=$(DEMO)/home $(BIN)/motionlib learn examples/shapes_left.mp4 --name left
	MOTIONLIB_HOME=$(DEMO)/home $(BIN)/motionlib apply left "a green circle on a black background" -o $(DEMO)/green.mp4
	MOTIONLIB_HOME=$(DEMO)/home $(BIN)/motionlib search examples/shapes_left.mp4
	@echo
	@echo "outputs: $(DEMO)/green.mp4 (zero-shot render), catalogue in $(DEMO)/home"
	@echo "         (asset, AMF thumbnail PNG/GIF: MOTIONLIB_HOME=$(DEMO)/home $(BIN)/motionlib show left)"

test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest tests

quick: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -m "not slow" tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy motionlib store

clean-demo:
	rm -rf $(DEMO)
