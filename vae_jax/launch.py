"""Running the members of a sweep: one at a time, N at a time, or on a cluster.

Every launcher runs a member the same way, `run_member` (or `run_group` for
members trained together), which trains it in `<sweep workdir>/<member name>/`
(resuming what is there) and records its status in `status.json` there:
running, finished or failed (with the error line), and its wall time summed
over attempts. A finished member (eval.json written) is skipped when the
sweep is launched again; any other is resumed.
"""

import contextlib
import json
import os
import subprocess
import sys
import time
import warnings
from typing import Any

import tqdm

from vae_jax import locks, runs, writers
from vae_jax.errors import UserError, WriteError
from vae_jax.sweeps import Sweep

STATUS_FILE = "status.json"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def member_dir(workdir: str, sweep: Sweep, index: int) -> str:
  return os.path.join(workdir, sweep.names[index])


_STATUS_KEYS = {"status": str, "seconds": (int, float)}


def read_status(run_dir: str) -> dict:
  """The member's status record; 'pending' when it never started. A damaged
  one reads as 'unfinished' (with a warning and `damaged`): the member is
  resumed, and its record set aside before it is written again."""
  path = os.path.join(run_dir, STATUS_FILE)
  status = {"status": "pending", "seconds": 0.0}
  if os.path.exists(path):
    try:
      status = runs.read_json(path, _STATUS_KEYS)
      if not isinstance(status.get("attempts", 0), int):
        raise runs.DamagedFile(f"{path} is damaged (no valid 'attempts')")
    except runs.DamagedFile as e:
      warnings.warn(f"{e}; the member counts as unfinished", stacklevel=2)
      status = {"status": "unfinished", "seconds": 0.0, "damaged": True}
  finished = runs.read_eval(os.path.join(run_dir, runs.EVAL_FILE)) is not None
  if finished or status["status"] == "finished":  # eval.json is what finished means
    status["status"] = "finished" if finished else "unfinished"
  return status


def _write_status(run_dir: str, record: dict) -> None:
  path = os.path.join(run_dir, STATUS_FILE)
  if record.pop("damaged", False) and os.path.exists(path):
    writers.set_aside(path)  # the damaged record is kept, not overwritten
  writers.atomic_write_text(path, json.dumps(record, indent=2) + "\n")


class MembersFailed(UserError):
  """Some members of a vectorised group failed on their own (each one's
  status says why); the others finished."""


def _error_line(e: BaseException) -> str:
  line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
  return f"{type(e).__name__}: {line}"


@contextlib.contextmanager
def _recorded(sweep: Sweep, indices: list[int], workdir: str):
  """Marks the members running, then finished or failed (with the error line),
  adding the wall time to each (its share, when several train together)."""
  records = []
  with contextlib.ExitStack() as held:
    for i in indices:
      if not 0 <= i < len(sweep):
        raise UserError(f"config.sweep_index={i} but the sweep {sweep.spec} has "
                        f"{len(sweep)} members (0..{len(sweep) - 1})")
      run_dir = member_dir(workdir, sweep, i)
      runs.check_writable(run_dir)
      held.enter_context(locks.hold(run_dir))  # a live member's record is not touched
      before = read_status(run_dir)
      records.append((run_dir, {
          "name": sweep.names[i], "index": i, "overrides": sweep.members[i],
          "status": "running", "error": None, "seconds": before.get("seconds", 0.0),
          "attempts": before.get("attempts", 0) + 1, "damaged": before.get("damaged", False),
          "trained_with": [sweep.names[j] for j in indices if j != i]}))
    for run_dir, record in records:
      _write_status(run_dir, record)
    start, failed = time.time(), False
    try:
      yield [record for _, record in records]
    except BaseException as e:
      failed = True
      for _, record in records:  # a member that failed on its own keeps its error
        if record["status"] == "running":
          record.update(status="finished" if isinstance(e, MembersFailed) else "failed",
                        error=None if isinstance(e, MembersFailed) else _error_line(e))
      raise
    else:
      for _, record in records:
        record.update(status="finished")
    finally:
      for run_dir, record in records:
        record["seconds"] += (time.time() - start) / len(records)
        try:
          _write_status(run_dir, record)
        except WriteError:
          if not failed:  # else the error that ended the member is the one to show
            raise


