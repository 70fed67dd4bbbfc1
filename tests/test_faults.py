"""Faults a new user meets (issue 14), one class per section: damaged files the
project wrote, a full disk at every write, two runs in one workdir, user
arrays that disagree, config arguments nobody reads, NaN and out-of-range
values. Each ends in one line (or a warning and a fallback), never a
traceback, never a deletion."""

import builtins
import errno
import glob
import math
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import warnings

import numpy as np
import orbax.checkpoint as ocp
import pytest

from vae_jax import (
  cli,
  data,
  launch,
  locks,
  report,
  results,
  runs,
  sweeps,
  train,
  vectorized,
  writers,
)
from vae_jax import config as config_lib
from vae_jax.errors import UserError, WriteError

from conftest import ROOT, experiment, train_cli


def _one_line(error: BaseException) -> str:
  text = str(error)
  assert "\n" not in text and text, text
  return text


def _small(num_steps: int = 40):
  c = experiment("digits")
  c.train.num_steps = num_steps
  return c


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished 40-step run (checkpoints 20 and 40); tests work on copies."""
  workdir = str(tmp_path_factory.mktemp("finished") / "run")
  train.train_and_evaluate(_small(), workdir)
  return workdir


def _copy(finished, tmp_path) -> str:
  workdir = str(tmp_path / "run")
  shutil.copytree(finished, workdir)
  return workdir


# ------------------------------------------- 1. damaged files the project wrote

def _flip(path: str) -> None:
  """Flips every 7th byte: no longer UTF-8, no longer JSON."""
  b = bytearray(pathlib.Path(path).read_bytes())
  for i in range(0, len(b), 7):
    b[i] ^= 0xFF
  pathlib.Path(path).write_bytes(bytes(b))


def _truncate(path: str) -> None:
  """Cuts the file mid-line, as a kill or a full disk mid-write would."""
  b = pathlib.Path(path).read_bytes()
  n = len(b) // 2
  while b[n - 1:n] in (b"\n", b"}"):  # a cut after a whole line (or object) is no damage
    n -= 1
  pathlib.Path(path).write_bytes(b[:n])


def _wrong_shape(path: str) -> None:
  """Valid JSON (one valid line, for JSON lines) of a shape the project never writes."""
  pathlib.Path(path).write_text("[1, 2]\n")


DAMAGES = {"flip": _flip, "truncate": _truncate, "wrong_shape": _wrong_shape}


def _load_latest(w):
  return runs.load_run(w, "latest")


def _load_best(w):
  return runs.load_run(w, "best")


def _resume(w):
  return train.train_and_evaluate(_small(), w)


def _metrics_resume(w):
  writers.MetricWriter(w, resume_step=20).close()


def _status(w):
  return launch.read_status(w)


def _lock(w):
  with locks.hold(w):
    pass


ACTIONS = {"load_latest": _load_latest, "load_best": _load_best, "resume": _resume,
           "report": report.write_report, "metrics_resume": _metrics_resume,
           "status": _status, "lock": _lock}

# (file glob in the workdir, damages, action, outcome): 'error' is one UserError
# line naming the file; 'warn' a warning naming it and the action going on;
# 'ok' nothing to say (the file is never read back).
WALK = [
    ("config.json", DAMAGES, "load_latest", "error"),
    ("config.json", DAMAGES, "resume", "error"),
    ("config.json", DAMAGES, "report", "error"),
    ("eval.json", DAMAGES, "load_latest", "warn"),
    ("eval.json", DAMAGES, "report", "error"),
    ("eval.json", DAMAGES, "status", "warn"),
    ("eval.json", ["flip"], "resume", "warn"),  # evaluated again, the damaged one kept
    ("metrics.jsonl", DAMAGES, "load_latest", "warn"),
    ("metrics.jsonl", DAMAGES, "metrics_resume", "warn"),
    ("checkpoints/40/vae_jax_manifest.json", DAMAGES, "load_latest", "warn"),
    ("checkpoints/40/_CHECKPOINT_METADATA", ["flip"], "load_latest", "warn"),
    ("checkpoints/40/meta/metadata", ["flip"], "load_latest", "warn"),
    ("checkpoints/40/state/_METADATA", ["flip"], "load_latest", "warn"),
    ("checkpoints/40/state/manifest.ocdbt", ["flip"], "load_latest", "warn"),
    ("best/*/vae_jax_manifest.json", ["flip", "wrong_shape"], "load_best", "error"),
    ("status.json", DAMAGES, "status", "warn"),
    ("lock", DAMAGES, "lock", "ok"),
    ("tensorboard/events.out.tfevents.*", ["flip"], "load_latest", "ok"),
    ("images/samples.png", ["flip"], "report", "ok"),
]
CASES = [(f, d, a, o) for f, damages, a, o in WALK for d in damages]


@pytest.mark.parametrize("pattern,damage,action,outcome", CASES,
                         ids=[f"{f}-{d}-{a}" for f, d, a, _ in CASES])
def test_every_file_the_project_writes_damaged(finished, tmp_path, pattern, damage, action,
                                               outcome):
  workdir = _copy(finished, tmp_path)
  if pattern == "status.json":
    launch._write_status(workdir, {"status": "finished", "seconds": 1.0, "attempts": 1})  # noqa: SLF001
  if pattern == "lock":
    _lock(workdir)
  path = sorted(glob.glob(os.path.join(workdir, pattern)))[0]
  DAMAGES[damage](path)
  damaged = pathlib.Path(path).read_bytes()
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    if outcome == "error":
      with pytest.raises(UserError) as e:
        ACTIONS[action](workdir)
      named = _one_line(e.value)
    else:
      out = ACTIONS[action](workdir)
      named = " ".join(str(w.message) for w in caught)
      if action == "load_latest" and "checkpoints/40" in pattern:
        assert out.step == 20  # the previous step, restored
      if action == "status":  # eval.json is what finished means
        assert (out["status"] == "finished") == (pattern != "eval.json")
  rel = os.path.relpath(path, workdir)
  where = os.path.dirname(rel) if rel.startswith(("checkpoints", "best")) else rel
  if outcome != "ok":
    assert where.split("/")[0] in named and os.path.basename(where) in named, named
  if pattern != "lock":  # never a deletion: the damaged bytes are still in the workdir
    kept = [p for p in glob.glob(os.path.join(workdir, "**", "*"), recursive=True)
            if os.path.isfile(p) and pathlib.Path(p).read_bytes() == damaged]
    assert kept, f"the damaged {rel} is gone"


def test_flipped_manifest_cli_falls_back_to_the_previous_step(finished, tmp_path):
  """The issue's example: scripts/evaluate.py with the newest manifest flipped."""
  workdir = _copy(finished, tmp_path)
  _flip(os.path.join(workdir, "checkpoints", "40", "vae_jax_manifest.json"))
  out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "evaluate.py"),
                        f"--workdir={workdir}", "--checkpoint=latest", "--num_samples=2",
                        "--num_examples=10"], capture_output=True, text=True, timeout=300,
                       cwd=ROOT)
  assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
  assert f"warning: skipping checkpoint {workdir}/checkpoints/40: no valid checksum" in out.stderr
  assert "(step 20)" in out.stdout


