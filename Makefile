# fewlabel: the two set-up commands are `make demo` and `make test`; each creates .venv by itself.
# TORCH pins the CPU wheel (torch==2.13.0 is the one on this kind of machine); a GPU user passes
# TORCH=torch (or installs their CUDA build of torch into .venv first) and may add gpu to EXTRAS.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
# the test install takes the serve, Ray, Milvus, bench and browser extras, so their tests run in CI too
EXTRAS ?= dev,serve,ray,milvus,bench,browser
BIN    := $(VENV)/bin

.PHONY: install demo test test-slow lint typecheck clean browser mutation

# pip runs with --quiet, so each step says what it is doing first (the torch wheel alone takes a minute or two).
$(BIN)/.installed: pyproject.toml
	@echo "[1/4] creating $(VENV) with $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	@echo "[2/4] upgrading pip"
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "[3/4] installing $(TORCH) (a large wheel: a minute or more)"
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	@echo "[4/4] installing fewlabel with extras $(EXTRAS) (editable)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@
	@echo "installed: the fewlabel command is $(BIN)/fewlabel (or: source $(BIN)/activate)"

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/fewlabel demo

# mypy reads [tool.mypy] in pyproject.toml and the committed symlink tree .typecheck/fewlabel (docs/typing.md)
typecheck: $(BIN)/.installed
	$(BIN)/python -m mypy -p fewlabel


# the labelling page's browser test drives Debian's chromium (and Korean fonts for its screenshot); skipped when
# chromium is there already, and when apt-get is not (the test then skips itself)
browser:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && apt-get install -y -qq chromium fonts-noto-cjk) \
		|| echo "could not install chromium (not root?): the browser test will skip"; fi

test: $(BIN)/.installed typecheck browser
	$(BIN)/ruff check .
	$(BIN)/pytest -m "not slow"
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

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
	rm -rf $(VENV) fewlabel-demo site .pytest_cache .ruff_cache .mypy_cache .mutation
