"""The workdir of a run: its files, its config record, and `load_run`.

  DIR/config.json     resolved config, data spec, provenance
  DIR/metrics.jsonl   one JSON object per log step
  DIR/tensorboard/    event files
  DIR/checkpoints/    latest steps (orbax), DIR/best/ the best by validation ELBO
  DIR/images/         PNG grids
  DIR/eval.json       the final test evaluation
"""

import dataclasses
import json
import os
from typing import Any

import ml_collections

from vae_jax import config as config_lib
from vae_jax.errors import UserError

CONFIG_FILE, EVAL_FILE, METRICS_FILE = "config.json", "eval.json", "metrics.jsonl"


WRITTEN_DIRS = ("checkpoints", "best", "tensorboard", "images")


def check_writable(workdir: str) -> None:
  """Fails early, with one line, when `workdir` or a folder a run writes in it
  cannot be written: before any training, so nothing in it changes."""
  for directory in (workdir, *(os.path.join(workdir, d) for d in WRITTEN_DIRS)):
    if directory != workdir and not os.path.lexists(directory):
      continue  # created later, inside a workdir just shown writable
    probe = os.path.join(directory, f".write_probe.{os.getpid()}")  # one per process
    try:
      os.makedirs(directory, exist_ok=True)
      with open(probe, "w") as f:
        f.write("ok")
      os.remove(probe)
    except OSError as e:
      what = "workdir" if directory == workdir else "run folder"
      raise UserError(f"{what} {directory!r} is not writable ({e.strerror or e}); choose "
                      "another --workdir or make it writable") from None


def read_json(path: str) -> Any:
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise UserError(f"{path} is not valid JSON ({e}); restore it or use a new --workdir"
                    ) from None


def flatten_dict(d: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in d.items():
    if isinstance(value, dict):
      out.update(flatten_dict(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = config_lib.as_json_value(value)
  return out


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json())


def config_from_dict(saved: dict) -> ml_collections.ConfigDict:
  """A recorded config laid over today's defaults: fields added since the run
  was made read as their defaults (unset, so they change nothing)."""
  config = config_lib.default()
  for path, value in flatten_dict(saved).items():
    *parents, leaf = path.split(".")
    node = config
    for key in parents:
      node = node[key]
    with node.ignore_type():
      node[leaf] = config_lib.as_config_value(value)
  return config


@dataclasses.dataclass
class Run:
  """A run as a notebook sees it: config, parameters, metrics and evaluation."""
  workdir: str
  config: ml_collections.ConfigDict
  data_spec: Any
  model: Any
  params: Any
  ema_params: Any  # None unless the run keeps an EMA
  step: int
  metrics: list[dict]
  evaluation: dict | None

  @property
  def eval_params(self) -> Any:
    return self.params if self.ema_params is None else self.ema_params


def load_run(workdir: str, checkpoint: str = "best") -> Run:
  """Loads the run in `workdir`; `checkpoint` is 'best' or 'latest'."""
  from vae_jax import checkpoints, data, models, writers  # Deferred: JAX and orbax.
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise UserError(f"{workdir!r} holds no run ({CONFIG_FILE} missing); give the --workdir "
                    "of a training run")
  record = read_json(path)
  config = config_from_dict(record["config"])
  spec = data.DataSpec(tuple(record["data_spec"]["image_shape"]),
                       record["data_spec"]["num_levels"], record["data_spec"]["dequantized"])
  directory = os.path.join(workdir, "best" if checkpoint == "best" else "checkpoints")
  ckpts = checkpoints.Checkpoints(directory, max_to_keep=1_000_000)
  step, _ = ckpts.newest_good_step(warn=False)
  if step is None:
    raise UserError(f"no usable {checkpoint} checkpoint in {directory}; train first, or pick"
                    " the other with --checkpoint")
  state, _ = ckpts.restore(step, verify=False)
  ckpts.close()
  eval_path = os.path.join(workdir, EVAL_FILE)
  return Run(workdir=workdir, config=config, data_spec=spec,
             model=models.build(config.model, spec), params=state["params"],
             ema_params=state.get("ema_params"), step=step,
             metrics=writers.read_jsonl(os.path.join(workdir, METRICS_FILE)),
             evaluation=read_json(eval_path) if os.path.exists(eval_path) else None)
