"""Writes docs/results.md and docs/results.csv: the results table, from the
finished runs of the rows in experiments/results_table.py.

  python scripts/results.py                       # gather what has run
  python scripts/results.py --train=missing       # first train every row not yet run
  python scripts/results.py --train=iwae1_vae,flax_example
A row whose run is not in --runs keeps its figures from the previous
results.csv when its config is unchanged since they were measured (--nokeep:
only what is in --runs).

Each row is trained by the command the table prints for it (scripts/train.py
into --runs/<row id>), so running it again resumes an interrupted row.
"""

import csv
import os
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from vae_jax import cli  # noqa: E402

_RUNS = flags.DEFINE_string("runs", "runs/results", "Folder of the rows' runs.")
_OUT = flags.DEFINE_string("out", "docs", "Folder for results.md and results.csv.")
_ROWS = flags.DEFINE_string("rows", "experiments/results_table.py", "File defining ROWS.")
_NOTE = flags.DEFINE_string("note", "", "A paragraph for the top of results.md (e.g. how "
                            "the machine was shared while the rows trained).")
_KEEP = flags.DEFINE_boolean("keep", True, "Keep the figures of a row whose run is not in "
                             "--runs from the previous OUT/results.csv, where the row's config "
                             "is unchanged since (the same config_sha); --nokeep: runs only.")
_TRAIN = flags.DEFINE_string("train", "", "Rows to train first: ids (comma-separated), or "
                             "'missing' for every row with no finished run.")


def main(argv):
  del argv
  import jax

  from vae_jax import results_table
  from vae_jax.errors import UserError
  rows = list(cli.load_module(_ROWS.value).ROWS)
  backend = jax.default_backend()
  ids = {r.id for r in rows}
  if _TRAIN.value == "missing":
    todo = [r for r in results_table.gather(rows, _RUNS.value, backend)
            if r["status"] != "finished" and not r["status"].startswith("not run: needs")]
    todo = [r["id"] for r in todo]
  else:
    todo = [t for t in _TRAIN.value.split(",") if t]
    unknown = sorted(set(todo) - ids)
    if unknown:
      raise UserError(f"--train names rows {unknown} that {_ROWS.value} does not define; "
                      f"its rows: {', '.join(r.id for r in rows)}")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for row in rows:
    if row.id not in todo:
      continue
    command = shlex.split(row.command(_RUNS.value))
    print(f"training row {row.row} ({row.id}): {' '.join(command)}", flush=True)
    code = subprocess.call([sys.executable, *command[1:]], cwd=root)
    if code:
      print(f"row {row.id} failed (exit {code}); its row says so, the others go on",
            file=sys.stderr)
  previous = None
  csv_before = os.path.join(_OUT.value, "results.csv")
  if _KEEP.value and os.path.exists(csv_before):
    try:
      previous = results_table.read_csv(csv_before)
    except (OSError, ValueError, csv.Error) as e:
      print(f"warning: not keeping earlier figures: {csv_before} is unreadable ({e})",
            file=sys.stderr)
  table = results_table.gather(rows, _RUNS.value, backend, previous)
  md, csv_path = results_table.write(table, _OUT.value, _RUNS.value, _NOTE.value)
  done = sum(r["status"] == "finished" for r in table)
  kept = sum(map(results_table.is_kept, table))
  print(f"{done} of {len(table)} rows measured ({kept} kept from the previous table); "
        f"written to {md} and {csv_path}")


if __name__ == "__main__":
  cli.run(main)
