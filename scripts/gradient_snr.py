"""The gradient's signal-to-noise ratio of each estimator at ONE run's parameters.

An ablation's members each train with their own estimator, so their SNRs are
measured at different parameters; this compares estimators and k where only
the estimator and k change (Rainforth et al. 2018: plain IWAE's encoder SNR
falls as k grows at fixed parameters; Tucker et al. 2019: DReG's does not).
Same draws of z for every estimator at a given k (the same seed), the run's
test images (eval.gradient_batch of them), the diagnostics' instrument.

  python scripts/gradient_snr.py --workdir=runs/est_mnist/estimator=reparam,num_samples=1 \
      --num_samples=1,5,50,500 --draws=100
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from vae_jax import cli  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of a training run.", required=True)
_ESTIMATORS = flags.DEFINE_list("estimators", ["reparam", "stl", "dreg"], "Estimators.")
_K = flags.DEFINE_list("num_samples", ["1", "5", "50"], "IWAE k values.")
_DRAWS = flags.DEFINE_integer("draws", 100, "Draws of z per estimate.", lower_bound=2)
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint.")
_OUT = flags.DEFINE_string("out", None, "JSON output (default: WORKDIR/gradient_snr.json).")
flags.register_validator("num_samples", lambda ks: all(k.isdigit() and int(k) >= 1 for k in ks),
                         "--num_samples must be positive integers, e.g. 1,5,50")
flags.register_validator("estimators",
                         lambda es: set(es) <= {"reparam", "stl", "dreg"} and len(es) > 0,
                         "--estimators takes reparam, stl and/or dreg")


def main(argv):
  del argv
  import dataclasses

  import jax

  from vae_jax import data as data_lib
  from vae_jax import diagnostics, runs, writers
  from vae_jax.objectives import Objective
  run = runs.load_run(_WORKDIR.value, _CHECKPOINT.value)
  c = run.config
  images = data_lib.load(c.data, c.model.likelihood).test[:c.eval.gradient_batch]
  base = dataclasses.replace(Objective.from_config(c.objective), name="iwae",
                             analytic_kl=False, beta=1.0, kl_warmup_steps=0, free_bits=0.0)
  params = jax.device_get(run.eval_params)
  rows = []
  for k in (int(k) for k in _K.value):
    for estimator in _ESTIMATORS.value:
      o = dataclasses.replace(base, num_samples=k, estimator=estimator)
      g = diagnostics.gradient_noise(run.model, o, params, images, jax.random.key(0),
                                     _DRAWS.value)
      rows.append({"estimator": estimator, "num_samples": k, **g})
      print(f"k={k:<5} {estimator:<8} encoder SNR {g['encoder_snr']:.3f} (variance "
            f"{g['encoder_variance']:.4g})  decoder SNR {g['decoder_snr']:.3f}", flush=True)
  out = _OUT.value or os.path.join(_WORKDIR.value, "gradient_snr.json")
  writers.atomic_write_text(out, json.dumps(
      {"workdir": _WORKDIR.value, "step": run.step, "draws": _DRAWS.value,
       "examples": len(images), "rows": rows}, indent=2))
  print(f"written to {out}")


if __name__ == "__main__":
  cli.run(main)
