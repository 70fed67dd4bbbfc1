"""Latent size: test NLL and active units against the latent dimension.

  python scripts/sweep.py --config=experiments/ablations/latent_size.py:small --workdir=runs/latent
"""

from vae_jax import sweeps
from vae_jax.sweeps import product, sweep

PLOTS = [{"x": "model.latent_dim", "y": "test_nll", "log_x": True},
         {"x": "model.latent_dim", "y": "test_active_units", "log_x": True}]


def get_config(arg=None):
  return sweeps.ablation_base(arg, small_steps=600, full_epochs=10)


def get_sweep(arg=None):
  dims = [2, 5, 10, 20, 50] if arg == "full" else [2, 8, 32]
  return product(sweep("model.latent_dim", dims), sweep("seed", [0, 1]))
