"""Train-step throughput of the Flax-example VAE: vae_jax (with Adam, and with
SGD in its place) vs a plain loop, a hand-tuned loop and the step's matmuls
alone (the limit, timed in the same run), at several batch sizes; prints a
table and writes JSON.

  python scripts/benchmark.py --out=runs/benchmark.json
  python scripts/benchmark.py --trials=2 --batch_sizes=32,128   # quick look
  python scripts/benchmark.py --what=vectorized --out=runs/vectorized.json
  python scripts/benchmark.py --what=models --out=runs/models.json  # the published models
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from vae_jax import cli  # noqa: E402

_OUT = flags.DEFINE_string("out", "runs/benchmark.json", "Where to write the JSON.")
_TRIALS = flags.DEFINE_integer("trials", 5, "Interleaved trials (medians are reported).",
                               lower_bound=1)
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["32", "128", "512", "2048"], "Batch sizes.")
_EXAMPLES = flags.DEFINE_integer("examples_per_trial", 65536, "Examples per measurement.",
                                 lower_bound=1)
_SPD = flags.DEFINE_integer("steps_per_dispatch", 20, "Steps per jitted lax.scan.",
                            lower_bound=1)
_WHAT = flags.DEFINE_list("what", ["train", "importance"],
                          "train: step throughput; importance: k=5000 log-likelihood; "
                          "vectorized: 8 sweep members vmapped vs one after another; "
                          "models: the train step of each published-model config, with its "
                          "XLA FLOPs and fraction of the matmul peak; startup: make run's "
                          "time to its first step and to its end, cold and warm cache.")
_VECTORIZED = flags.DEFINE_list("vectorized_sizes", ["digits", "mnist"],
                                "--what=vectorized: digits, mnist (batch 128) and/or mnist20 "
                                "(batch 20, the IWAE paper's)")
_DTYPES = flags.DEFINE_list("compute_dtypes", ["float32"],
                            "--what=models: each model in each train.compute_dtype "
                            "(float32, bfloat16)")
_PROFILE = flags.DEFINE_bool("profile_ops", False,
                             "train, importance and vectorized: also where the time goes, op "
                             "by op (vae_jax.op_profile: a GPU's kernels, XLA:CPU's thunks)")
flags.register_validator(
    "vectorized_sizes", lambda s: set(s) <= {"digits", "mnist", "mnist20"},
    "--vectorized_sizes takes digits, mnist and/or mnist20")
flags.register_validator(
    "compute_dtypes", lambda s: set(s) <= {"float32", "bfloat16"},
    "--compute_dtypes takes float32 and/or bfloat16")
flags.register_validator(
    "batch_sizes", lambda sizes: all(s.isdigit() and int(s) >= 1 for s in sizes),
    "--batch_sizes must be positive integers, e.g. 32,128")
flags.register_validator(
    "what", lambda what: set(what) <= {"train", "importance", "vectorized", "models", "startup"},
    "--what takes train, importance, vectorized, models and/or startup")


def main(argv):
  del argv
  from vae_jax import benchmark, op_profile  # Deferred: flags first, then JAX.
  result = {}
  if "train" in _WHAT.value:
    result = benchmark.run(tuple(int(b) for b in _BATCH_SIZES.value), _TRIALS.value,
                           _EXAMPLES.value, _SPD.value, profile_ops=_PROFILE.value)
    print(benchmark.format_table(result))
    for row in result["rows"] if _PROFILE.value else ():
      print(f"vae_jax's step at batch {row['batch_size']}, its slowest ops:\n"
            + op_profile.format_ops(row["vae_jax_ops"], unit="step"))
  if "importance" in _WHAT.value:
    r = result["importance_sampling"] = benchmark.importance_sampling(
        trials=_TRIALS.value, profile_ops=_PROFILE.value)
    print(f"importance-sampled log p(x), k={r['k']} on {r['num_examples']} examples: "
          f"{r['seconds']:.2f} s, {r['ratio_to_matmul_time']:.3f}x its matmuls timed alone "
          f"over as many products ({r['matmul_seconds']:.2f} s; fastest of {r['trials']} runs "
          f"each; {r['ratio_per_trial']:.3f}x the median of the trials' own ratios), "
          f"{r['ratio_to_short_runs']:.3f}x their best short runs ({r['short_runs_seconds']:.2f} "
          f"s), {r['ratio_to_peak_time']:.2f}x their "
          f"{r['tflop']:.2f} TFLOP at the {r['matmul_peak_gflops']:.0f} GFLOP/s peak "
          f"({r['peak_seconds']:.2f} s)")
    if _PROFILE.value:
      print("its slowest ops:\n" + op_profile.format_ops(r["ops"], unit="example"))
  if "vectorized" in _WHAT.value:
    result["vectorized_sweep"] = []
    for size in _VECTORIZED.value:
      r = benchmark.vectorized_sweep(size, trials=_TRIALS.value,
                                     steps_per_dispatch=_SPD.value,
                                     profile_ops=_PROFILE.value)
      result["vectorized_sweep"].append(r)
      print(f"vectorised sweep, {size} size, {r['members']} members x {r['steps']} steps of "
            f"batch {r['batch_size']}, {r['steps_per_dispatch']} per dispatch: one after "
            f"another {r['separate_seconds']:.2f} s, vmapped {r['vectorized_seconds']:.2f} s: "
            f"{r['speedup']:.2f}x (a step: one member {1e6 * r['separate_step_seconds']:.0f} us, "
            f"all vmapped {1e6 * r['vectorized_step_seconds']:.0f} us)", flush=True)
      for name in ("separate", "vectorized") if _PROFILE.value else ():
        print(f"{name}, its slowest ops:\n" + op_profile.format_ops(r[f"{name}_ops"], "step"),
              flush=True)
  if "models" in _WHAT.value:
    result["models"] = []
    for spec, shape in benchmark.MODEL_SPECS.items():
      for dtype in _DTYPES.value:
        result["models"].append(benchmark.model_step(spec, shape, _TRIALS.value,
                                                     overrides={"train.compute_dtype": dtype}))
        print(benchmark.format_models(result["models"][-1:]), flush=True)  # row by row
    print(benchmark.format_models(result["models"]))
  if "startup" in _WHAT.value:
    r = result["startup"] = benchmark.startup()
    print(f"make run's job: import {r['import_seconds']:.2f} s; first step after "
          f"{r['cold']['time_to_first_step']:.2f} s cold, {r['warm']['time_to_first_step']:.2f} s "
          f"warm (compilation cache); whole run {r['cold']['total_seconds']:.1f} s cold, "
          f"{r['warm']['total_seconds']:.1f} s warm")
  from vae_jax import writers
  with writers.writing(_OUT.value):
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
  writers.atomic_write_text(_OUT.value, json.dumps(result, indent=2))
  print(f"written to {_OUT.value}")


if __name__ == "__main__":
  cli.run(main)
