"""The exact check: a linear VAE (linear encoder and decoder, one learned σ²)
on synthetic continuous data (16 dims from 4 latent factors plus noise).

Its log-likelihood is exact, N(x | b, WWᵀ + σ²I), and its maximum over the
parameters is probabilistic PCA's closed form (Tipping & Bishop 1999), which
the linear VAE's global optimum reaches (Lucas et al. 2019). eval.json's
`linear_gaussian` section reports both, their difference, and the
importance-sampled estimate against the exact log p(x) of the trained model.

  python scripts/train.py --config=experiments/linear_gaussian.py --workdir=runs/lg
"""

from vae_jax import config as config_lib
from vae_jax import experiment_args


def get_config(arg: str | None = None):
  a = experiment_args.parse(arg, small=bool)
  c = config_lib.default()
  c.data.name = "linear_gaussian"
  c.data.test_size = 500
  c.data.validation_size = 500
  c.model.encoder_hidden = ()
  c.model.decoder_hidden = ()
  c.model.latent_dim = 4
  c.model.likelihood = "gaussian"
  c.model.gaussian_variance = "scalar"
  c.objective.num_samples = 4
  c.optimizer.learning_rate = 1e-2
  c.train.batch_size = 200
  c.train.num_steps = 4000
  c.train.log_every_steps = 200
  c.train.eval_every_steps = 1000
  c.train.checkpoint_every_steps = 1000
  c.eval.num_importance_samples = 1000
  c.eval.gap_examples = 100
  if a.small:
    config_lib.small_form(c, num_steps=40, batch_size=100, every=10, num_importance_samples=20)
    c.eval.gap_examples, c.eval.gap_steps = 10, 10
  return c
