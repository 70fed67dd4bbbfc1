"""The offline default: a VAE on scikit-learn's 8×8 digits (levels 0..16).

Binomial(16, p) pixels, an MLP 64-256-8 encoder and 8-256-64 decoder, about a
minute on a laptop CPU.

  python scripts/train.py --config=experiments/digits.py --workdir=runs/digits
  python scripts/train.py --config=experiments/digits.py:small --workdir=/tmp/d  # seconds
"""

from vae_jax import config as config_lib
from vae_jax import experiment_args


def get_config(arg: str | None = None):
  a = experiment_args.parse(arg, small=bool)
  c = config_lib.default()
  c.train.batch_size = 64
  c.train.num_epochs = 300
  c.train.log_every_steps = 100
  c.train.eval_every_steps = 1000
  c.train.checkpoint_every_steps = 1000
  c.eval.num_importance_samples = 1000
  if a.small:  # seconds: the form tests and smoke runs use
    config_lib.small_form(c, num_steps=40, batch_size=64, every=10, num_importance_samples=20)
  return c
