"""Trains a VAE, then evaluates its best checkpoint on the test split.

  python scripts/train.py --config=experiments/digits.py --workdir=runs/digits
  python scripts/train.py --config=experiments/digits.py:small --workdir=/tmp/d \
      --config.model.latent_dim=4

Running the same command again resumes from the last checkpoint in --workdir.

Multi-process (multi-host): start one process per host with the same flags,
plus --distributed on a cluster JAX detects (SLURM, Open MPI, Cloud TPU), or
--coordinator_address=HOST:PORT --num_processes=P --process_id=i anywhere
(two local CPU processes on 127.0.0.1 test the path). The workdir must be on
a filesystem every process sees; process 0 writes logs, figures and results.
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
_DISTRIBUTED = flags.DEFINE_bool("distributed", False,
                                 "Join a multi-process run JAX detects from the cluster.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "HOST:PORT of process 0, for a multi-process run.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.",
                                      lower_bound=1)
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index, 0..P-1.",
                                   lower_bound=0)


def main(argv):
  del argv
  config = cli.config_value(_CONFIG)
  from vae_jax import backend, train  # Deferred: flags first, then JAX.
  if _DISTRIBUTED.value or _COORDINATOR.value or _NUM_PROCESSES.value is not None:
    backend.initialize_distributed(config.backend, _COORDINATOR.value, _NUM_PROCESSES.value,
                                   _PROCESS_ID.value)
  if config.sweep_index is None:
    train.train_and_evaluate(config, _WORKDIR.value)
    return
  from vae_jax import launch, sweeps  # a member of a sweep, in WORKDIR/<its name>
  sweep = sweeps.Sweep(config_flags.get_config_filename(flags.FLAGS["config"]))
  index = config.sweep_index
  member = sweep.members[index] if 0 <= index < len(sweep) else {}
  launch.run_member(sweep, index, _WORKDIR.value, sweeps.apply(config, member))


if __name__ == "__main__":
  flags.mark_flag_as_required("config")
  cli.run(main)
