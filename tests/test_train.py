"""Training end to end: small runs of every shipped config, the workdir's
files, resume, and failures that must leave earlier results intact."""

import json
import os
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from vae_jax import runs, train
from vae_jax.errors import UserError

from conftest import ROOT, experiment, nan_gradient_at, train_cli


def _leaves_equal(a, b) -> bool:
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
  """One small digits run shared by the read-only checks below."""
  workdir = str(tmp_path_factory.mktemp("digits"))
  result = train.train_and_evaluate(experiment("digits"), workdir)
  return workdir, result


def test_digits_run_writes_every_artefact(digits_run):
  workdir, result = digits_run
  assert sorted(os.listdir(workdir)) == ["best", "checkpoints", "config.json", "eval.json",
                                         "images", "lock", "metrics.jsonl", "tensorboard"]
  record = json.load(open(os.path.join(workdir, "config.json")))
  prov = record["provenance"]
  for key in ("git_commit", "git_dirty", "packages", "xla_flags", "device_kind", "jax"):
    assert key in prov
  assert record["config"]["model"]["latent_dim"] == 8
  test = json.load(open(os.path.join(workdir, "eval.json")))["test"]
  assert test == result["test"]
  assert test["num_examples"] == 300 and test["num_importance_samples"] == 20
  # log p(x) ≥ ELBO in expectation: the IS estimate sits above the ELBO.
  assert -test["nll"]["value"] > test["elbo"]["value"]
  np.testing.assert_allclose(test["nll"]["bits_per_dim"],
                             test["nll"]["value"] / (64 * np.log(2)), rtol=1e-9)
  metrics = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  steps = [r["step"] for r in metrics]
  assert steps == sorted(set(steps)) == [10, 20, 30, 40]
  for r in metrics:
    np.testing.assert_allclose(r["elbo"], r["recon"] - r["kl"], rtol=1e-5)
    assert r["examples_per_sec"] > 0
  assert "val_elbo" in metrics[1] and "val_elbo" not in metrics[0]
  # Seconds from the process's start to the first dispatch's end, once per start.
  assert 0 < metrics[0]["time_to_first_step"] < time.time() - train.process_start_time() + 1
  assert not any("time_to_first_step" in r for r in metrics[1:])


def test_tensorboard_events_read_back(digits_run):
  from tensorboard.backend.event_processing import event_accumulator
  workdir, _ = digits_run
  acc = event_accumulator.EventAccumulator(os.path.join(workdir, "tensorboard"))
  acc.Reload()
  assert [e.step for e in acc.Scalars("elbo")] == [10, 20, 30, 40]
  assert "samples" in acc.Tags()["images"] and "reconstructions" in acc.Tags()["images"]
  assert "traversals" in acc.Tags()["images"]
  test = json.load(open(os.path.join(workdir, "eval.json")))["test"]
  assert acc.Scalars("test_active_units")[0].value == test["active_units"]
  np.testing.assert_allclose(acc.Scalars("test_nll")[0].value, test["nll"]["value"], rtol=1e-6)
  jsonl = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  np.testing.assert_allclose([e.value for e in acc.Scalars("loss")],
                             [r["loss"] for r in jsonl], rtol=1e-6)


def test_images_are_pngs_of_the_right_size(digits_run):
  from PIL import Image
  workdir, _ = digits_run
  recon = Image.open(os.path.join(workdir, "images", "reconstructions.png"))
  samples = Image.open(os.path.join(workdir, "images", "samples.png"))
  # 32 test digits, 8 per row, each row above its reconstructions: 8 rows of 8
  # images of 8×8 with 1-pixel borders, enlarged 4 times.
  assert recon.size == (4 * (8 * 9 + 1), 4 * (8 * 9 + 1))
  assert samples.size == (4 * (8 * 9 + 1),) * 2