def run_member(sweep: Sweep, index: int, workdir: str, config=None) -> dict:
  """Trains member `index` (its config, or `config` with the member's
  overrides already applied) and returns its eval.json; the status file says
  what happened, also when this raises."""
  from vae_jax import train  # Deferred: JAX.
  with _recorded(sweep, [index], workdir):
    return train.train_and_evaluate(config or sweep.configs[index],
                                    member_dir(workdir, sweep, index))


def run_group(sweep: Sweep, indices: list[int], workdir: str) -> list[dict]:
  """Trains members that differ only in seed, β or learning rate as one
  vmapped program (vae_jax.vectorized); statuses as `run_member`."""
  from vae_jax import vectorized  # Deferred: JAX.
  with _recorded(sweep, indices, workdir) as records:
    failed: dict = {}  # position in `indices` -> the member's own error
    try:
      results = vectorized.train_members([sweep.configs[i] for i in indices],
                                         [member_dir(workdir, sweep, i) for i in indices])
      failed = {j: r for j, r in enumerate(results) if isinstance(r, Exception)}
    except BaseException as e:  # members that diverged before it failed on their own
      failed = getattr(e, "failed", {})
      raise
    finally:
      for j, error in failed.items():
        records[j].update(status="failed", error=_error_line(error))
    if failed:
      j, first = next(iter(failed.items()))
      others = "the others finished" if len(failed) < len(indices) else "none finished"
      raise MembersFailed(f"{len(failed)} of the {len(indices)} members trained together "
                          f"failed ({', '.join(sweep.names[indices[k]] for k in failed)}), "
                          f"{others}; {sweep.names[indices[j]]}: {first}")
    return results


def _command(sweep: Sweep, unit: list[int], workdir: str) -> list[str]:
  """The process that trains `unit`: one member through scripts/train.py
  (what any scheduler runs), or a vectorised group through scripts/sweep.py."""
  sets = [f"--set={kv}" for kv in sweep.overrides]
  if len(unit) > 1:
    return [sys.executable, os.path.join(ROOT, "scripts", "sweep.py"), f"--config={sweep.spec}",
            f"--workdir={workdir}", f"--members={','.join(map(str, unit))}", "--vectorize",
            *sets]
  return [sys.executable, os.path.join(ROOT, "scripts", "train.py"), f"--config={sweep.spec}",
          f"--config.sweep_index={unit[0]}", f"--workdir={workdir}",
          "--config.train.progress_bar=False", *(f"--config.{kv}" for kv in sweep.overrides)]


def _member_env(workdir: str) -> dict[str, str]:
  """The members' environment: one XLA persistent compilation cache per sweep
  (unless one is set), so members compile each program once between them; the
  cached executable is the compiled code itself, so no number changes."""
  env = dict(os.environ)
  env.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.abspath(workdir),
                                                           "xla_cache"))
  env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  return env


def _unfinished(sweep: Sweep, workdir: str) -> list[int]:
  return [i for i in range(len(sweep))
          if read_status(member_dir(workdir, sweep, i))["status"] != "finished"]


def units(sweep: Sweep, workdir: str, vectorize: bool = False) -> list[list[int]]:
  """What each process trains: one unfinished member, or with `vectorize` every
  group of unfinished members that differ only in seed, β or learning rate."""
  todo = _unfinished(sweep, workdir)
  if not vectorize:
    return [[i] for i in todo]
  from vae_jax import vectorized
  return [[todo[j] for j in group]
          for group in vectorized.groups([sweep.configs[i] for i in todo])]


def _settle(sweep: Sweep, workdir: str, unit: list[int], returncode: int, log: str) -> int:
  """After a process ends: a member it left 'running' (killed, crashed) is
  failed. Returns how many of its members failed."""
  failed = 0
  for i in unit:
    run_dir = member_dir(workdir, sweep, i)
    status = read_status(run_dir)
    if status["status"] not in ("finished", "failed"):
      status.update(status="failed", error=f"exit status {returncode}; see {log}")
      _write_status(run_dir, status)
    failed += status["status"] == "failed"
  return failed


