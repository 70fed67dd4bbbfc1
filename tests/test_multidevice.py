"""Data parallelism over 8 simulated CPU devices (a subprocess each: the
device count is fixed when JAX starts)."""

import os
import subprocess
import sys

import jax
import numpy as np

from vae_jax import runs

from conftest import ROOT, train_cli

_EIGHT = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")


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


def test_the_step_really_is_split_over_devices():
  code = f"""
import sys; sys.path.insert(0, {ROOT!r})
import jax
from vae_jax import backend, benchmark as bm, data, train
s = bm.flax_example_setup(num_examples=128)
mesh = backend.data_mesh("cpu")
update = train.make_update(s.vae, s.objective, s.optimizer, data.train_transform("none", 2),
                           jax.random.key(0), None, mesh)
text = update.lower(bm._state(s), s.images, data.batch_indices(0, 0, 2, 128, 64)).compile()
print(mesh.size, "all-reduce" in text.as_text())
"""
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, env=_EIGHT)
  assert out.stdout.split() == ["8", "True"], out.stderr


def test_batch_that_does_not_split_is_one_line(tmp_path):
  out = _train(tmp_path, _EIGHT, "--config.train.batch_size=60")
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
      "error: train.batch_size=60 does not split over the 8 cpu devices; make it a multiple "
      "of 8"]
