"""VAE vs IWAE objective at k = 1, 5, 50 samples (Burda et al. 2016, Table 1
protocol: test NLL by importance sampling with k = 5000).

Both objectives use Monte Carlo KL, so the two k = 1 members would be the same
run: IWAE k = 1 is not repeated. The full form trains 5 epochs on MNIST, not
the paper's 3,280 (3^8 - 1 epochs over 8 learning-rate stages): its numbers
are NOT comparable with the paper's table. experiments/iwae_burda.py is that
protocol, for a GPU.

  python scripts/sweep.py --config=experiments/ablations/iwae_k.py:small --workdir=runs/iwae
  python scripts/sweep.py --config=experiments/ablations/iwae_k.py:full --workdir=runs/iwae_mnist
"""

from vae_jax import sweeps
from vae_jax.sweeps import product, sweep

NOTES = {"full": "Reduced budget: 5 epochs on MNIST, one seed. Burda et al. (2016) trained "
                 "3,280 epochs: these numbers are NOT comparable with their Table 1 "
                 "(experiments/iwae_burda.py is their protocol, for a GPU).",
         "small": "Small form: the 8x8 digits, 600 steps; for trends, not for papers."}

PLOTS = [{"x": "objective.num_samples", "y": "test_nll", "log_x": True},
         {"x": "objective.num_samples", "y": "test_active_units", "log_x": True}]


def get_config(arg=None):
  c = sweeps.ablation_base(arg, small_steps=600, full_epochs=5, small_k=200, full_k=5000)
  c.objective.kl = "mc"
  # The encoder's gradient SNR falls with k for IWAE (Rainforth et al. 2018).
  c.eval.gradient_draws = 100 if arg == "full" else 20
  return c


def get_sweep(arg=None):
  del arg
  return (product(sweep("objective.name", ["elbo"]), sweep("objective.num_samples", [1, 5, 50]))
          + product(sweep("objective.name", ["iwae"]), sweep("objective.num_samples", [5, 50])))
