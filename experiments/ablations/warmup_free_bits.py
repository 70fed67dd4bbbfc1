"""KL warm-up and free bits against posterior collapse: active units, rate and
NLL with neither, either and both, in a model with more latent dimensions
(32) than the data need, where plain training leaves many units inactive.

  python scripts/sweep.py --config=experiments/ablations/warmup_free_bits.py:small \
      --workdir=runs/collapse
"""

from vae_jax import sweeps
from vae_jax.sweeps import product, sweep

PLOTS = [{"x": "objective.free_bits", "y": "test_active_units"},
         {"x": "objective.free_bits", "y": "test_nll"}]


def get_config(arg=None):
  c = sweeps.ablation_base(arg, small_steps=600, full_epochs=10)
  c.model.latent_dim = 32 if arg != "full" else 64
  return c


def get_sweep(arg=None):
  warmup = [0, 5000] if arg == "full" else [0, 500]
  return product(sweep("objective.kl_warmup_steps", warmup),
                 sweep("objective.free_bits", [0.0, 0.25]))
