"""Priors × posteriors: {standard normal, mixture of Gaussians, VampPrior
(Tomczak & Welling 2018)} × {Gaussian, IAF (Kingma et al. 2016)} under the
ELBO with the Monte Carlo KL (neither a mixture prior nor a flow has a closed
form): test NLL, ELBO, rate (KL) and active units.

  python scripts/sweep.py --config=experiments/ablations/prior_posterior.py:small \
      --workdir=runs/prior_posterior
  python scripts/sweep.py --config=experiments/ablations/prior_posterior.py:full \
      --workdir=runs/prior_posterior_mnist
"""

from vae_jax import sweeps
from vae_jax.experiment_args import parse
from vae_jax.sweeps import product, sweep

NOTES = {"full": "Reduced budget: 10 epochs on MNIST, one seed, K = 500 components "
                 "(pseudo-inputs), IAF of 2 steps; Tomczak & Welling trained far longer.",
         "small": "Small form: the 8x8 digits, 250 steps, K = 10, one seed."}

PLOTS = [{"x": "model.prior", "y": "test_nll"},
         {"x": "model.prior", "y": "test_elbo"},
         {"x": "model.prior", "y": "test_rate"},
         {"x": "model.prior", "y": "test_active_units"}]


def get_config(arg=None):
  c = sweeps.ablation_base(arg, small_steps=250, full_epochs=10)
  c.objective.kl = "mc"
  full = parse(arg, small=bool, full=bool).full
  c.model.prior_components = 500 if full else 10
  c.model.flow_hidden = 256 if full else 32
  return c


def get_sweep(arg=None):
  del arg
  return product(sweep("model.prior", ["standard", "mixture", "vampprior"]),
                 sweep("model.posterior", ["gaussian", "iaf"]))
