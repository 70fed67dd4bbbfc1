"""Analytic vs Monte Carlo KL: the ELBO reached, and the noise of the training
gradient at the trained parameters (variance and signal-to-noise ratio over
200 draws of z, 50 in the small form, on 64 test examples), over 2 seeds. Each
run also measures the other estimator at its parameters with the same draws:
the column test_grad_encoder_variance_mc_over_analytic_kl is that paired ratio.

  python scripts/sweep.py --config=experiments/ablations/kl_estimator.py:small --workdir=runs/kl
"""

from vae_jax import sweeps
from vae_jax.sweeps import product, sweep

PLOTS = [{"x": "objective.kl", "y": "test_grad_encoder_variance_mc_over_analytic_kl"},
         {"x": "objective.kl", "y": "test_grad_encoder_variance"},
         {"x": "objective.kl", "y": "test_elbo"}]


def get_config(arg=None):
  c = sweeps.ablation_base(arg, small_steps=600, full_epochs=10)
  c.eval.gradient_draws = 200 if arg == "full" else 50
  return c


def get_sweep(arg=None):
  del arg
  return product(sweep("objective.kl", ["analytic", "mc"]), sweep("seed", [0, 1]))