def test_load_run_and_finished_rerun(digits_run, capsys):
  workdir, result = digits_run
  run = runs.load_run(workdir)
  assert run.step == result["step"] and run.evaluation == json.load(
      open(os.path.join(workdir, "eval.json")))
  assert run.config.model.latent_dim == 8 and len(run.metrics) == 4
  x = np.zeros((8, 8, 1), np.float32)
  assert run.model.encode(run.params, x).mean.shape == (8,)
  again = train.train_and_evaluate(experiment("digits"), workdir)
  assert "already finished at step 40" in capsys.readouterr().out
  assert again == json.load(open(os.path.join(workdir, "eval.json")))


def test_changed_config_is_refused_naming_fields(digits_run):
  workdir, _ = digits_run
  c = experiment("digits")
  c.model.latent_dim, c.optimizer.learning_rate = 3, 0.01
  with pytest.raises(UserError, match=r"different config: model\.latent_dim \(8 -> 3\), "
                                      r"optimizer\.learning_rate"):
    train.train_and_evaluate(c, workdir)


def test_flax_example_config_under_mocked_tfds(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=16, max_value=2):
    result = train.train_and_evaluate(experiment("flax_vae_binarized_mnist"), str(tmp_path))
  assert result["test"]["num_examples"] == 16
  assert np.isfinite(result["test"]["nll"]["value"])


def test_mnist_dynamic_config_from_tfds_mock_and_from_npz(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=24):
    result = train.train_and_evaluate(experiment("mnist_dynamic"), str(tmp_path / "tfds"))
  assert result["test"]["num_examples"] == 24
  path = tmp_path / "train.npz"
  rng = np.random.default_rng(0)
  np.savez(path, image=rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
           label=rng.integers(0, 10, 40))
  c = experiment("mnist_dynamic", "npz,small")
  c.data.path = str(path)
  result = train.train_and_evaluate(c, str(tmp_path / "npz"))
  assert result["test"]["num_examples"] == 8  # the last 8 of 40 held out as test


def test_nan_stops_with_step_and_keeps_checkpoint(tmp_path):
  c = experiment("digits")
  c.optimizer.name, c.optimizer.learning_rate = "sgd", 1e30
  c.train.checkpoint_every_steps = 1
  c.train.steps_per_dispatch = 1
  c.train.log_every_steps = 1
  with pytest.raises(UserError, match=r"became non-finite \(loss (nan|inf)\) at step \d+; "
                                      r"the checkpoint of step \d+ is intact"):
    train.train_and_evaluate(c, str(tmp_path))
  steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints"))
  assert steps, "the last good checkpoint must remain"


def test_full_disk_mid_run_keeps_checkpoints(tmp_path, monkeypatch):
  """A full disk at a write after training (simulated: ENOSPC injected into the
  PNG writer) gives one line naming the file and the intact checkpoint."""
  import errno

  from vae_jax import plots

  real_save = plots.save_png

  def full_disk(path, canvas, scale=4):  # the disk fills up at the final figures
    if path.endswith("reconstructions.png"):
      raise OSError(errno.ENOSPC, "No space left on device", path)
    real_save(path, canvas, scale)

  monkeypatch.setattr(plots, "save_png", full_disk)
  c = experiment("digits")
  c.train.num_steps = 20
  with pytest.raises(UserError, match=r"could not write '.*reconstructions\.png' \(No space "
                                      r"left on device\); the checkpoint of step 20 is intact"):
    train.train_and_evaluate(c, str(tmp_path))
  assert os.listdir(tmp_path / "checkpoints") == ["20"]
  assert not (tmp_path / "eval.json").exists()  # no half-finished result


def _cli(workdir, *overrides):
  return train_cli(workdir, "--config.train.progress_bar=False", *overrides,
                   env=dict(os.environ, PYTHONHASHSEED="0"))


