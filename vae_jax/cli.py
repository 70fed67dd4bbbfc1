"""Entry-point plumbing: absl flags in, one error line out.

Every user mistake (unknown config field, wrong type, out-of-range value,
missing file, bad data, unwritable workdir) ends as `error: <one line>` on
stderr and exit status 2, never a traceback.
"""

import difflib
import importlib.util
import os
import sys
from collections.abc import Callable

import ml_collections
from absl import app, flags, logging

from vae_jax.errors import Interrupted, UserError

EXIT_USER_ERROR = 2


def fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(EXIT_USER_ERROR)


def load_module(path: str):
  """A config or sweep file, imported by path."""
  module_spec = importlib.util.spec_from_file_location("_vae_jax_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  path, _, arg = spec.partition(":")
  module = load_module(path)
  return module.get_config(arg) if arg else module.get_config()


def _unknown_field(config: ml_collections.ConfigDict, path: str) -> str | None:
  """A message for the first key of `path` that `config` lacks, else None."""
  node, seen = config, []
  for key in path.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or key not in node:
      fields = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
      where = "config" + "".join(f".{k}" for k in seen)
      close = difflib.get_close_matches(key, fields, n=1)
      hint = f"did you mean {where}.{close[0]}? " if close else ""
      return (f"unknown config field {where}.{key}; {hint}fields of {where}: "
              f"{', '.join(fields) or '(none: it is a value)'}")
    node, seen = node[key], seen + [key]
  return None


def _config_error(argv: list[str], error: Exception) -> str:
  """Turns a config_flags failure into one line naming the field."""
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
  if spec is not None:
    try:
      base = load_config_file(spec)
    except Exception:  # reported below as the original error
      base = None
    if base is not None:
      for arg in argv:
        if arg.startswith("--config."):
          message = _unknown_field(base, arg[len("--config."):].split("=", 1)[0])
          if message:
            return message
  text = str(error).strip().splitlines()
  return text[0] if text else type(error).__name__


def _check_config_file(argv: list[str]) -> None:
  for arg in argv:
    if arg.startswith("--config="):
      path = arg.split("=", 1)[1].partition(":")[0]
      if not os.path.isfile(path):
        raise UserError(f"config file {path!r} not found (--config); e.g. "
                        "--config=experiments/digits.py")


def _parse(argv: list[str]) -> list[str]:
  try:
    _check_config_file(argv)
    return flags.FLAGS(argv)
  except UserError as e:
    fail(str(e))
  except Exception as e:  # absl's flags.Error, and config_flags' plain exceptions
    fail(_config_error(argv, e))


def config_value(flag) -> ml_collections.ConfigDict:
  """The parsed config, or one line if the config file itself failed to load."""
  try:
    config = flag.value
    config.keys()  # config_flags defers a broken file's error to first use
  except Exception as e:
    raise UserError(f"could not load the config file: {type(e).__name__}: "
                    f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None
  return config


def run(main: Callable[[list[str]], None]) -> None:
  """app.run(main) with every UserError printed as one line and exit status 2."""
  def wrapped(argv):
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # JAX's INFO lines are not for users
    try:
      main(argv)
    except UserError as e:
      fail(str(e))
    except Interrupted as e:  # preemption: a checkpoint is written; exit as the signal asks
      print(str(e), file=sys.stderr)
      sys.exit(128 + e.signum)
  app.run(wrapped, flags_parser=_parse)
