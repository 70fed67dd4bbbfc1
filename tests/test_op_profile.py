"""vae_jax.op_profile: each compiled op's time per call, from jax.profiler's trace."""

import time

import jax
import jax.numpy as jnp
import pytest

from vae_jax import benchmark, op_profile


def test_op_times_counts_each_op_once_per_execution():
  # A loop of 7 steps: its body's ops run 7 times a call, the rest once; the
  # loop's own thunk, which spans its body, is not counted again.
  f = jax.jit(lambda x, w: jax.lax.scan(lambda c, _: (jnp.tanh(c @ w), None), x, None,
                                        length=7)[0].sum())
  x, w = jnp.ones((64, 64)), jax.random.normal(jax.random.key(0), (64, 64)) / 8
  f(x, w).block_until_ready()
  start = time.perf_counter()
  rows = op_profile.op_times(lambda: f(x, w).block_until_ready(), calls=3)
  wall = (time.perf_counter() - start) / 3
  counts = sorted(r["count"] for r in rows)
  assert 7.0 in counts and 1.0 in counts and set(counts) <= {1.0, 7.0}, rows
  assert not any(r["name"].startswith("while") for r in rows), rows
  assert all(r["module"] == "jit__lambda" and r["seconds"] > 0 for r in rows)
  assert sum(r["seconds"] for r in rows) < wall  # per call, as the wall time
  assert [r["seconds"] for r in rows] == sorted((r["seconds"] for r in rows), reverse=True)


def _event(pid, tid, name, ts, dur, module="jit_step"):
  return {"ph": "X", "pid": pid, "tid": tid, "name": name, "ts": ts, "dur": dur,
          "args": {"hlo_module": module, "hlo_op": name}}


def test_summarize_counts_device_kernels_and_innermost_ops_per_call():
  meta = [{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/device:GPU:0"}},
          {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "/host:CPU"}}]
  host = [_event(2, 1, "fusion", 0, 50), _event(2, 1, "end: fusion", 50, 1)]
  # Kernels of one stream may run at once (a CUDA graph's independent nodes):
  # "adam" overlaps the second "gemm" and both count in full.
  device = [_event(1, 7, "gemm", 0, 30), _event(1, 7, "adam", 35, 20),
            _event(1, 7, "gemm", 40, 10), _event(1, 8, "copy", 0, 4, module="jit_copy")]
  rows = op_profile.summarize({"traceEvents": meta + host + device}, calls=2)
  # Only the device's kernels count where it has any; microseconds to seconds, per call.
  assert rows == [
      {"module": "jit_step", "name": "gemm", "count": 1.0, "seconds": pytest.approx(20e-6)},
      {"module": "jit_step", "name": "adam", "count": 0.5, "seconds": pytest.approx(10e-6)},
      {"module": "jit_copy", "name": "copy", "count": 0.5, "seconds": pytest.approx(2e-6)}]
  # A host-only trace: a loop's thunk holding two others is left out for them;
  # one that only overlaps the next ("add", "sub") holds nothing.
  nested = [_event(2, 1, "while", 0, 100), _event(2, 1, "dot", 10, 30),
            _event(2, 1, "tanh", 50, 20), _event(2, 2, "dot", 20, 10), _event(2, 1, "add", 100, 5),
            _event(2, 1, "sub", 103, 4)]
  rows = op_profile.summarize(meta + nested)
  assert {r["name"]: (r["count"], r["seconds"]) for r in rows} == {
      "dot": (2, pytest.approx(40e-6)), "tanh": (1, pytest.approx(20e-6)),
      "add": (1, pytest.approx(5e-6)), "sub": (1, pytest.approx(4e-6))}
  per_step = op_profile.per_unit(rows, 10, limit=2)
  assert [(r["name"], r["count"]) for r in per_step["ops"]] == [("dot", 0.2), ("tanh", 0.1)]
  assert per_step["total_seconds"] == pytest.approx(69e-7)
  assert "6.9 us per step" in op_profile.format_ops(per_step, unit="step")


def test_vectorized_sweep_reports_its_ops_per_step():
  r = benchmark.vectorized_sweep("digits", members=2, num_steps=40, trials=1, profile_ops=True)
  for name in ("separate", "vectorized"):
    profile, step = r[f"{name}_ops"], r[f"{name}_step_seconds"]
    assert profile["ops"] and all(o["count"] > 0 and o["seconds"] > 0 for o in profile["ops"])
    # Per step, as the timed step: a slip of a dispatch (20 steps) or of the
    # unit would put it far outside this range.
    assert step / 10 < profile["total_seconds"] < 10 * step


def test_importance_sampling_reports_its_ops_per_example():
  r = benchmark.importance_sampling(num_examples=50, k=200, trials=1, profile_ops=True)
  # Two chunks of 100 draws, each decoded for the batch's 50 examples at once:
  # the slowest op, the decoder's, runs twice a batch, 2/50 times per example.
  assert r["ops"]["ops"][0]["count"] == pytest.approx(2 / 50)
  per_example = r["seconds"] / r["num_examples"]
  assert per_example / 10 < r["ops"]["total_seconds"] < 10 * per_example
  # The products timed in one run of 20 each, scaled to the run's 2, against
  # the best of 5 such runs: the same products, so near each other (a slip of
  # the scaling would put them 10x apart).
  assert 0.5 < r["matmul_seconds"] / r["short_runs_seconds"] < 2
