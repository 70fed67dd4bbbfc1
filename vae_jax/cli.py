"""Entry-point plumbing: absl flags in, one error line out.

Every user mistake (unknown config field, wrong type, out-of-range value,
missing file, bad data, unwritable workdir) ends as `error: <one line>` on
stderr and exit status 2, never a traceback.
"""

import difflib
import importlib.util
import inspect
import os
import sys
import warnings
from collections.abc import Callable

import ml_collections
from absl import app, flags, logging

from vae_jax import experiment_args
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
  return call_get_config(load_module(path), path, arg)


def call_get_config(module, path: str, arg: str | None) -> ml_collections.ConfigDict:
  """`module.get_config(arg)`, refusing in one line naming `path` a file with no
  get_config, and an argument the file does not parse (vae_jax.experiment_args)."""
  get_config = getattr(module, "get_config", None)
  if not callable(get_config):
    raise UserError(f"{path} defines no get_config(arg); a config file defines one that "
                    "returns a ConfigDict, as experiments/digits.py does")
  if arg and not inspect.signature(get_config).parameters:
    raise UserError(f"{path} takes no argument (':{arg}' given); drop it")
  where = {"path": path, "parsed": False}
  experiment_args._loading.append(where)  # noqa: SLF001 - the helper's own record
  try:
    config = get_config(arg) if arg else get_config()
  finally:
    experiment_args._loading.pop()  # noqa: SLF001
  if arg and not where["parsed"]:
    raise UserError(f"{path} takes no argument (':{arg}' given); drop it, or declare it in "
                    "its get_config with vae_jax.experiment_args.parse")
  return config


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
  """The --config file exists, defines get_config and reads its argument:
  checked here, as config_flags would name only its internal module."""
  for arg in argv:
    if arg.startswith("--config="):
      spec = arg.split("=", 1)[1]
      path = spec.partition(":")[0]
      if not os.path.isfile(path):
        raise UserError(f"config file {path!r} not found (--config); e.g. "
                        "--config=experiments/digits.py")
      try:
        load_config_file(spec)
      except UserError:
        raise
      except Exception as e:  # the file's own error (syntax, a name): one line naming it
        line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UserError(f"could not load the config file {path}: {type(e).__name__}: "
                        f"{line}") from None


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


_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_format_warning = warnings.formatwarning


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
  """vae_jax's own warnings (a skipped checkpoint, a damaged file) as one line;
  other packages' keep their usual form."""
  if os.path.abspath(filename).startswith(_PACKAGE + os.sep) or \
      os.path.abspath(filename).startswith(os.path.join(os.path.dirname(_PACKAGE), "scripts")):
    return f"warning: {message}\n"
  return _format_warning(message, category, filename, lineno, line)


def use_compilation_cache() -> None:
  """XLA's persistent compilation cache, on unless JAX_COMPILATION_CACHE_DIR
  says where: `make run` from 12.7 s to 5.5 s the second time (first step after
  3.9 s, then 1.9 s; scripts/benchmark.py --what=startup). Safe to share: an
  entry's key covers the program, compile options, XLA flags, jax/jaxlib
  versions and the CPU's instruction set, and a hit is the same compiled code.
  Set before JAX is imported, so the environment is the one switch."""
  cache = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                       "vae_jax", "xla")
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", cache)
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def run(main: Callable[[list[str]], None]) -> None:
  """app.run(main) with every UserError printed as one line and exit status 2."""
  warnings.formatwarning = _one_line_warning
  use_compilation_cache()

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
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (e.g. the test evaluation)
      print("interrupted: every checkpoint and result written so far is intact; run the "
            "same command to go on", file=sys.stderr)
      sys.exit(130)
  app.run(wrapped, flags_parser=_parse)
