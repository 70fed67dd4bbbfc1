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

from experiments import linear_gaussian


def get_config(arg: str | None = None):
  c = linear_gaussian.get_config(arg)  # its data, budget, small form and arguments
  c.model.name = "bottom_up"
  c.model.latent_dims = (4, 2)
  c.model.stochastic_hidden = ((),)
  c.model.latent_variance = "constant"
  c.objective.kl = "mc"
  c.eval.gap_examples = 0  # the gap split needs one Gaussian q(z|x) (the flat model)
  return c