# ------------------------------------------------------ 2. the disk filling up

@pytest.fixture
def tiny_disk(tmp_path):
  """A 1.2 MB tmpfs where the machine allows mounting one, else None."""
  mount = tmp_path / "tiny"
  mount.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(mount)],
                    capture_output=True).returncode != 0:
    yield None
    return
  try:
    yield str(mount)
  finally:
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _orbax_full(monkeypatch, directory: str):
  """orbax's save failing as tensorstore fails on a full disk: a ValueError."""
  real = ocp.CheckpointManager.save

  def save(self, step, *args, **kwargs):
    if str(self.directory).endswith(directory):
      raise ValueError(f'RESOURCE_EXHAUSTED: Failed writing "{self.directory}/{step}": No '
                       "space left on device [os_error_code='28']")
    return real(self, step, *args, **kwargs)
  monkeypatch.setattr(ocp.CheckpointManager, "save", save)


def test_full_disk_saving_the_best_checkpoint(tmp_path, tiny_disk, monkeypatch, capfd):
  """The issue's example: a 1.2 MB workdir fills up at the best checkpoint of
  step 40; one line, and the step-20 checkpoint survives."""
  if tiny_disk is None:  # no mount allowed: the same failure, injected
    workdir = str(tmp_path / "run")
    _orbax_full(monkeypatch, "best")
    c = _small()
    c.train.eval_every_steps = 40
  else:
    workdir, c = os.path.join(tiny_disk, "run"), _small()
  with pytest.raises(WriteError) as e:
    train.train_and_evaluate(c, workdir)
  assert "No space left on device" in _one_line(e.value)
  assert "the checkpoint of step 20 is intact" in str(e.value)
  assert "Traceback" not in capfd.readouterr().err
  assert runs.load_run(workdir, "latest").step == 20


