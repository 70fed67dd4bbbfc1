"""Never losing a run: corrupt checkpoints, NaNs, signals, kill -9, bad input."""

import functools
import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import runs, train
from vae_jax.errors import UserError
from vae_jax.objectives import Objective

from conftest import ROOT, experiment, patch_nan_gradient_at, signal_at_dispatch


def _equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _small(num_steps, figures=False):  # figures: tested in test_train
  c = experiment("digits")
  c.train.num_steps = num_steps
  c.eval.figures = figures
  return c


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reference"))
  train.train_and_evaluate(_small(60), workdir)
  return runs.load_run(workdir, "latest")


def _flip_a_byte(step_dir):
  files = [f for f in glob.glob(os.path.join(step_dir, "state", "**", "*"), recursive=True)
           if os.path.isfile(f) and os.path.getsize(f) > 64 and "manifest" not in f]
  target = max(files, key=os.path.getsize)
  with open(target, "r+b") as f:
    f.seek(os.path.getsize(target) // 2)
    byte = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([byte[0] ^ 0xFF]))


def test_corrupt_newest_checkpoint_is_skipped_and_kept(tmp_path, reference):
  workdir = str(tmp_path)
  train.train_and_evaluate(_small(40), workdir)  # checkpoints at 20 and 40
  _flip_a_byte(os.path.join(workdir, "checkpoints", "40"))
  with pytest.warns(UserWarning, match=r"skipping checkpoint .*/40: 1 file\(s\) differ"):
    train.train_and_evaluate(_small(60), workdir)
  resumed = runs.load_run(workdir, "latest")
  assert resumed.step == 60 and _equal(resumed.params, reference.params)
  kept = os.listdir(os.path.join(workdir, "checkpoints_corrupt"))
  assert len(kept) == 1 and kept[0].startswith("40.")  # set aside, not deleted


def test_empty_step_folder_is_not_a_checkpoint(tmp_path):
  workdir = str(tmp_path)
  train.train_and_evaluate(_small(20), workdir)
  os.makedirs(os.path.join(workdir, "checkpoints", "999"))
  with pytest.warns(UserWarning, match="999: no valid checksum manifest"):
    train.train_and_evaluate(_small(40), workdir)
  assert runs.load_run(workdir, "latest").step == 40


def test_no_good_checkpoint_is_one_error_and_nothing_moves(tmp_path):
  workdir = str(tmp_path)
  train.train_and_evaluate(_small(20), workdir)
  _flip_a_byte(os.path.join(workdir, "checkpoints", "20"))
  with pytest.warns(UserWarning), pytest.raises(UserError, match="no usable checkpoint"):
    train.train_and_evaluate(_small(40), workdir)
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["20"]


def test_checkpoint_of_another_model_is_refused(tmp_path):
  workdir = str(tmp_path)
  train.train_and_evaluate(_small(20), workdir)
  os.remove(os.path.join(workdir, "config.json"))  # hide the config check: restore must catch it
  c = _small(40)
  c.model.latent_dim = 3
  with pytest.raises(UserError, match="does not fit this model"):
    train.train_and_evaluate(c, workdir)


def _nan_at_step(monkeypatch, bad_step):
  real = Objective.loss

  def loss(self, model, params, batch, rng, step):
    value, metrics = real(self, model, params, batch, rng, step)
    value = jnp.where(step == bad_step, jnp.nan, value)
    return value, dict(metrics, loss=value)

  monkeypatch.setattr(Objective, "loss", loss)


def test_nan_policy_skip_counts_and_goes_on(tmp_path, monkeypatch):
  _nan_at_step(monkeypatch, 12)
  c = _small(40)
  c.train.nan_policy = "skip"
  result = train.train_and_evaluate(c, str(tmp_path))
  rows = runs.load_run(str(tmp_path)).metrics
  assert [r["skipped_steps"] for r in rows] == [0, 1, 0, 0]
  assert all(np.isfinite(r["loss"]) for r in rows)
  assert np.isfinite(result["test"]["nll"]["value"])


