# The README's two commands: `make run` (set up, then train and evaluate the
# offline default) and `make test` (set up, then lint and run the tests).
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python

ABLATIONS := beta latent_size iwae_k warmup_free_bits kl_estimator estimator prior_posterior

.PHONY: run test ablations

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

run: $(VENV)/.installed
	$(PY) scripts/train.py --config=experiments/digits.py --workdir=runs/digits

test: $(VENV)/.installed
	$(PY) -m ruff check vae_jax scripts experiments tests
	$(PY) -m pytest -q -n 2 tests  # 2 workers: most of the time is XLA compiling, one core each

# Every shipped ablation in its small form (digits), members vectorised where
# they differ only in seed/β/learning rate: tables and figures in runs/ablations/.
ablations: $(VENV)/.installed
	for a in $(ABLATIONS); do \
	  $(PY) scripts/sweep.py --config=experiments/ablations/$$a.py:small \
	    --workdir=runs/ablations/$$a --vectorize > /dev/null || exit 1; done
