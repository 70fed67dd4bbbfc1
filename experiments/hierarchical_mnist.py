"""A top-down hierarchy on MNIST (Ladder VAE / NVAE style, vae_jax/models/top_down.py):
dynamically binarised pixels, Bernoulli likelihood; a ResNet bottom-up pass,
then latent groups from the top down, 2 groups of 8 channels at 7×7 and 2 at
14×14 (1,176 latent units), q and p sharing the top-down state, closed-form
KL per group, a linear KL warm-up (Sønderby et al. 2016) and gradient-norm
clipping (NVAE, VDVAE). Test: the last 10,000 images of an .npz without a
test split (tfds: the official test set), NLL by importance sampling.

Per-group KL and active units are in eval.json's `groups`, the printed
summary, TensorBoard (kl_z1, kl_z2, ...) and the figures (kl_per_group).

  python scripts/train.py --config=experiments/hierarchical_mnist.py:npz \
      --config.data.path=../shared/data/mnist/train.npz --workdir=runs/hier_mnist
  python scripts/train.py --config=experiments/hierarchical_mnist.py:npz,small \
      --config.data.path=FILE.npz --workdir=/tmp/h  # seconds

`steps=N` sets a budget of N steps, the KL warm-up a quarter of it.
"""

from vae_jax import config as config_lib
from vae_jax import experiment_args


def get_config(arg: str | None = None):
  a = experiment_args.parse(arg, npz=bool, small=bool, steps=int)
  c = config_lib.default()
  c.data.name = "npz" if a.npz else "mnist"
  c.data.binarize = "dynamic"
  c.data.test_size = 10_000
  c.data.validation_size = 1000
  c.model.name = "top_down"
  c.model.likelihood = "bernoulli"
  c.model.activation = "swish"
  c.model.width = 32
  c.model.latent_channels = 8
  c.model.groups_per_scale = (2, 2)
  c.model.blocks_per_group = 1
  c.model.encoder_blocks = 1
  c.objective.kl_warmup_steps = 5000
  c.optimizer.learning_rate = 1e-3
  c.optimizer.grad_clip_norm = 200.0
  # One step per dispatch and one importance-sampling chunk: XLA:CPU runs
  # convolutions about 12× slower inside a loop (lax.scan) than outside.
  c.train.steps_per_dispatch = 1
  c.train.batch_size = 64
  c.train.num_epochs = 20
  c.train.log_every_steps = 100
  c.train.eval_every_steps = c.train.checkpoint_every_steps = 1000
  c.eval.batch_size = 100
  c.eval.num_importance_samples = 1000
  c.eval.importance_chunk = 1000  # one chunk (no loop), see above
  if a.steps:  # a shorter budget: the warm-up keeps its share of it
    c.train.num_steps = a.steps
    c.objective.kl_warmup_steps = max(1, a.steps // 4)
  c.reference.update(
      source="Vahdat & Kautz 2020, NVAE (Ladder VAE, Sønderby et al. 2016: 81.74)",
      table="Table 2, MNIST (dynamically binarised), NVAE", nll=78.01,
      differences="not a reproduction: 4 groups of 8 channels and width 32 (NVAE: 2 scales "
                  "of 15 groups, hundreds of channels, 400 epochs on GPUs); test on the last "
                  "10,000 of the .npz")
  if a.small:
    c.data.test_size = c.data.validation_size = 8
    config_lib.small_form(c, num_steps=10, batch_size=8, every=5)
    c.model.width, c.model.latent_channels = 8, 2
    c.objective.kl_warmup_steps = 5
    c.eval.batch_size = 8
  return c