def test_nan_gradient_mid_dispatch_is_replayed_and_skipped(tmp_path, monkeypatch):
  """A NaN gradient under a finite loss at step 13 (inside a dispatch): the loop
  runs unguarded, sees the non-finite state at the next log, replays those
  steps guarded from the last log's state, and so skips step 13 alone: the run
  ends with the parameters of a run whose step 13 leaves the state alone."""
  patch_nan_gradient_at(monkeypatch, 12)
  c = _small(40)
  c.train.nan_policy = "skip"
  train.train_and_evaluate(c, str(tmp_path / "nan"))
  rows = runs.load_run(str(tmp_path / "nan")).metrics
  assert [r["skipped_steps"] for r in rows] == [0, 1, 0, 0]
  assert all(np.isfinite(r["loss"]) for r in rows)
  # The reference: the guarded update throughout (no replay needed).
  monkeypatch.setattr(train, "make_update", functools.partial(_guarded, train.make_update))
  train.train_and_evaluate(c, str(tmp_path / "guarded"))
  a = runs.load_run(str(tmp_path / "nan"), "latest").params
  b = runs.load_run(str(tmp_path / "guarded"), "latest").params
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
  assert [r["skipped_steps"] for r in runs.load_run(str(tmp_path / "guarded")).metrics] == [
      0, 1, 0, 0]


def _guarded(make_update, *args, guarded=True, **kwargs):
  del guarded
  return make_update(*args, guarded=True, **kwargs)


def test_nan_policy_stop_names_the_step_and_skip_resumes_it(tmp_path, monkeypatch):
  """The error names the step and the intact checkpoint; rerun with
  nan_policy=skip, as it says, the same workdir resumes there and skips it."""
  _nan_at_step(monkeypatch, 24)
  with pytest.raises(UserError, match=r"became non-finite \(loss nan\) at step 25; the "
                                      r"checkpoint of step 20 is intact; rerun with "
                                      r"--config.train.nan_policy=skip"):
    train.train_and_evaluate(_small(40), str(tmp_path / "a"))
  assert os.listdir(tmp_path / "a" / "checkpoints") == ["20"]
  c = _small(40)
  c.train.nan_policy = "skip"
  train.train_and_evaluate(c, str(tmp_path / "a"))
  assert [r["skipped_steps"] for r in runs.load_run(str(tmp_path / "a")).metrics] == [0, 0, 1, 0]
  _nan_at_step(monkeypatch, 1)
  with pytest.raises(UserError, match=r"at step 2; no checkpoint was written yet"):
    train.train_and_evaluate(_small(40), str(tmp_path / "b"))


def test_rows_cover_every_step_since_the_last_row_also_across_a_stop(tmp_path, monkeypatch):
  """Checkpoints every 15 steps, rows every 10, a NaN loss at step 12 skipped:
  the row at step 20 is the mean of steps 11-20 less the skipped one (the
  per-step rows' mean) and counts the skip, though step 15's boundary drained
  them. Stopped at step 15 (as by SIGTERM) and resumed, under nan_policy=stop
  now (the skip came before the checkpoint), the rows and the parameters are
  bitwise those of the uninterrupted run."""
  _nan_at_step(monkeypatch, 11)

  def config(log_every=10, nan_policy="skip"):
    c = _small(40)
    c.train.steps_per_dispatch, c.train.checkpoint_every_steps = 5, 15
    c.train.log_every_steps, c.train.nan_policy = log_every, nan_policy
    return c

  train.train_and_evaluate(config(), str(tmp_path / "whole"))
  train.train_and_evaluate(config(log_every=1), str(tmp_path / "per_step"))
  whole = runs.load_run(str(tmp_path / "whole"), "latest")
  per_step = {r["step"]: r["loss"] for r in runs.load_run(str(tmp_path / "per_step")).metrics}
  row = {r["step"]: r for r in whole.metrics}
  assert per_step[12] == "nan"  # the skipped step's row has no loss
  np.testing.assert_allclose(row[20]["loss"], np.mean([per_step[s] for s in range(11, 21)
                                                       if s != 12]), rtol=1e-5)
  assert [r["skipped_steps"] for r in whole.metrics] == [0, 1, 0, 0]

  with monkeypatch.context() as m:  # the third dispatch of 5 steps ends at step 15
    m.setattr(train, "StopOnSignal", signal_at_dispatch(3, signal.SIGTERM))
    with pytest.raises(train.Interrupted, match="at step 15"):
      train.train_and_evaluate(config(), str(tmp_path / "stopped"))
  train.train_and_evaluate(config(nan_policy="stop"), str(tmp_path / "stopped"))
  resumed = runs.load_run(str(tmp_path / "stopped"), "latest")
  assert [(r["step"], r["loss"], r["skipped_steps"]) for r in resumed.metrics] == [
      (r["step"], r["loss"], r["skipped_steps"]) for r in whole.metrics]
  assert _equal(resumed.params, whole.params)