def test_resume_is_bitwise_identical_to_uninterrupted_run(tmp_path):
  """Both runs spawned with the same environment; the interrupted one stops at
  step 25 (mid-epoch, between checkpoints of 20 and at a scan boundary of its
  own), and is resumed to 60 by the same command with more steps."""
  full, split = tmp_path / "full", tmp_path / "split"
  assert _cli(full, "--config.train.num_steps=60").returncode == 0
  first = _cli(split, "--config.train.num_steps=25")
  assert first.returncode == 0, first.stderr
  second = _cli(split, "--config.train.num_steps=60")
  assert second.returncode == 0, second.stderr
  a, b = runs.load_run(str(full), "latest"), runs.load_run(str(split), "latest")
  assert a.step == b.step == 60
  assert _leaves_equal(a.params, b.params)
  # No step twice: the interrupted run's own last row (25) stays, nothing repeats.
  assert [r["step"] for r in b.metrics] == [10, 20, 25, 30, 40, 50, 60]
  # Rows averaging the same steps in both runs are identical (30 averages 21..30
  # in one and 26..30 in the other).
  by_step = {r["step"]: r for r in b.metrics}
  for row in a.metrics:
    if row["step"] != 30:
      assert row["loss"] == by_step[row["step"]]["loss"]
  assert json.load(open(full / "eval.json"))["test"] == json.load(
      open(split / "eval.json"))["test"]


def test_evaluate_script_on_a_run(digits_run, tmp_path):
  workdir, _ = digits_run
  out = subprocess.run(
      [sys.executable, os.path.join(ROOT, "scripts", "evaluate.py"), f"--workdir={workdir}",
       "--num_samples=30", "--chunk=7"], capture_output=True, text=True, timeout=300,
      cwd=ROOT)
  assert out.returncode == 0, out.stderr
  assert "importance-sampled with k=30" in out.stdout and "Monte Carlo" in out.stdout
  written = json.load(open(os.path.join(workdir, "eval_test_best_k30.json")))
  assert written["test"]["num_importance_samples"] == 30
  assert json.load(open(os.path.join(workdir, "eval.json")))["test"][
      "num_importance_samples"] == 20  # training's evaluation is left as it was


@pytest.mark.parametrize("overrides", [
    {"model.likelihood": "bernoulli", "data.binarize": "dynamic"},
    {"model.likelihood": "gaussian", "model.gaussian_variance": "per_pixel",
     "data.dequantize": True},
    {"model.likelihood": "discretized_logistic", "objective.name": "iwae",
     "objective.kl": "mc", "objective.num_samples": 3},
])
def test_every_likelihood_trains_and_reports_finite_nats(tmp_path, overrides):
  c = experiment("digits")
  for path, value in overrides.items():
    section, leaf = path.split(".")
    c[section][leaf] = value
  c.train.num_steps = 20
  result = train.train_and_evaluate(c, str(tmp_path))["test"]
  assert np.isfinite(result["nll"]["value"]) and np.isfinite(result["elbo"]["value"])
  # Discrete nats: a valid probability of the data is at most 1, so NLL ≥ 0.
  assert result["nll"]["value"] > 0


def test_blocked_run_folder_fails_before_training(tmp_path):
  c = experiment("digits")
  c.train.num_steps = 20
  train.train_and_evaluate(c, str(tmp_path))
  before = sorted(os.listdir(tmp_path / "checkpoints"))
  metrics = (tmp_path / "metrics.jsonl").read_text()
  shutil.rmtree(tmp_path / "tensorboard")
  (tmp_path / "tensorboard").write_text("a file where a folder must be")
  c.train.num_steps = 40
  with pytest.raises(UserError, match="run folder .*tensorboard' is not writable"):
    train.train_and_evaluate(c, str(tmp_path))
  assert sorted(os.listdir(tmp_path / "checkpoints")) == before
  assert (tmp_path / "metrics.jsonl").read_text() == metrics


def test_resume_in_another_environment_warns(tmp_path, monkeypatch):
  c = experiment("digits")
  c.train.num_steps = 20
  train.train_and_evaluate(c, str(tmp_path))
  from vae_jax import provenance
  real = provenance.environment
  monkeypatch.setattr(provenance, "environment", lambda: dict(real(), cpu_count=999))
  c.train.num_steps = 40
  with pytest.warns(UserWarning, match="different environment"):
    train.train_and_evaluate(c, str(tmp_path))


