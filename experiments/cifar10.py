"""CIFAR-10, 8-bit colour, a top-down hierarchy (vae_jax/models/top_down.py)
with PixelCNN++'s discretised mixture of 10 logistics (RGB channels coupled);
bits/dim as the colour-image literature reports it (-log2 p(x) / 3072, x the 8-bit image).

`:npz` reads config.data.path, e.g. ../shared/data/cifar10_subset/train.npz:
3,000 real CIFAR-10 images, of which the last 500 are held out as test and
200 more for validation. Far too few for numbers comparable with the
literature (IAF 3.11, NVAE 2.91, VDVAE 2.87 bits/dim, all trained on 50,000
images for days on GPUs): a figure from the subset checks the colour path,
nothing more.

  python scripts/train.py --config=experiments/cifar10.py:npz \
      --config.data.path=../shared/data/cifar10_subset/train.npz --workdir=runs/cifar
  python scripts/train.py --config=experiments/cifar10.py --workdir=runs/cifar  # tfds
"""

from experiments import hierarchical_mnist
from vae_jax import experiment_args


def get_config(arg: str | None = None):
  """hierarchical_mnist's model and training, patched for 8-bit colour."""
  a = experiment_args.parse(arg, npz=bool, small=bool)
  c = hierarchical_mnist.get_config(",".join(n for n in ("npz", "small") if getattr(a, n)))
  c.data.name = "npz" if a.npz else "cifar10"
  c.data.binarize = "none"
  c.data.test_size, c.data.validation_size = (8, 8) if a.small else (500, 200)
  c.model.likelihood = "discretized_mix_logistic"
  c.model.num_mixtures = 10
  c.model.groups_per_scale = (1, 2, 2)  # 4×4, 8×8, 16×16
  c.objective.kl_warmup_steps = 5 if a.small else 2000
  c.train.num_epochs = 30
  if not a.small:
    c.train.batch_size = 32
    c.train.log_every_steps = 50
    c.train.eval_every_steps = c.train.checkpoint_every_steps = 500
    c.eval.batch_size = 50
  c.reference.update(
      source="none: the 3,000-image subset is not comparable with the literature",
      table="", nll=None,
      differences="the literature trains on all 50,000 images for days on GPUs (IAF 3.11, "
                  "NVAE 2.91, VDVAE 2.87 bits/dim on the official test set)")
  return c