def test_a_kill_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
  """keep_checkpoints=1, the process dies after step 40's files but before its
  manifest: step 20 is still there and intact, so the rerun resumes from it."""
  from vae_jax import checkpoints
  real = checkpoints.writers.atomic_write_text

  def dies_at_40(path, text):
    if path.endswith(os.path.join("checkpoints", "40", checkpoints.MANIFEST)):
      raise KeyboardInterrupt  # as a kill would: nothing after this runs
    real(path, text)

  c = _small(40)
  c.train.keep_checkpoints = 1
  with monkeypatch.context() as m:
    m.setattr(checkpoints.writers, "atomic_write_text", dies_at_40)
    with pytest.raises(KeyboardInterrupt):
      train.train_and_evaluate(c, str(tmp_path))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["20", "40"]
  assert checkpoints.newest_intact(str(tmp_path / "checkpoints")) == 20
  with pytest.warns(UserWarning, match="skipping checkpoint .*/40"):
    result = train.train_and_evaluate(c, str(tmp_path))
  assert result["step"] in (20, 40)
  assert os.listdir(tmp_path / "checkpoints") == ["40"]


def test_a_lost_best_checkpoint_falls_back_to_the_newest_intact_one(tmp_path):
  """eval.json gone and best/ damaged: the final evaluation warns and uses the
  newest intact training checkpoint instead of failing."""
  workdir = str(tmp_path)
  train.train_and_evaluate(_small(40), workdir)
  os.remove(os.path.join(workdir, "eval.json"))
  best = os.listdir(os.path.join(workdir, "best"))[0]
  _flip_a_byte(os.path.join(workdir, "best", best))
  with pytest.warns(UserWarning, match="no usable best checkpoint .* evaluating the newest "
                                       "intact one, .*/checkpoints/40"):
    result = train.train_and_evaluate(_small(40), workdir)
  assert result["step"] == 40 and np.isfinite(result["test"]["nll"]["value"])
  assert result["checkpoint"] == "latest (best/ unusable)"


def test_rerunning_a_finished_run_leaves_its_record_alone(tmp_path):
  workdir = str(tmp_path)
  train.train_and_evaluate(_small(20), workdir)
  before = open(os.path.join(workdir, "config.json")).read()
  c = _small(10)
  c.eval.num_importance_samples = 7
  train.train_and_evaluate(c, workdir)  # "already finished": nothing to do
  assert open(os.path.join(workdir, "config.json")).read() == before


# --------------------------------------------- signals and kill -9 (CLI runs)

_LONG = ["--config=experiments/digits.py:small", "--config.train.num_steps=1500",
         "--config.train.batch_size=256", "--config.model.encoder_hidden=(1024,)",
         "--config.model.decoder_hidden=(1024,)", "--config.train.steps_per_dispatch=5",
         "--config.train.log_every_steps=5", "--config.train.checkpoint_every_steps=50",
         "--config.train.eval_every_steps=500", "--config.train.progress_bar=False"]


def _start(workdir):
  return subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "train.py"), *_LONG,
                           f"--workdir={workdir}"], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _wait_for_step(workdir, step, proc, timeout=120):
  path = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    rows = [json.loads(line) for line in open(path)] if os.path.exists(path) else []
    if rows and rows[-1]["step"] >= step:
      return rows[-1]["step"]
    time.sleep(0.01)
  raise AssertionError(f"the run never reached step {step}")


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(tmp_path):
  proc = _start(tmp_path)
  _wait_for_step(str(tmp_path), 100, proc)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 128 + signal.SIGTERM, err
  assert "Traceback" not in err
  stopped_at = int(err.split("at step ")[1].split(":")[0])
  assert str(stopped_at) in os.listdir(tmp_path / "checkpoints")
  assert 100 <= stopped_at < 1500 and stopped_at % 5 == 0


