"""Data parallelism over 8 simulated CPU devices (a subprocess each: the
device count is fixed when JAX starts)."""

import os
import subprocess
import sys

import jax
import numpy as np

from vae_jax import runs

from conftest import ROOT, train_cli

_EIGHT = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "")
                                      + " --xla_force_host_platform_device_count=8").strip())


def _train(workdir, env, *extra):
  return train_cli(workdir, "--config.train.progress_bar=False", *extra, env=env)


def test_eight_devices_match_one(tmp_path):
  """Batch 64 split 8 ways: after 40 steps the parameters agree with the
  single-device run to float tolerance (reductions may be ordered otherwise)."""
  one, eight = tmp_path / "one", tmp_path / "eight"
  assert _train(one, dict(os.environ)).returncode == 0
  out = _train(eight, _EIGHT)
  assert out.returncode == 0, out.stderr
  a, b = runs.load_run(str(one), "latest"), runs.load_run(str(eight), "latest")
  assert runs.read_json(str(eight / "config.json"))["provenance"]["device_count"] == 8
  assert {r["num_devices"] for r in b.metrics} == {8}  # the state really lived on all 8
  assert {r["num_devices"] for r in a.metrics} == {1}
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
  assert abs(a.evaluation["test"]["nll"]["value"] - b.evaluation["test"]["nll"]["value"]) < 1e-2


def test_the_step_and_the_evaluation_really_are_split_over_devices():
  code = f"""
import sys; sys.path.insert(0, {ROOT!r})
import jax
from vae_jax import backend, benchmark as bm, data, train
s = bm.flax_example_setup(num_examples=128)
mesh = backend.data_mesh("cpu")
update = train.make_update(s.vae, s.objective, s.optimizer, data.train_transform("none", 2),
                           jax.random.key(0), None, mesh)
text = update.lower(bm._state(s), backend.on_each_device(mesh, s.images),
                    data.batch_indices(0, 0, 2, 128, 64)).compile()
print(mesh.size, "all-reduce" in text.as_text())
# Evaluation split over the 8 devices (45 examples: the last batch padded) gives
# the single-device figures: each example's key is set by its place in a batch.
from vae_jax import evaluation
params, images = bm._state(s).params, s.images[:45]
kw = dict(batch_size=16, elbo_samples=3, analytic_kl=True, num_importance_samples=50, chunk=25)
one = evaluation.evaluate(s.vae, params, images, jax.random.key(1), **kw)
split = evaluation.evaluate(s.vae, params, images, jax.random.key(1), mesh=mesh, **kw)
print(one["num_examples"] == split["num_examples"] == 45,
      abs(one["nll"]["value"] - split["nll"]["value"]) < 1e-3,
      abs(one["elbo"]["value"] - split["elbo"]["value"]) < 1e-3)
"""
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, env=_EIGHT)
  assert out.stdout.split() == ["8", "True", "True", "True", "True"], out.stderr


def test_batch_that_does_not_split_is_one_line(tmp_path):
  out = _train(tmp_path, _EIGHT, "--config.train.batch_size=60")
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
      "error: train.batch_size=60 does not split over the 8 cpu devices; make it a multiple "
      "of 8"]


def _free_port() -> int:
  import socket
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _two_processes(workdir, *extra) -> list[str]:
  """scripts/train.py as processes 0 and 1 of a jax.distributed run on loopback
  (gloo CPU collectives); returns each one's parameter fingerprint line."""
  port = _free_port()
  args = [sys.executable, os.path.join(ROOT, "scripts", "train.py"),
          "--config=experiments/digits.py:small", f"--workdir={workdir}",
          "--config.train.progress_bar=False", f"--coordinator_address=127.0.0.1:{port}",
          "--num_processes=2", *extra]
  procs = [subprocess.Popen(args + [f"--process_id={i}"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in (0, 1)]
  outs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert "NLL" in outs[0][0] and "NLL" not in outs[1][0]  # only process 0 reports
  lines = [next(ln for ln in err.splitlines() if "parameter copy sha256" in ln)
           for _, err in outs]
  return [ln.split("sha256 ")[1] for ln in lines]


def test_two_processes_agree_and_resume_exactly(tmp_path):
  """Two jax.distributed processes, each with its shard of the data: their
  parameter replicas agree bit for bit (the output bias, from the data's mean
  pixel, included); stopping at step 20 and resuming to
  40 (a collective orbax restore) gives the uninterrupted run's parameters."""
  whole, parts = tmp_path / "whole", tmp_path / "parts"
  # The output bias from the data's mean: the shards' pixel sums are combined.
  bias = "--config.model.output_bias=data_mean"
  a = _two_processes(whole, "--config.train.num_steps=40", bias)
  assert a[0] == a[1]
  b = _two_processes(parts, "--config.train.num_steps=20", bias)
  assert b[0] == b[1] != a[0]
  c = _two_processes(parts, "--config.train.num_steps=40", bias)
  assert c == a
  record = runs.read_json(str(whole / "config.json"))
  assert record["num_processes"] == 2 and record["provenance"]["device_count"] == 2
  rows = runs.load_run(str(parts), "latest").metrics  # written once, by process 0
  assert [r["step"] for r in rows] == [10, 20, 30, 40]
  assert {r["num_devices"] for r in rows} == {2}


def test_distributed_run_without_a_coordinator_is_one_line(tmp_path):
  out = train_cli(tmp_path, "--num_processes=2", "--process_id=0")
  assert out.returncode == 2
  lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
  assert len(lines) == 1 and "--coordinator_address=HOST:PORT" in lines[0], out.stderr