def _full_at(monkeypatch, fragment: str):
  """ENOSPC for every file opened for writing whose path contains `fragment`."""
  real = builtins.open

  def fake(file, mode="r", *args, **kwargs):
    if any(m in mode for m in "wax") and fragment in str(file):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
    return real(file, mode, *args, **kwargs)
  monkeypatch.setattr(builtins, "open", fake)


TRAIN_WRITES = [  # (where the disk fills up, what the line names, what is intact)
    ("config.json", "config.json", "no checkpoint yet"),
    ("metrics.jsonl", "metrics.jsonl", "no checkpoint yet"),
    ("events.out.tfevents", "events.out.tfevents", "no checkpoint yet"),
    ("samples_step_", "samples_step_00000020.png", "no checkpoint yet"),
    ("orbax:best", "best/20", "no checkpoint yet"),
    ("orbax:checkpoints", "checkpoints/20", "no checkpoint yet (best: step 20)"),
    ("vae_jax_manifest.json", "vae_jax_manifest.json", "no checkpoint yet"),
    ("reconstructions.png", "reconstructions.png", "checkpoint of step 20 is intact"),
    ("eval.json", "eval.json", "checkpoint of step 20 is intact (best: step 20)"),
]


@pytest.mark.parametrize("where,named,intact", TRAIN_WRITES, ids=[w[0] for w in TRAIN_WRITES])
def test_every_write_of_a_run_ends_in_one_line(tmp_path, monkeypatch, where, named, intact):
  if where.startswith("orbax:"):
    _orbax_full(monkeypatch, where.split(":")[1])
  else:
    _full_at(monkeypatch, where)
  with pytest.raises(WriteError) as e:
    train.train_and_evaluate(_small(20), str(tmp_path / "run"))
  line = _one_line(e.value)
  assert line.startswith("could not write '") and named in line.split("'")[1], line
  assert "(No space left on device)" in line and intact in line, line


def test_every_write_of_a_sweep_or_a_script_ends_in_one_line(finished, tmp_path, monkeypatch):
  spec = str(tmp_path / "s.py")
  with open(spec, "w") as f:
    f.write("from vae_jax import sweeps\n\ndef get_config(arg=None):\n  return "
            "sweeps.experiment('digits', 'small')\n\ndef get_sweep(arg=None):\n  return "
            "sweeps.sweep('seed', [0, 1])\n")
  s, work = sweeps.Sweep(spec), str(tmp_path / "w")
  cases = [("status.json", lambda: launch.run_member(s, 0, work)),
           ("results.csv", lambda: results.write_tables(s, work)),
           ("results_test_nll", lambda: results.plot(s, work, x="seed", y="test_nll")),
           ("report.html", lambda: report.write_report(_copy(finished, tmp_path / "r"))),
           ("lock", lambda: locks.acquire(str(tmp_path / "l")))]
  os.makedirs(work)
  for fragment, write in cases:
    with monkeypatch.context() as m:
      _full_at(m, fragment)
      if fragment == "lock":  # written through its descriptor

        def pwrite(*args):
          raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        m.setattr(locks.os, "pwrite", pwrite)
      with pytest.raises(WriteError, match=rf"could not write '[^']*{fragment}[^']*' \(No "):
        write()


# ------------------------------------------------------ 3. two runs, one workdir

