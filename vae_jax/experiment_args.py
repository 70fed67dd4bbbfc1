"""The argument of an experiment or sweep file: `--config=FILE:small,k=5`.

A file's `get_config(arg)` declares the names it reads by parsing `arg` here:

  a = experiment_args.parse(arg, small=bool, npz=bool, k=int)
  a.small, a.npz  -> True/False;  a.k -> 5, or None when not given

so that a name the file does not read (`:nonexistent`, a typo) is one line
listing the ones it does, instead of being ignored. `cli.load_config_file`
also refuses an argument given to a file that parses none.
"""

import types
from typing import Any

from vae_jax.errors import UserError

_loading: list[dict[str, Any]] = []  # the files cli.load_config_file is inside, innermost last


def parse(arg: str | None, **names: type) -> types.SimpleNamespace:
  """`arg` ('small,k=5') by the declared names: bool ones take no value, any
  other type converts the text after '='. UserError (one line) for a name not
  declared, a missing or extra value, or one that does not convert."""
  where = _loading[-1] if _loading else None
  if where is not None:
    where["parsed"] = True
  file = where["path"] if where else "the config file"
  known = ", ".join(n if t is bool else f"{n}=<{t.__name__}>" for n, t in names.items())
  out = {n: (False if t is bool else None) for n, t in names.items()}
  for part in (arg or "").split(","):
    name, sep, text = part.strip().partition("=")
    if not name:
      continue
    if name not in names:
      raise UserError(f"{file} has no argument {name!r} (in ':{arg}'); it takes only "
                      f"{known or 'none'} (comma-separated)")
    kind = names[name]
    if kind is bool:
      if sep:
        raise UserError(f"{file}: argument {name!r} takes no value (':{arg}'); give just "
                        f"{name}")
      out[name] = True
      continue
    try:
      if not sep:
        raise ValueError
      out[name] = kind(text)
    except ValueError:
      example = {int: "5", float: "0.5"}.get(kind, "VALUE")
      what = {int: "an integer", float: "a number"}.get(kind, f"a {kind.__name__}")
      raise UserError(f"{file}: argument {name!r} needs {what} value, e.g. "
                      f"{name}={example} (':{arg}' given)") from None
  return types.SimpleNamespace(**out)