def statuses(sweep: Sweep, workdir: str) -> dict[str, str]:
  return {name: read_status(member_dir(workdir, sweep, i))["status"]
          for i, name in enumerate(sweep.names)}


def run_local(sweep: Sweep, workdir: str, parallel: int = 1, vectorize: bool = False,
              progress: bool = True) -> dict[str, str]:
  """Runs every unfinished member, `parallel` processes at a time; a failure
  is recorded and the rest go on. Returns {name: status}."""
  if parallel < 1:
    raise UserError(f"--parallel={parallel}; give at least 1")
  with locks.hold(workdir):  # one runner per sweep workdir
    return _run_local(sweep, workdir, parallel, vectorize, progress)


def _run_local(sweep: Sweep, workdir: str, parallel: int, vectorize: bool, progress: bool
               ) -> dict[str, str]:
  todo = units(sweep, workdir, vectorize)
  bar = tqdm.tqdm(total=len(sweep), initial=len(sweep) - sum(map(len, todo)), unit="run",
                  disable=not progress, file=sys.stderr, dynamic_ncols=True, desc="sweep")
  running: list[tuple[list[int], subprocess.Popen, Any, str]] = []
  shown, failed = None, 0
  log_dir = os.path.join(workdir, "logs")
  with writers.writing(log_dir):
    os.makedirs(log_dir, exist_ok=True)
  while todo or running:
    while todo and len(running) < parallel:
      unit = todo.pop(0)
      path = os.path.join(log_dir, f"{sweep.names[unit[0]]}.log")
      with writers.writing(path):
        log = open(path, "a")  # noqa: SIM115 - closed when the process ends
      running.append((unit, subprocess.Popen(_command(sweep, unit, workdir), cwd=ROOT,
                                             stdout=log, stderr=subprocess.STDOUT,
                                             env=_member_env(workdir)), log, path))
    time.sleep(0.2)
    for entry in list(running):
      unit, proc, log, path = entry
      if proc.poll() is None:
        continue
      log.close()
      running.remove(entry)
      failed += _settle(sweep, workdir, unit, proc.returncode, path)
      bar.update(len(unit))
    if (len(running), failed) != shown:
      shown = (len(running), failed)
      bar.set_postfix(running=sum(len(r[0]) for r in running), failed=failed)
  bar.close()
  return statuses(sweep, workdir)


def run_submitit(sweep: Sweep, workdir: str, cluster: str | None = None,
                 vectorize: bool = False, **parameters) -> dict[str, str]:
  """Submits the unfinished members as one job array through submitit (SLURM
  on a cluster; cluster='local' runs them as local processes), waits, and
  returns {name: status}. Each job runs the command `run_local` would: for
  one member scripts/train.py --config.sweep_index=i, exactly what a member
  launched by hand or by another scheduler runs."""
  import submitit
  with locks.hold(workdir):  # one runner per sweep workdir
    return _run_submitit(sweep, workdir, cluster, vectorize, submitit, parameters)


def _run_submitit(sweep, workdir, cluster, vectorize, submitit, parameters) -> dict[str, str]:
  todo = units(sweep, workdir, vectorize)
  executor = submitit.AutoExecutor(folder=os.path.join(workdir, "submitit"), cluster=cluster)
  if parameters:
    executor.update_parameters(**parameters)
  commands = [submitit.helpers.CommandFunction(_command(sweep, unit, workdir), cwd=ROOT,
                                               env=_member_env(workdir)) for unit in todo]
  jobs = executor.submit_array(commands) if commands else []
  for unit, job in zip(todo, jobs):
    try:
      job.result()
    except Exception:  # noqa: BLE001 - a failed member is recorded, the others go on
      _settle(sweep, workdir, unit, -1, job.paths.stderr)
  return statuses(sweep, workdir)