def _holder(workdir: str) -> subprocess.Popen:
  """Another process holding `workdir`'s lock until killed."""
  proc = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from vae_jax import locks; "
       f"locks.acquire({workdir!r}); print('held', flush=True); time.sleep(300)"],
      cwd=ROOT, stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "held"
  return proc


def _kill(proc: subprocess.Popen) -> None:
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  proc.stdout.close()


def test_a_live_run_owns_its_workdir_and_a_killed_ones_lock_is_taken_over(tmp_path):
  workdir = str(tmp_path / "run")
  proc = _holder(workdir)
  try:
    held = f"is in use by process {proc.pid} on host"
    with pytest.raises(UserError, match=held) as e:
      train.train_and_evaluate(_small(20), workdir)
    _one_line(e.value)
    with pytest.raises(UserError, match=held):  # --vectorize
      vectorized.train_members([_small(20)], [workdir])
    out = train_cli(workdir, "--config.train.num_steps=20")  # the CLI: one line, exit 2
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        f"error: {e.value}"], out.stderr
    assert sorted(os.listdir(workdir)) == ["lock"]  # nothing trained into it
  finally:
    _kill(proc)  # as a power cut would: no clean-up
  train.train_and_evaluate(_small(20), workdir)  # the stale lock is taken over
  assert runs.load_run(workdir, "latest").step == 20


def test_the_sweep_runner_respects_live_locks(tmp_path):
  spec = str(tmp_path / "s.py")
  with open(spec, "w") as f:
    f.write("from vae_jax import sweeps\n\ndef get_config(arg=None):\n  return "
            "sweeps.experiment('digits', 'small')\n\ndef get_sweep(arg=None):\n  return "
            "sweeps.sweep('seed', [0, 1])\n")
  s, work = sweeps.Sweep(spec), str(tmp_path / "w")
  proc = _holder(work)  # another runner on the same sweep
  try:
    with pytest.raises(UserError, match=f"process {proc.pid}"):
      launch.run_local(s, work, progress=False)
  finally:
    _kill(proc)
  member = launch.member_dir(work, s, 0)
  proc = _holder(member)  # a member trained by hand, still running
  try:
    for start in (lambda: launch.run_member(s, 0, work),
                  lambda: launch.run_group(s, [0, 1], work)):
      with pytest.raises(UserError, match=f"process {proc.pid}"):
        start()
    assert not os.path.exists(os.path.join(member, launch.STATUS_FILE))  # its record untouched
  finally:
    _kill(proc)


def test_locks_are_reentrant_in_one_process(tmp_path):
  with locks.hold(str(tmp_path)), locks.hold(str(tmp_path)):
    pass
  with locks.hold(str(tmp_path), enabled=False):  # a non-lead process of a multi-process run
    pass


# ------------------------------------------------- 4. user arrays that disagree

def _npz_config(tmp_path, arrays, **overrides):
  path = str(tmp_path / "x.npz")
  np.savez(path, **arrays)
  c = config_lib.default().data
  c.name, c.path, c.validation_size, c.test_size = "npz", path, 2, 2
  for k, v in overrides.items():
    c[k] = v
  return c


