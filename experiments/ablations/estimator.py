"""Gradient estimators of the IWAE bound: reparam, STL (Roeder et al. 2017) and
DReG (Tucker et al. 2019) at k = 1, 5, 50: test NLL, and the encoder's and
decoder's gradient signal-to-noise ratio at the trained parameters (the
gradient-noise instrument, eval.gradient_draws draws of z on 64 test examples).

Expected, and to be checked here, not assumed: the encoder SNR of plain IWAE
falls as k grows (Rainforth et al. 2018, "Tighter variational bounds are not
necessarily better") while DReG's does not; the decoder's gradient is the
same estimator in all three. At k = 1, DReG equals STL (w̃ = w̃² = 1). STL's
IWAE gradient for k > 1 is biased (Tucker et al. 2019, section 3).

  python scripts/sweep.py --config=experiments/ablations/estimator.py:small --workdir=runs/est
  python scripts/sweep.py --config=experiments/ablations/estimator.py:full --workdir=runs/est_mnist
"""

from vae_jax import sweeps
from vae_jax.sweeps import product, sweep

NOTES = {"full": "Reduced budget: 5 epochs on MNIST, one seed; gradient SNR over 100 draws.",
         "small": "Small form: the 8x8 digits, 200 steps, one seed; SNR over 20 draws of z "
                  "(a noisy figure): for trends, not for papers."}

PLOTS = [{"x": "objective.num_samples", "y": "test_grad_encoder_snr", "log_x": True},
         {"x": "objective.num_samples", "y": "test_grad_decoder_snr", "log_x": True},
         {"x": "objective.num_samples", "y": "test_nll", "log_x": True}]


def get_config(arg=None):
  c = sweeps.ablation_base(arg, small_steps=200, full_epochs=5, small_k=100, full_k=5000)
  c.objective.name, c.objective.kl = "iwae", "mc"
  c.eval.gradient_draws = 100 if arg == "full" else 20
  return c


def get_sweep(arg=None):
  del arg
  return product(sweep("objective.estimator", ["reparam", "stl", "dreg"]),
                 sweep("objective.num_samples", [1, 5, 50]))
