"""Trains a VAE, then evaluates its best checkpoint on the test split.

  python scripts/train.py --config=experiments/digits.py --workdir=runs/digits
  python scripts/train.py --config=experiments/digits.py:small --workdir=/tmp/d \
      --config.model.latent_dim=4

Running the same command again resumes from the last checkpoint in --workdir.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from vae_jax import cli  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, path[:arg].", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the run (created; resumed).",
                               required=True)


def main(argv):
  del argv
  config = cli.config_value(_CONFIG)
  from vae_jax import train  # Deferred: flags first, then JAX.
  train.train_and_evaluate(config, _WORKDIR.value)


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  cli.run(main)
