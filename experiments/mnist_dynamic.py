"""MNIST with dynamic binarisation (a fresh Bernoulli draw of each pixel at
every step; validation and test binarised once with a fixed seed), Bernoulli
likelihood, MLP 784-500-20, 50 epochs, the last 10,000 training images held
out as test when read from an .npz without a test split.

From tfds (needs a prepared copy, or a network):
  python scripts/train.py --config=experiments/mnist_dynamic.py --workdir=runs/mnist
From an .npz (e.g. the offline copy of the MNIST training set):
  python scripts/train.py --config=experiments/mnist_dynamic.py:npz \
      --config.data.path=../shared/data/mnist/train.npz --workdir=runs/mnist_npz
"""

from vae_jax import config as config_lib
from vae_jax import experiment_args


def get_config(arg: str | None = None):
  a = experiment_args.parse(arg, npz=bool, small=bool)
  c = config_lib.default()
  c.data.name = "npz" if a.npz else "mnist"
  c.data.binarize = "dynamic"
  c.data.test_size = 10_000  # .npz without test arrays: the last 10,000
  c.data.validation_size = 5_000
  c.model.likelihood = "bernoulli"
  c.model.encoder_hidden = (500,)
  c.model.decoder_hidden = (500,)
  c.model.latent_dim = 20
  c.train.batch_size = 128
  c.train.num_epochs = 50
  c.train.log_every_steps = 100
  c.train.eval_every_steps = 1000
  c.train.checkpoint_every_steps = 1000
  c.eval.batch_size = 500
  c.eval.num_importance_samples = 1000
  if a.small:
    c.data.test_size = 8
    c.data.validation_size = 8
    config_lib.small_form(c, num_steps=10, batch_size=8, every=5)
    c.eval.batch_size = 8
  return c
