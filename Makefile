# fewlabel: the two set-up commands are `make demo` and `make test`; each creates .venv by itself.
# TORCH pins the CPU wheel (torch==2.13.0 is the one on this kind of machine); a GPU user passes
# TORCH=torch (or installs their CUDA build of torch into .venv first) and may add gpu to EXTRAS.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
# the test install takes the serve, Ray and Milvus extras, so their tests run in CI too
EXTRAS ?= dev,serve,ray,milvus
BIN    := $(VENV)/bin

.PHONY: install demo test test-slow lint clean mutation

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/fewlabel demo

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/pytest -m "not slow"

test-slow: $(BIN)/.installed
	$(BIN)/pytest -m slow

# mutation testing of the modules that protect data and decide labels (tests/support/mutation.py; not part of
# `make test`): about 30 minutes; writes benchmarks/results/mutation.json. MODULES=files knn_voting … for some.
mutation: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet "mutmut==3.8.1"
	$(BIN)/python -m tests.support.mutation $(MODULES)

lint: $(BIN)/.installed
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) fewlabel-demo .pytest_cache .ruff_cache .mutation
