"""The exact check of a hierarchy: a two-layer linear-Gaussian model,

  z2 ~ N(0, I_2),  z1 | z2 ~ N(A z2 + a, D1) (D1 diagonal, learned),
  x | z1 ~ N(B z1 + b, σ² I)

(model.name=bottom_up with linear networks and latent_variance=constant), on
the synthetic 16-dimensional data of experiments/linear_gaussian.py. x is
Gaussian, N(B a + b, B (A Aᵀ + D1) Bᵀ + σ² I), so log p(x) is exact:
eval.json's `linear_gaussian` section reports it against the importance-
sampled estimate, and the trained model against pPCA's maximum with the
4 dimensions of z1.

  python scripts/train.py --config=experiments/linear_gaussian_hierarchy.py --workdir=runs/lgh
"""

from vae_jax import config as config_lib
from vae_jax import experiment_args


def get_config(arg: str | None = None):
  a = experiment_args.parse(arg, small=bool)
  c = config_lib.default()
  c.data.name = "linear_gaussian"
  c.data.test_size = 500
  c.data.validation_size = 500
  c.model.name = "bottom_up"
  c.model.encoder_hidden = c.model.decoder_hidden = ()
  c.model.latent_dims = (4, 2)
  c.model.stochastic_hidden = ((),)
  c.model.latent_variance = "constant"
  c.model.likelihood = "gaussian"
  c.model.gaussian_variance = "scalar"
  c.objective.num_samples = 4
  c.objective.kl = "mc"
  c.optimizer.learning_rate = 1e-2
  c.train.batch_size = 200
  c.train.num_steps = 4000
  c.train.log_every_steps = 200
  c.train.eval_every_steps = c.train.checkpoint_every_steps = 1000
  c.eval.num_importance_samples = 1000
  if a.small:
    config_lib.small_form(c, num_steps=40, batch_size=100, every=10, num_importance_samples=20)
  return c
