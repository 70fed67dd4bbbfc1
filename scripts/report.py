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
  from vae_jax.errors import WriteError
  try:
    print(f"written to {report.write_report(_WORKDIR.value)}")
  except WriteError as e:  # it writes only report.html
    raise e.with_intact(f"the run in {_WORKDIR.value} is unchanged") from None


if __name__ == "__main__":
  cli.run(main)
