"""Burda, Grosse & Salakhutdinov 2016 (IWAE), MNIST, the two-layer model:

  inference   x -> 200-200 tanh -> z1 (100) -> 100-100 tanh -> z2 (50)
  generative  z2 -> 100-100 tanh -> z1 -> 200-200 tanh -> x (Bernoulli)

(the paper's code, yburda/iwae experiments.py with 2 layers: latent units
[100, 50], hidden_units_q [[200, 200], [100, 100]], hidden_units_p
[[100, 100], [200, 200]]; this file had 100-100 and 50-50 until 2026-12-01),

each stochastic layer a diagonal Gaussian whose mean and log-variance the
layer's MLP emits. Everything else is experiments/iwae_burda.py: the paper's
protocol (dynamic binarisation, Adam ε 1e-4, batch 20, 3,280 epochs over 8
learning-rate stages, k = 5000 for the test NLL), its arguments (`iwae,k=50`
by default, `vae,k=1`, `iwae,k=5`, ..., `npz`, `epochs=E`, `batch=B`, `small`) and its stated
differences from the paper. The Monte Carlo KL is used (z1's KL has no closed
form in a bottom-up stack).

Published (Table 1, two stochastic layers): VAE k=1 85.33, IWAE k=50 82.90 nats.

  python scripts/train.py --config=experiments/iwae_two_layer.py:iwae,k=5,npz \
      --config.data.path=../shared/data/mnist/train.npz --workdir=runs/iwae2_k5
"""

from experiments import iwae_burda


def get_config(arg: str | None = None):
  c = iwae_burda.get_config(arg)
  c.model.name = "bottom_up"
  c.model.encoder_hidden = c.model.decoder_hidden = (200, 200)
  c.model.latent_dims = (100, 50)
  c.model.stochastic_hidden = ((100, 100),)
  objective = "VAE" if c.objective.name == "elbo" else "IWAE"
  k = c.objective.num_samples
  published = {("VAE", 1): 85.33, ("VAE", 5): 85.01, ("VAE", 50): 84.78,
               ("IWAE", 1): 85.33, ("IWAE", 5): 83.89, ("IWAE", 50): 82.90}
  c.reference.table = f"Table 1, MNIST, two stochastic layers, {objective} k={k}"
  c.reference.nll = published.get((objective, k))
  return c
