"""Running the members of a sweep: one at a time, N at a time, or on a cluster.

Every launcher runs a member the same way, `run_member`, which trains it in
`<sweep workdir>/<member name>/` (resuming what is there) and records its
status in `status.json` there: running, finished or failed (with the error
line), and its wall time summed over attempts. A finished member (eval.json
written) is skipped when the sweep is launched again; any other is resumed.
"""

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence

import tqdm

from vae_jax import runs, writers
from vae_jax.errors import UserError
from vae_jax.sweeps import Sweep

STATUS_FILE = "status.json"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def member_dir(workdir: str, sweep: Sweep, index: int) -> str:
  return os.path.join(workdir, sweep.names[index])


def read_status(run_dir: str) -> dict:
  """The member's status record; 'pending' when it never started."""
  path = os.path.join(run_dir, STATUS_FILE)
  status = runs.read_json(path) if os.path.exists(path) else {"status": "pending",
                                                               "seconds": 0.0}
  if os.path.exists(os.path.join(run_dir, runs.EVAL_FILE)):
    status["status"] = "finished"
  return status


def _write_status(run_dir: str, record: dict) -> None:
  writers.atomic_write_text(os.path.join(run_dir, STATUS_FILE),
                            json.dumps(record, indent=2) + "\n")


def run_member(sweep: Sweep, index: int, workdir: str, config=None) -> dict:
  """Trains member `index` (its config, or `config` with the member's
  overrides already applied) and returns its eval.json; the status file says
  what happened, also when this raises."""
  from vae_jax import train  # Deferred: JAX.
  if not 0 <= index < len(sweep):
    raise UserError(f"config.sweep_index={index} but the sweep {sweep.spec} has "
                    f"{len(sweep)} members (0..{len(sweep) - 1})")
  run_dir = member_dir(workdir, sweep, index)
  runs.check_writable(run_dir)
  before = read_status(run_dir)
  record = {"name": sweep.names[index], "index": index, "overrides": sweep.members[index],
            "status": "running", "error": None, "seconds": before.get("seconds", 0.0),
            "attempts": before.get("attempts", 0) + 1}
  _write_status(run_dir, record)
  start = time.time()
  try:
    result = train.train_and_evaluate(config or sweep.configs[index], run_dir)
  except BaseException as e:
    line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    record.update(status="failed", error=f"{type(e).__name__}: {line}")
    raise
  else:
    record.update(status="finished")
    return result
  finally:
    record["seconds"] += time.time() - start
    _write_status(run_dir, record)


def _command(sweep: Sweep, index: int, workdir: str, extra: Sequence[str]) -> list[str]:
  return [sys.executable, os.path.join(ROOT, "scripts", "train.py"), f"--config={sweep.spec}",
          f"--config.sweep_index={index}", f"--workdir={workdir}",
          "--config.train.progress_bar=False", *extra]


def run_local(sweep: Sweep, workdir: str, parallel: int = 1, extra: Sequence[str] = (),
              progress: bool = True) -> dict[str, str]:
  """Runs every unfinished member, `parallel` processes at a time; a failure
  is recorded and the rest go on. Returns {name: status}."""
  if parallel < 1:
    raise UserError(f"--parallel={parallel}; give at least 1")
  todo = [i for i in range(len(sweep))
          if read_status(member_dir(workdir, sweep, i))["status"] != "finished"]
  done = len(sweep) - len(todo)
  bar = tqdm.tqdm(total=len(sweep), initial=done, unit="run", disable=not progress,
                  file=sys.stderr, dynamic_ncols=True, desc="sweep")
  running: dict[int, tuple[subprocess.Popen, object]] = {}
  failed: list[str] = []
  shown = None
  log_dir = os.path.join(workdir, "logs")
  os.makedirs(log_dir, exist_ok=True)
  while todo or running:
    while todo and len(running) < parallel:
      i = todo.pop(0)
      log = open(os.path.join(log_dir, f"{sweep.names[i]}.log"), "a")  # noqa: SIM115
      running[i] = (subprocess.Popen(_command(sweep, i, workdir, extra), cwd=ROOT,
                                     stdout=log, stderr=subprocess.STDOUT), log)
    time.sleep(0.2)
    for i, (proc, log) in list(running.items()):
      if proc.poll() is None:
        continue
      log.close()
      del running[i]
      run_dir = member_dir(workdir, sweep, i)
      if proc.returncode != 0:
        failed.append(sweep.names[i])
        status = read_status(run_dir)
        if status["status"] != "failed":  # died before it could say (a kill, a crash)
          status.update(status="failed", error=f"exit status {proc.returncode}; see "
                        f"{log_dir}/{sweep.names[i]}.log")
          _write_status(run_dir, status)
      bar.update(1)
    if (len(running), len(failed)) != shown:
      shown = (len(running), len(failed))
      bar.set_postfix(running=shown[0], failed=shown[1])
  bar.close()
  return {name: read_status(member_dir(workdir, sweep, i))["status"]
          for i, name in enumerate(sweep.names)}


def run_submitit(sweep: Sweep, workdir: str, cluster: str | None = None,
                 extra: Sequence[str] = (), **parameters) -> dict[str, str]:
  """Submits the unfinished members as one job array through submitit (SLURM
  on a cluster; cluster='local' runs them as local processes), waits, and
  returns {name: status}. Each job runs scripts/train.py --config.sweep_index=i,
  exactly what a member launched by hand or by another scheduler runs."""
  import submitit
  todo = [i for i in range(len(sweep))
          if read_status(member_dir(workdir, sweep, i))["status"] != "finished"]
  executor = submitit.AutoExecutor(folder=os.path.join(workdir, "submitit"), cluster=cluster)
  if parameters:
    executor.update_parameters(**parameters)
  commands = [submitit.helpers.CommandFunction(_command(sweep, i, workdir, extra), cwd=ROOT)
              for i in todo]
  jobs = executor.submit_array(commands) if commands else []
  for job in jobs:
    try:
      job.result()
    except Exception:  # noqa: BLE001 - recorded in the member's status.json
      pass
  return {name: read_status(member_dir(workdir, sweep, i))["status"]
          for i, name in enumerate(sweep.names)}
