"""β: the rate-distortion curve (Alemi et al. 2018, "Fixing a Broken ELBO").

Each β trades rate (KL) for distortion (-E log p(x|z)); the table and the
curve are over 2 seeds.

  python scripts/sweep.py --config=experiments/ablations/beta.py:small --workdir=runs/beta
  python scripts/sweep.py --config=experiments/ablations/beta.py:full --workdir=runs/beta_mnist
"""

from vae_jax import sweeps
from vae_jax.sweeps import product, sweep

NOTES = {"full": "Reduced budget: 10 epochs on MNIST, 2 seeds (Alemi et al. 2018 trained "
                 "to convergence): the curve's shape, not its values, is comparable.",
         "small": "Small form: the 8x8 digits, 600 steps, 2 seeds."}

PLOTS = [{"x": "test_rate", "y": "test_distortion", "along": "objective.beta"},
         {"x": "objective.beta", "y": "test_nll", "log_x": True}]


def get_config(arg=None):
  return sweeps.ablation_base(arg, small_steps=600, full_epochs=10)


def get_sweep(arg=None):
  del arg
  return product(sweep("objective.beta", [0.1, 0.3, 1.0, 3.0, 10.0]), sweep("seed", [0, 1]))
