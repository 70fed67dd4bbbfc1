"""Runs a sweep (experiments/ablations/*.py): every member in its own
subdirectory, then one results table and its figures.

  python scripts/sweep.py --config=experiments/ablations/beta.py:small --workdir=runs/beta
  python scripts/sweep.py --config=... --workdir=... --dry_run        # list the members
  python scripts/sweep.py --config=... --workdir=... --parallel=2     # 2 processes at a time
  python scripts/sweep.py --config=... --workdir=... --vectorize    # vmapped seeds/β/lr
  python scripts/sweep.py --config=... --workdir=... --launcher=submitit   # SLURM job array
  python scripts/sweep.py --config=... --workdir=... --set=data.path=../shared/data/mnist/train.npz

Running the same command again skips finished members and resumes the others.
One member from any scheduler: scripts/train.py --config=SWEEP_FILE --config.sweep_index=i
--workdir=DIR (it trains in DIR/<member name>).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from vae_jax import cli  # noqa: E402

_CONFIG = flags.DEFINE_string("config", None, "Sweep file, path[:arg].", required=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the sweep (created; resumed).",
                               required=True)
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "List the members and their status; run none.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Members trained at once (local launcher).",
                                 lower_bound=1)
_LAUNCHER = flags.DEFINE_enum("launcher", "local", ["local", "submitit"],
                              "local processes, or a submitit job array (SLURM).")
_CLUSTER = flags.DEFINE_string("cluster", None, "submitit cluster: None (detect: SLURM if "
                               "present), 'slurm', 'local' or 'debug'.")
_VECTORIZE = flags.DEFINE_bool("vectorize", False, "Train members that differ only in seed, "
                                "β or learning rate as one vmapped program per group.")
_MEMBERS = flags.DEFINE_string("members", None, "Comma-separated member indices to train in "
                               "this process (with --vectorize: together); no tables.")
_SET = flags.DEFINE_multi_string("set", [], "key=value given to every member as "
                                 "--config.key=value (e.g. data.path=FILE).")


def main(argv):
  del argv
  from vae_jax import launch, sweeps  # Deferred: flags first.
  from vae_jax.errors import WriteError
  sweep = sweeps.Sweep(_CONFIG.value, _SET.value)
  try:
    _main(sweep)
  except WriteError as e:  # every member's run keeps its own checkpoints and results
    finished = sum(s == "finished" for s in launch.statuses(sweep, _WORKDIR.value).values())
    raise e.with_intact(f"the members' runs in {_WORKDIR.value} are intact ({finished} of "
                        f"{len(sweep)} finished)") from None


def _main(sweep) -> None:
  from vae_jax import launch, locks, results
  if _DRY_RUN.value:
    print(f"{len(sweep)} members of {sweep.spec}, in {_WORKDIR.value}/<name>:")
    for i, (name, member) in enumerate(zip(sweep.names, sweep.members)):
      status = launch.read_status(launch.member_dir(_WORKDIR.value, sweep, i))
      print(f"  {i:3d}  {name:40s}  {status['status']:9s}  "
            + " ".join(f"--config.{k}={v}" for k, v in member.items()))
    return
  if _MEMBERS.value is not None:
    try:
      members = [int(i) for i in _MEMBERS.value.split(",")]
    except ValueError:
      cli.fail(f"--members={_MEMBERS.value}: give indices, e.g. --members=0,3")
    if _VECTORIZE.value:
      launch.run_group(sweep, members, _WORKDIR.value)
    else:
      for i in members:
        launch.run_member(sweep, i, _WORKDIR.value)
    return
  with locks.hold(_WORKDIR.value):  # one runner per sweep workdir, tables included
    if _LAUNCHER.value == "local":
      statuses = launch.run_local(sweep, _WORKDIR.value, _PARALLEL.value, _VECTORIZE.value)
    else:
      statuses = launch.run_submitit(sweep, _WORKDIR.value, _CLUSTER.value, _VECTORIZE.value)
    rows = results.collect(sweep, _WORKDIR.value)  # read once, for the tables and figures
    csv_path, md_path = results.write_tables(sweep, _WORKDIR.value, rows)
    figures = [results.plot(sweep, _WORKDIR.value, rows=rows, **p) for p in sweep.plots]
  with open(md_path) as f:
    print(f.read())
  print(f"written: {csv_path}, {md_path}" + "".join(f", {p}" for p in figures))
  failed = [n for n, s in statuses.items() if s != "finished"]
  if failed:
    cli.fail(f"{len(failed)} of {len(sweep)} members did not finish ({', '.join(failed[:5])}); "
             f"their errors are in results.md and {_WORKDIR.value}/logs/; run the same "
             "command again to resume them")


if __name__ == "__main__":
  cli.run(main)
