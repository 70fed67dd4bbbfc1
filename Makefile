# The README's two commands: `make run` (set up, then train and evaluate the
# offline default) and `make test` (set up, then lint and run the tests).
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

run: $(VENV)/.installed
	$(PY) scripts/train.py --config=experiments/digits.py --workdir=runs/digits

test: $(VENV)/.installed
	$(PY) -m ruff check vae_jax scripts experiments tests
	$(PY) -m pytest -q tests