def test_kill_9_at_random_steps_then_resume_is_bitwise_identical(tmp_path):
  """SIGKILL at 3 random points (at most the steps since the last checkpoint
  are lost), resumed each time by the same command, ends with parameters
  bitwise identical to an uninterrupted run's."""
  full = tmp_path / "full"
  proc = _start(full)
  assert proc.wait(timeout=600) == 0, proc.stderr.read()
  victim = tmp_path / "killed"
  rng = random.Random(0)
  kills = sorted(rng.sample(range(60, 1400), 3))
  for target in kills:
    proc = _start(victim)
    _wait_for_step(str(victim), target, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  proc = _start(victim)
  assert proc.wait(timeout=600) == 0, proc.stderr.read()
  a, b = runs.load_run(str(full), "latest"), runs.load_run(str(victim), "latest")
  assert a.step == b.step == 1500
  assert _equal(a.params, b.params)
  steps = [r["step"] for r in b.metrics]
  assert steps == sorted(set(steps))  # no row twice after three truncations


# ------------------------------------------------------ the bad-input table

def _npz(tmp_path, **arrays):
  path = tmp_path / "x.npz"
  np.savez(path, **arrays)
  return str(path)


BAD_INPUTS = [
    ("latent size out of range", {"model.latent_dim": 0}, "config.model.latent_dim=0"),
    ("batch size of the wrong type", {"train.batch_size": "big"}, "must be a number"),
    ("unknown dataset", {"data.name": "imagenet21k"}, "choose one of digits"),
    ("unknown likelihood", {"model.likelihood": "poisson"}, "model.likelihood='poisson'"),
    ("invalid objective combination", {"objective.name": "iwae"}, "set objective.kl=mc"),
    ("missing backend", {"backend": "tpu"}, "JAX finds only cpu"),
    ("batch larger than the data", {"train.batch_size": 5000}, "exceeds the 1297"),
    ("validation eats the data", {"data.validation_size": 1497}, "leaves no training data"),
    ("test split eats the data", {"data.test_size": 1797},
     "data.test_size=1797 leaves no training data"),
    ("npz of the wrong shape", {"data.name": "npz", "npz": {"image": np.zeros((9, 4))}},
     "expected (N, H, W)"),
    ("npz of the wrong dtype", {"data.name": "npz",
                                "npz": {"image": np.zeros((9, 2, 2), "complex64")}},
     "expected integers or floats"),
    ("NaN pixels", {"data.name": "npz", "model.likelihood": "gaussian",
                    "npz": {"image": np.full((9, 2, 2), np.nan, np.float32)}}, "NaN or Inf"),
    ("empty split", {"data.name": "npz", "npz": {"image": np.zeros((0, 2, 2), np.uint8)}},
     "is empty"),
    ("no pickles", {"data.name": "npz", "npz": {"image": np.array([None, 1], object)}},
     "without pickles"),
    ("Gaussian on discrete pixels", {"model.likelihood": "gaussian"}, "data.dequantize=True"),
]


@pytest.mark.parametrize("name,overrides,message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_table(tmp_path, name, overrides, message):
  c = experiment("digits")
  overrides = dict(overrides)
  if "npz" in overrides:
    c.data.path = _npz(tmp_path, **overrides.pop("npz"))
    c.data.validation_size, c.data.test_size = 1, 1
  for path, value in overrides.items():
    section, _, leaf = path.rpartition(".")
    node = c[section] if section else c
    with node.ignore_type():
      node[leaf] = value
  with pytest.raises(UserError, match=".*".join(map(lambda s: s.replace("(", r"\(").replace(
      ")", r"\)").replace(".", r"\."), [message]))) as e:
    train.train_and_evaluate(c, str(tmp_path / "run"))
  assert "\n" not in str(e.value)
  assert not os.path.exists(tmp_path / "run" / "checkpoints")  # failed before training


def test_tensorboard_keeps_the_resume_steps_row(tmp_path):
  """A run extended from step 20 to 40: TensorBoard's restart marker drops the
  old events after step 20, not the row at 20 itself (metrics.jsonl keeps it)."""
  from tensorboard.backend.event_processing import event_accumulator
  workdir = str(tmp_path)
  train.train_and_evaluate(_small(20), workdir)
  train.train_and_evaluate(_small(40), workdir)
  acc = event_accumulator.EventAccumulator(os.path.join(workdir, "tensorboard"))
  acc.Reload()
  assert [e.step for e in acc.Scalars("loss")] == [10, 20, 30, 40]
  assert [r["step"] for r in runs.load_run(workdir).metrics] == [10, 20, 30, 40]


def test_a_folder_where_a_file_belongs_names_the_clash_not_the_disk(tmp_path):
  os.makedirs(tmp_path / "metrics.jsonl")
  with pytest.raises(UserError, match=r"metrics\.jsonl' \(Is a directory\); .*remove or rename "
                                      r"what is in the way there or choose another --workdir"):
    train.train_and_evaluate(_small(20), str(tmp_path))
