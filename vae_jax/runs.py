"""The workdir of a run: its files, its config record, and `load_run`.

  DIR/config.json     resolved config, data spec, provenance
  DIR/metrics.jsonl   one JSON object per log step
  DIR/tensorboard/    event files
  DIR/checkpoints/    latest steps (orbax), DIR/best/ the best by validation ELBO
  DIR/images/         PNG grids
  DIR/eval.json       the final test evaluation
  DIR/lock            the live run that owns DIR (vae_jax.locks)

Everything read back is checked as it is read: a file that does not parse,
or lacks what the project writes in it, is damage (`DamagedFile`, one line
naming it), never a traceback.
"""

import dataclasses
import errno
import json
import os
import warnings
from typing import Any

import ml_collections

from vae_jax import config as config_lib
from vae_jax.errors import UserError, WriteError

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
      if e.errno in (errno.ENOSPC, errno.EDQUOT):  # the one line of every failed write
        raise WriteError(directory, e.strerror, "nothing in it was changed") from None
      what = "workdir" if directory == workdir else "run folder"
      raise UserError(f"{what} {directory!r} is not writable ({e.strerror or e}); choose "
                      "another --workdir or make it writable") from None


class DamagedFile(UserError):
  """A file the project wrote reads back as something it did not write."""


# What each record must hold to be read back: dotted key -> type(s).
CONFIG_KEYS = {"config": dict, "data_spec": dict, "data_spec.image_shape": list,
               "data_spec.num_levels": (int, type(None)), "data_spec.dequantized": bool}
EVAL_KEYS = {"test": dict, "test.elbo": dict, "test.elbo.value": (int, float),
             "test.rate": (int, float), "test.distortion": (int, float),
             "test.active_units": int}


def read_json(path: str, keys: dict[str, Any] | None = None) -> Any:
  """A JSON record the project wrote; DamagedFile (one line naming `path`) when
  its bytes are not JSON (flipped, truncated, not UTF-8) or it lacks `keys`."""
  try:
    with open(path, "rb") as f:
      record = json.loads(f.read())
  except ValueError as e:  # JSONDecodeError and UnicodeDecodeError alike
    raise DamagedFile(f"{path} is damaged (not valid JSON: {str(e)[:80]}); restore it, move "
                      "it aside, or use a new --workdir") from None
  for key, kind in (keys or {}).items():
    node = record
    for part in key.split("."):
      node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, kind) or (kind is int and isinstance(node, bool)):
      raise DamagedFile(f"{path} is damaged (no valid {key!r}); restore it, move it aside, "
                        "or use a new --workdir")
  return record


def read_eval(path: str) -> dict | None:
  """eval.json if it is there and whole; None (with a warning) if damaged: the
  run then counts as not finished and its final evaluation runs again."""
  if not os.path.exists(path):
    return None
  try:
    return read_json(path, EVAL_KEYS)
  except DamagedFile as e:
    warnings.warn(f"{e}; the run counts as unfinished", stacklevel=2)
    return None


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
  record = read_json(path, CONFIG_KEYS)
  try:
    config = config_from_dict(record["config"])
  except (KeyError, TypeError, AttributeError) as e:
    raise DamagedFile(f"{path} is damaged (its config has no field {e}); restore it, or use "
                      "a new --workdir") from None
  spec = data.DataSpec(tuple(record["data_spec"]["image_shape"]),
                       record["data_spec"]["num_levels"], record["data_spec"]["dequantized"])
  directory = os.path.join(workdir, "best" if checkpoint == "best" else "checkpoints")
  ckpts = checkpoints.Checkpoints(directory, max_to_keep=1_000_000)
  step, bad = ckpts.newest_good_step()
  if step is None:
    damaged = f" (step(s) {sorted(bad)} damaged or partly written, left as they are)" if bad \
        else ""
    raise UserError(f"no usable {checkpoint} checkpoint in {directory}{damaged}; train first, "
                    "or pick the other with --checkpoint")
  state, _ = ckpts.restore(step, verify=False)
  ckpts.close()
  return Run(workdir=workdir, config=config, data_spec=spec,
             model=models.build(config.model, spec), params=state["params"],
             ema_params=state.get("ema_params"), step=step,
             metrics=writers.read_jsonl(os.path.join(workdir, METRICS_FILE)),
             evaluation=read_eval(os.path.join(workdir, EVAL_FILE)))