def test_optimizer_schedules_and_clipping():
  from vae_jax import config as config_lib
  c = config_lib.default().optimizer
  c.schedule, c.warmup_steps, c.decay_steps, c.grad_clip_norm = "cosine", 10, 100, 1.0
  opt = train.build_optimizer(c)
  params = {"w": jax.numpy.zeros(3)}
  state = opt.init(params)
  grads = {"w": jax.numpy.array([30.0, 40.0, 0.0])}  # norm 50, clipped to 1
  updates, _ = opt.update(grads, state, params)
  # Step 0 of the warm-up: learning rate 0, so no move at all.
  np.testing.assert_allclose(updates["w"], 0.0)
  c2 = config_lib.default().optimizer
  c2.name, c2.learning_rate = "sgd", 0.1
  sgd = train.build_optimizer(c2)
  updates, _ = sgd.update(grads, sgd.init(params), params)
  np.testing.assert_allclose(updates["w"], [-3.0, -4.0, 0.0])


def test_all_finite_catches_inf_and_nan_in_any_leaf():
  jnp = jax.numpy
  tree = {"k": jnp.ones((4, 3)), "b": jnp.ones(3), "s": jnp.asarray(2.0), "t": jnp.ones((2, 3, 2))}
  check = jax.jit(train.all_finite)
  assert bool(check(tree))
  for name, leaf in tree.items():
    for bad in (np.inf, -np.inf, np.nan):
      broken = dict(tree, **{name: leaf.reshape(-1).at[-1].set(bad).reshape(leaf.shape)})
      assert not bool(check(broken)), (name, bad)


def test_step_with_non_finite_gradient_leaves_the_state_alone():
  """A finite loss whose gradient is NaN (at step 1 only): that step is
  counted as skipped and changes nothing; the steps around it train."""
  from vae_jax import benchmark as bm
  from vae_jax import data
  from vae_jax.objectives import Objective
  jnp = jax.numpy
  s = bm.flax_example_setup(num_examples=64)

  class NanGradientAtStep1(Objective):
    def loss(self, model, params, batch, rng, step):
      value, metrics = super().loss(model, params, batch, rng, step)
      return value + nan_gradient_at(params, step, 1), metrics

  multi_step = jax.jit(train.make_multi_step(s.vae, NanGradientAtStep1(), s.optimizer,
                                             data.train_transform("none", 2), jax.random.key(0)))
  images, idx = jnp.asarray(s.images), data.batch_indices(0, 0, 3, 64, 16)
  state = bm._state(s)
  after_one, m1 = multi_step(state, images, idx[:1])
  after_two, m2 = multi_step(after_one, images, idx[1:2])
  after_three, m3 = multi_step(after_two, images, idx[2:3])
  assert [float(m["skipped"][0]) for m in (m1, m2, m3)] == [0.0, 1.0, 0.0]
  assert np.isfinite(float(m2["loss"][0]))
  assert not _leaves_equal(state.params, after_one.params)
  assert _leaves_equal((after_one.params, after_one.opt_state),
                       (after_two.params, after_two.opt_state))
  assert int(after_two.step) == 2
  assert not _leaves_equal(after_two.params, after_three.params)