U8 = lambda n, shape=(3, 3): np.zeros((n, *shape), np.uint8)
NPZ_DISAGREE = [
    ("label shorter than image", {"image": U8(9), "label": np.zeros(5, np.int64)},
     "'label' has shape (5,) but 'image' has 9 examples"),
    ("label per pixel", {"image": U8(9), "label": np.zeros((9, 2), np.int64)},
     "'label' has shape (9, 2)"),
    ("float labels", {"image": U8(9), "label": np.zeros(9, np.float32)},
     "labels must be integers"),
    ("test_label shorter", {"image": U8(9), "test_image": U8(4),
                            "test_label": np.zeros(3, np.int64)},
     "'test_label' has shape (3,) but 'test_image' has 4 examples"),
    ("test_label alone", {"image": U8(9), "test_label": np.zeros(3, np.int64)},
     "has 'test_label' but no 'test_image'"),
    ("test_image other shape", {"image": U8(9), "test_image": U8(4, (3, 4))}, "must match"),
    ("test_image float, image integer", {"image": U8(9),
                                         "test_image": np.zeros((4, 3, 3), np.float32)},
     "give both integer or both float pixels"),
    ("test_image NaN", {"image": np.zeros((9, 3, 3), np.float32),
                        "test_image": np.full((4, 3, 3), np.nan, np.float32)},
     "'test_image' holds NaN or Inf"),
    ("pixels beyond the levels", {"image": np.full((9, 3, 3), 200, np.uint8)},
     "pixel values 200..200, outside 0..16"),
    ("test pixels beyond the levels", {"image": U8(9),
                                       "test_image": np.full((4, 3, 3), 300, np.int32)},
     "'test_image' has pixel values 300..300"),
    ("misspelt array", {"image": U8(9), "labels": np.zeros(9, np.int64)},
     "arrays ['labels'] that nothing reads"),
    ("levels for float pixels", {"image": np.zeros((9, 3, 3), np.float32)},
     "data.num_levels=17 is set"),
]


@pytest.mark.parametrize("name,arrays,message", NPZ_DISAGREE, ids=[n[0] for n in NPZ_DISAGREE])
def test_user_arrays_are_checked_against_each_other(tmp_path, name, arrays, message):
  levels = {"num_levels": 17} if name in ("pixels beyond the levels", "levels for float pixels",
                                          "test pixels beyond the levels") else {}
  likelihood = "gaussian" if "NaN" in name else "binomial"
  with pytest.raises(UserError, match=".*".join(map(lambda s: s.replace("(", r"\(").replace(
      ")", r"\)").replace("[", r"\[").replace("]", r"\]"), [message]))) as e:
    data.load(_npz_config(tmp_path, arrays, **levels), likelihood)
  _one_line(e.value)


