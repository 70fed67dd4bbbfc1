"""Writes DIR/report.html: a run's config, numbers with errors and figures.

  python scripts/report.py --workdir=runs/digits
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from vae_jax import cli  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of a finished run.", required=True)


def main(argv):
  del argv
  from vae_jax import report
  print(f"written to {report.write_report(_WORKDIR.value)}")


if __name__ == "__main__":
  cli.run(main)