def test_unguarded_dispatch_marks_a_non_finite_gradient_and_is_otherwise_the_guarded_one():
  """The training loop's fast path (guarded=False): the same steps as the
  guarded update while everything is finite; a NaN gradient under a finite
  loss marks the dispatch (at the last step only the end state's check can),
  so the loop replays it guarded, which skips exactly that step."""
  from vae_jax import benchmark as bm
  from vae_jax import data
  from vae_jax.objectives import Objective
  jnp = jax.numpy
  s = bm.flax_example_setup(num_examples=64)

  images, idx = jnp.asarray(s.images), data.batch_indices(0, 0, 3, 64, 16)

  def run(bad, guarded):
    class NanGradientAt(Objective):
      def loss(self, model, params, batch, rng, step):
        value, metrics = super().loss(model, params, batch, rng, step)
        return value + nan_gradient_at(params, step, bad), metrics

    multi_step = jax.jit(train.make_multi_step(s.vae, NanGradientAt(), s.optimizer,
                                               data.train_transform("none", 2),
                                               jax.random.key(0), guarded=guarded))
    return multi_step(bm._state(s), images, idx)

  clean_fast, m_fast = run(-1, False)
  clean_guarded, m_guarded = run(-1, True)
  assert m_fast["skipped"].tolist() == m_guarded["skipped"].tolist() == [0.0, 0.0, 0.0]
  for a, b in zip(jax.tree.leaves(clean_fast), jax.tree.leaves(clean_guarded)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  dirty, m_dirty = run(2, False)  # at the last step: every loss is finite, the end state not
  assert np.isfinite(m_dirty["loss"]).all()
  assert m_dirty["skipped"].tolist() == [0.0, 0.0, 1.0]
  assert not bool(train.all_finite(dirty.params))
  _, m_dirty = run(1, False)  # the next loss shows it too
  assert m_dirty["skipped"].tolist() == [0.0, 0.0, 1.0]
  replayed, m_replayed = run(1, True)
  assert m_replayed["skipped"].tolist() == [0.0, 1.0, 0.0]
  assert bool(train.all_finite(replayed.params))


def test_take_rows_is_indexing():
  """The step's gather (rows of the flattened images) is images[idx]."""
  images = np.random.default_rng(0).random((10, 4, 3, 2)).astype(np.float32)
  idx = np.array([3, 0, 9, 3, 7])
  np.testing.assert_array_equal(train.take_rows(jax.numpy.asarray(images), idx), images[idx])


def test_train_compiler_options_and_the_step_they_compile(monkeypatch):
  """512-bit vectors on a CPU with AVX-512, unless the user's XLA_FLAGS set a
  width; none without AVX-512 or off the CPU. The step compiled with them takes
  the same steps as XLA's default compilation (to float32 rounding)."""
  from vae_jax import backend, data
  from vae_jax import benchmark as bm

  def options(platform: str, has_avx512: bool, xla_flags: str | None = None):
    monkeypatch.setattr(backend, "_cpu_has_avx512", lambda: has_avx512)
    if xla_flags is None:
      monkeypatch.delenv("XLA_FLAGS", raising=False)
    else:
      monkeypatch.setenv("XLA_FLAGS", xla_flags)
    backend._train_compiler_options.cache_clear()
    return backend.train_compiler_options(platform)

  try:
    wide = options("cpu", True)
    assert wide == {"xla_cpu_prefer_vector_width": 512}
    assert options("cpu", True, "--xla_cpu_prefer_vector_width=256") is None
    assert options("cpu", True, "--xla_force_host_platform_device_count=2") == wide
    assert options("cpu", False) is None
    assert options("gpu", True) is None and options("tpu", True) is None
  finally:
    monkeypatch.undo()
    backend._train_compiler_options.cache_clear()
  s = bm.flax_example_setup(num_examples=64)
  multi_step = train.make_multi_step(s.vae, s.objective, s.optimizer,
                                     data.train_transform("none", 2), jax.random.key(0),
                                     guarded=False)
  images, idx = jax.numpy.asarray(s.images), data.batch_indices(0, 0, 5, 64, 16)
  default, m_default = jax.jit(multi_step)(bm._state(s), images, idx)
  compiled, m_wide = jax.jit(multi_step, compiler_options=wide)(bm._state(s), images, idx)
  np.testing.assert_allclose(m_wide["loss"], m_default["loss"], rtol=1e-6)
  assert not _leaves_equal(bm._state(s).params, compiled.params)
  for a, b in zip(jax.tree.leaves(compiled), jax.tree.leaves(default)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def _training_steps():
  """Every training step, built now (after any monkeypatching), with arguments
  for it: name -> (update, args). The single-device and mesh steps, the
  vectorised sweep's and the benchmark's hand-tuned loop."""
  from vae_jax import backend, data, vectorized
  from vae_jax import benchmark as bm
  s = bm.flax_example_setup(num_examples=64)
  transform = data.train_transform("none", 2)
  images, idx = jax.numpy.asarray(s.images), data.batch_indices(0, 0, 2, 64, 16)
  args = (bm._state(s), images, idx)
  members = (jax.tree.map(lambda a: a[None], bm._state(s)), images, idx[None],
             jax.random.key(0)[None], jax.numpy.ones(1), jax.numpy.full(1, 1e-3))
  return {
      "single": (train.make_update(s.vae, s.objective, s.optimizer, transform,
                                   jax.random.key(0)), args),
      "mesh": (train.make_update(s.vae, s.objective, s.optimizer, transform, jax.random.key(0),
                                 mesh=backend.data_mesh("cpu")), args),
      "hand": (bm.hand_tuned_update(s), args),
      "vectorized": (vectorized.make_update(s.vae, s.objective, bm._flax_example_config(),
                                            transform), members),
  }


def test_every_training_step_is_compiled_with_the_train_compiler_options(monkeypatch):
  """The options reach the single-device and mesh steps, the vectorised sweep's
  and the benchmark's hand-tuned loop: an option XLA does not know fails each."""
  from vae_jax import backend
  seen = []

  def bogus(platform=None):
    seen.append(platform)
    return {"xla_cpu_no_such_option": 1}
  monkeypatch.setattr(backend, "train_compiler_options", bogus)
  for update, args in _training_steps().values():
    with pytest.raises(Exception, match="xla_cpu_no_such_option"):
      update(*args)
  assert None in seen and "cpu" in seen  # the default device's platform, the mesh's


def test_every_training_step_unrolls_its_small_hashes(monkeypatch):
  """The single-device and mesh steps, the vectorised sweep's and the hand-tuned
  loop are lowered with their small Threefry hashes unrolled (vae_jax.threefry);
  a program jitted elsewhere keeps the loop."""
  from vae_jax import threefry
  unrolled = []
  hash_2x32 = threefry.hash_2x32

  def spy(*args, unroll):
    unrolled.append(unroll)
    return hash_2x32(*args, unroll=unroll)
  monkeypatch.setattr(threefry, "hash_2x32", spy)
  lowerings = {name: lambda u=update, a=args: u.lower(*a)
               for name, (update, args) in _training_steps().items()}
  lowerings["elsewhere"] = lambda: jax.jit(lambda k: jax.random.normal(k, (16, 20))).lower(
      jax.random.key(0))
  for name, lower in lowerings.items():
    unrolled.clear()
    lower()
    assert unrolled, name  # the hash was lowered here
    assert all(unrolled) == (name != "elsewhere") and any(unrolled) == all(unrolled), name


def test_ema_is_kept_evaluated_and_resumed_exactly(tmp_path):
  """With train.ema_decay the run keeps params' moving average, evaluates it
  (validation, best checkpoint, test) and resumes it bit for bit."""
  c = experiment("digits")
  c.train.ema_decay = 0.9
  c.eval.gap_examples, c.eval.gap_steps = 10, 20
  result = train.train_and_evaluate(c, str(tmp_path / "full"))
  assert result["params"] == "ema"
  assert result["test"]["gaps"]["num_examples"] == 10
  run = runs.load_run(str(tmp_path / "full"), "latest")
  assert not _leaves_equal(run.params, run.ema_params)
  # The EMA is what was evaluated: the same numbers come back from its params.
  again = runs.load_run(str(tmp_path / "full"))
  assert again.eval_params is again.ema_params
  c.train.num_steps = 20
  train.train_and_evaluate(c, str(tmp_path / "split"))
  c.train.num_steps = 40
  train.train_and_evaluate(c, str(tmp_path / "split"))
  resumed = runs.load_run(str(tmp_path / "split"), "latest")
  assert _leaves_equal(run.ema_params, resumed.ema_params)
  assert _leaves_equal(run.params, resumed.params)


def test_figures_and_report(digits_run):
  from PIL import Image

  from vae_jax import report
  workdir, result = digits_run
  images = sorted(os.listdir(os.path.join(workdir, "images")))
  assert images == ["kl_per_dimension.png", "latent_scatter.png", "reconstructions.png",
                    "samples.png", "samples_step_00000020.png", "samples_step_00000040.png",
                    "samples_t0.7.png", "training_curves.png", "traversals.png"]
  # Traversals: the 8 dimensions of highest KL, 9 values each, 8×8 digits, ×4.
  assert Image.open(os.path.join(workdir, "images", "traversals.png")).size == (
      4 * (9 * 9 + 1), 4 * (8 * 9 + 1))
  path = report.write_report(workdir)
  text = open(path).read()
  assert f"{result['test']['nll']['value']:.4f} nats" in text
  assert f"{result['test']['elbo']['se']:.4f}" in text
  assert text.count("data:image/png;base64,") == 7  # self-contained


def test_report_of_unfinished_run_is_one_line(tmp_path):
  from vae_jax import report
  (tmp_path / "config.json").write_text(json.dumps({"config": {}}))
  with pytest.raises(UserError, match="has no eval.json"):
    report.write_report(str(tmp_path))


def test_benchmarked_steps_cost_their_matmuls():
  """The benchmark's library step (as the training loop runs it) and its
  hand-tuned loop do the work of the step's matmuls (step_matmuls, counted by
  hand) and little else, by XLA's cost analysis of the compiled programs: the
  hand loop once broadcast its loss to (B, 28, B, 784), 15× the FLOPs, and the
  benchmark timed that."""
  from vae_jax import benchmark as bm
  from vae_jax import data
  s = bm.flax_example_setup(num_examples=64)
  images, idx = jax.device_put(s.images), data.batch_indices(0, 0, 1, 64, 64)
  matmuls = 64 * bm.flop_per_example(s.vae)  # Adam's ~10 FLOP a parameter: +3 %
  library = train.make_update(s.vae, s.objective, s.optimizer, data.train_transform("none", 2),
                              jax.random.key(0), guarded=False)
  for update in (library, bm.hand_tuned_update(s)):
    flop = bm._xla_flop(update.lower(bm._state(s), images, idx))
    assert matmuls <= flop < 1.15 * matmuls, (flop, matmuls)


def test_model_benchmark_counts_the_steps_flops_like_its_matmuls():
  """scripts/benchmark.py --what=models: XLA's FLOPs of the one-hour MLP's
  compiled step (IWAE k=5) are its matmuls' count (benchmark.step_matmuls,
  by hand) plus the element-wise work, under 15 % more; the rate is a
  fraction of the measured matmul peak."""
  from vae_jax import benchmark as bm
  from vae_jax import data, models
  from vae_jax.cli import load_config_file
  r = bm.model_step("mnist_one_hour.py", (28, 28, 1), trials=1, min_seconds=0.01, batch_size=8)
  c = load_config_file(os.path.join(ROOT, "experiments", "mnist_one_hour.py"))
  vae = models.build(c.model, data.DataSpec((28, 28, 1), 2))
  matmuls = 8 * bm.flop_per_example(vae, num_samples=5)
  assert matmuls <= r["flop_per_step"] < 1.15 * matmuls, (r["flop_per_step"], matmuls)
  assert r["examples_per_sec"] > 0 and 0 < r["fraction_of_peak"] < 1
  assert "mnist_one_hour.py" in bm.format_models([r])


def test_time_to_first_step_is_in_the_first_row_written(tmp_path):
  """Logged every 20 steps, checkpointed every 10: the first boundary writes no
  row, and the first row written (step 20) carries the time to the first step,
  counted from this run's start (not the first in this process)."""
  c = experiment("digits")
  c.train.num_steps, c.train.log_every_steps, c.train.checkpoint_every_steps = 40, 20, 10
  c.train.eval_every_steps = 40
  start = time.time()
  train.train_and_evaluate(c, str(tmp_path))
  rows = runs.load_run(str(tmp_path)).metrics
  assert [r["step"] for r in rows] == [20, 40]
  assert 0 < rows[0]["time_to_first_step"] < time.time() - start
  assert "time_to_first_step" not in rows[1]


def test_a_replay_stops_where_it_was_asked_to():
  """A stretch replayed from step 20 to a join at 25 (a member's step from a
  shorter run) ends at 25, though the next natural boundary is 30."""
  import ml_collections
  t = ml_collections.ConfigDict(dict(steps_per_dispatch=10, log_every_steps=10,
                                     eval_every_steps=20, checkpoint_every_steps=20))
  state, metrics = train.replay(lambda s, a, b: (s + (b - a), (a, b)), 0, 20, 25, t, 40)
  assert state == 5 and metrics == [(20, 25)]