def test_disagreeing_labels_fail_before_training(tmp_path):
  c = _small(20)
  c.data = _npz_config(tmp_path, {"image": np.zeros((50, 4, 4), np.uint8),
                                  "label": np.zeros(49, np.int64)})
  with pytest.raises(UserError, match="'label' has shape"):
    train.train_and_evaluate(c, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


# -------------------------------------------- 5. config arguments nobody reads

def _config_file(tmp_path, body: str, name: str = "cfg.py") -> str:
  path = tmp_path / name
  path.write_text(body)
  return str(path)


def test_an_argument_the_file_does_not_read_is_one_line(tmp_path):
  digits = os.path.join(ROOT, "experiments", "digits.py")
  cases = [
      (f"{digits}:nonexistent", f"{digits} has no argument 'nonexistent' (in ':nonexistent'); "
                                "it takes only small (comma-separated)"),
      (f"{digits}:small,npz", "has no argument 'npz'"),
      (os.path.join(ROOT, "experiments", "iwae_burda.py") + ":k=many",
       "argument 'k' needs an integer value, e.g. k=5"),
      (os.path.join(ROOT, "experiments", "iwae_burda.py") + ":small=1",
       "argument 'small' takes no value"),
      (os.path.join(ROOT, "experiments", "ablations", "beta.py") + ":fulll",
       "it takes only small, full"),
      (_config_file(tmp_path, "x = 1\n"), "defines no get_config(arg)"),
      (_config_file(tmp_path, "from vae_jax import config\ndef get_config():\n  return "
                    "config.default()\n", "a.py") + ":small", "takes no argument (':small' given)"),
      (_config_file(tmp_path, "from vae_jax import config\ndef get_config(arg=None):\n  "
                    "return config.default()\n", "b.py") + ":small",
       "declare it in its get_config with vae_jax.experiment_args.parse"),
  ]
  for spec, message in cases:
    with pytest.raises(UserError) as e:
      cli.load_config_file(spec)
    assert message in _one_line(e.value), (spec, str(e.value))
  # Every shipped form still loads.
  for spec in ("digits.py", "digits.py:small", "mnist_dynamic.py:npz,small",
               "iwae_burda.py:vae,k=5,npz,small", "ablations/beta.py:full"):
    cli.load_config_file(os.path.join(ROOT, "experiments", spec))


def test_cli_names_the_file_not_an_internal_module(tmp_path):
  out = train_cli(tmp_path, "--config=experiments/digits.py:nonexistent")
  assert out.returncode == 2 and out.stderr.strip().splitlines() == [
      "error: experiments/digits.py has no argument 'nonexistent' (in ':nonexistent'); it "
      "takes only small (comma-separated)"], out.stderr
  spec = _config_file(tmp_path, "x = 1\n")
  out = train_cli(tmp_path, f"--config={spec}")
  assert out.returncode == 2 and out.stderr.strip().splitlines() == [
      f"error: {spec} defines no get_config(arg); a config file defines one that returns a "
      "ConfigDict, as experiments/digits.py does"], out.stderr


# -------------------------------------------- 6. NaN and out-of-range values

FLOAT_FIELDS = [k for k, v in config_lib.flatten(config_lib.default()).items()
                if isinstance(v, float)] + ["train.ema_decay", "optimizer.grad_clip_norm"]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_every_float_field_rejects_nan_and_inf(value):
  for path in FLOAT_FIELDS:
    c = config_lib.default()
    section, _, leaf = path.rpartition(".")
    node = c[section] if section else c
    node[leaf] = value
    with pytest.raises(UserError, match=rf"config\.{path}=.* is not a finite number"):
      config_lib.validate(c)
  c = config_lib.default()
  c.optimizer.schedule, c.optimizer.boundaries = "piecewise", (10,)
  c.optimizer.boundary_scales = (value,)
  with pytest.raises(UserError, match="optimizer.boundary_scales"):
    config_lib.validate(c)


@pytest.mark.parametrize("path,value,message", [
    ("data.split_seed", -1, "config.data.split_seed=-1 is out of range; it must be >= 0"),
    ("data.eval_noise_seed", -1, "must be >= 0"),
    ("optimizer.boundaries", (0,), "optimizer.boundaries=(0,) must be a tuple of steps >= 1"),
    ("optimizer.boundary_scales", (0.0,), "must be a tuple of factors > 0"),
    ("model.encoder_hidden", (True,), "must be a tuple of positive layer sizes"),
])
def test_out_of_range_fields(path, value, message):
  c = config_lib.default()
  if path.startswith("optimizer.boundar"):
    c.optimizer.schedule, c.optimizer.boundaries, c.optimizer.boundary_scales = (
        "piecewise", (10,), (0.1,))
  section, _, leaf = path.rpartition(".")
  with c[section].ignore_type():
    c[section][leaf] = value
  with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
    config_lib.validate(c)


@pytest.mark.parametrize("script,flag,message", [
    ("evaluate.py", "--num_samples=0", "flag --num_samples=0: 0 is not a positive integer"),
    ("evaluate.py", "--chunk=0", "flag --chunk=0"),
    ("evaluate.py", "--num_examples=0", "flag --num_examples=0"),
    ("evaluate.py", "--gap_examples=-1", "flag --gap_examples=-1"),
    ("evaluate.py", "--seed=-1", "flag --seed=-1"),
    ("sweep.py", "--parallel=0", "flag --parallel=0"),
    ("benchmark.py", "--batch_sizes=32,0", "--batch_sizes must be positive integers"),
    ("benchmark.py", "--trials=0", "flag --trials=0"),
    ("train.py", "--config.optimizer.learning_rate=nan", "is not a finite number"),
])
def test_flags_reject_out_of_range_before_anything_runs(tmp_path, script, flag, message):
  args = {"evaluate.py": [f"--workdir={tmp_path}"],
          "sweep.py": ["--config=experiments/ablations/beta.py", f"--workdir={tmp_path}"],
          "benchmark.py": [f"--out={tmp_path}/b.json"],
          "train.py": ["--config=experiments/digits.py:small", f"--workdir={tmp_path}/w"]}
  out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), *args[script],
                        flag], capture_output=True, text=True, timeout=300, cwd=ROOT)
  lines = out.stderr.strip().splitlines()
  assert out.returncode == 2 and len(lines) == 1 and message in lines[0], out.stderr
  assert not os.path.exists(tmp_path / "w" / "checkpoints")

