"""Sweeps as data: lists of `config.key=value` overrides, and their members.

A sweep file (experiments/ablations/*.py) defines `get_config(arg)`, the base
config, and `get_sweep(arg)`, its members built from these combinators (in
the spirit of big_vision's `get_hyper`):

  sweep("objective.beta", [0.5, 1, 2])             3 members
  product(sweep("seed", [0, 1]), sweep(...))       every combination
  zip_(sweep("a", [1, 2]), sweep("b", [3, 4]))     pairwise
  sweep(...) + sweep(...)                          concatenation (plain lists)

Each member is a dict {dotted key: value}; its name, made from those values,
is its subdirectory of the sweep's workdir, stable whatever the order.
"""

import ast
import copy
import itertools
import os
import re
from typing import Any

import ml_collections

from vae_jax import cli, experiment_args
from vae_jax import config as config_lib
from vae_jax.errors import UserError

Member = dict[str, Any]


def experiment(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """experiments/<name>.py's config (with `arg`): a sweep's base."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return cli.load_config_file(os.path.join(root, "experiments", f"{name}.py")
                              + (f":{arg}" if arg else ""))


MNIST_NPZ = "../shared/data/mnist/train.npz"  # from the repository root


def ablation_base(arg: str | None, *, small_steps: int, full_epochs: int,
                  small_k: int = 100, full_k: int = 1000) -> ml_collections.ConfigDict:
  """The base of a shipped ablation. 'small' (the default): the embedded digits,
  `small_steps` steps, minutes on a laptop CPU for the whole sweep. 'full':
  MNIST (dynamically binarised, 784-500-20) from the .npz copy (--set
  data.path=FILE elsewhere), `full_epochs` epochs: a reduced budget stated
  in the sweep's table, not a paper's protocol."""
  form = experiment_args.parse(arg, small=bool, full=bool)
  if form.small and form.full:
    raise UserError(f"ablation form {arg!r}: give :small (digits) or :full (MNIST), not both")
  if not form.full:
    c = experiment("digits")
    c.train.num_steps = small_steps
    c.train.log_every_steps = max(10, small_steps // 10)
    c.train.eval_every_steps = c.train.checkpoint_every_steps = max(10, small_steps // 2)
    c.eval.num_importance_samples = small_k
    c.eval.importance_chunk = min(100, small_k)
    c.eval.figures = False  # the sweep's table and figures are what a small form is for
  else:
    c = experiment("mnist_dynamic", "npz")
    c.data.path = MNIST_NPZ
    c.train.num_epochs = full_epochs
    c.eval.num_importance_samples = full_k
  c.train.progress_bar = False
  return c


def sweep(key: str, values) -> list[Member]:
  """One axis: a member per value."""
  return [{key: v} for v in values]


def product(*axes: list[Member]) -> list[Member]:
  """Every combination of one member from each axis (the last varies fastest)."""
  out = []
  for combo in itertools.product(*axes):
    merged: Member = {}
    for part in combo:
      merged.update(part)
    out.append(merged)
  return out


def zip_(*axes: list[Member]) -> list[Member]:
  """The i-th members of all axes together; the axes must be equally long."""
  if len({len(a) for a in axes}) > 1:
    raise UserError(f"zip_ of axes of lengths {[len(a) for a in axes]}; give equal lengths")
  return [dict(kv for part in parts for kv in part.items()) for parts in zip(*axes)]


def _value_text(value: Any) -> str:
  if isinstance(value, float):
    value = f"{value:g}"
  elif isinstance(value, (tuple, list)):
    value = "x".join(map(str, value))
  return re.sub(r"[^A-Za-z0-9.+_-]", "_", str(value))


def names(members: list[Member]) -> list[str]:
  """Readable, stable run names: `beta=0.5,seed=1` from the last part of each
  key (the full key where two keys end alike); a name depends only on its own
  member's values."""
  keys = sorted({k for m in members for k in m})
  leaves = [k.rsplit(".", 1)[-1] for k in keys]
  short = {k: (leaf if leaves.count(leaf) == 1 else k) for k, leaf in zip(keys, leaves)}
  out = [",".join(f"{short[k]}={_value_text(m[k])}" for k in sorted(m)) or "base"
         for m in members]
  if len(set(out)) != len(out):
    dup = next(n for n in out if out.count(n) > 1)
    raise UserError(f"two members of the sweep are the same ({dup}); remove the duplicate")
  return out


def apply(config: ml_collections.ConfigDict, member: Member) -> ml_collections.ConfigDict:
  """A copy of `config` with the member's overrides, type-checked as on the
  command line; an unknown key is one line naming the close ones."""
  config = copy.deepcopy(config)
  for path, value in member.items():
    unknown = cli._unknown_field(config, path)  # noqa: SLF001
    if unknown:
      raise UserError(f"sweep member {member}: {unknown}")
    *parents, leaf = path.split(".")
    node = config
    for key in parents:
      node = node[key]
    try:
      node[leaf] = config_lib.as_config_value(value)
    except TypeError as e:
      raise UserError(f"sweep member {member}: config.{path}={value!r}: {e}") from None
  return config


def _parse_overrides(overrides: list[str]) -> Member:
  out = {}
  for kv in overrides:
    key, sep, text = kv.partition("=")
    if not sep:
      raise UserError(f"--set={kv}: give key=value, e.g. --set=data.path=FILE.npz")
    try:
      out[key] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      out[key] = text  # a plain string, e.g. a path
  return out


class Sweep:
  """A sweep file's base config and members, named and checked."""

  def __init__(self, spec: str, overrides: list[str] = ()):
    """`overrides`: 'key=value' strings laid on the base before the members'
    own (scripts/sweep.py --set)."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
      raise UserError(f"sweep file {path!r} not found (--config); e.g. "
                      "--config=experiments/ablations/beta.py:small")
    self.spec = spec
    module = cli.load_module(path)
    if not hasattr(module, "get_sweep"):
      raise UserError(f"{path} defines no get_sweep(arg): it is a config, not a sweep; "
                      "use scripts/train.py for it")
    self.overrides = list(overrides)
    self.base = apply(cli.call_get_config(module, path, arg or None),
                      _parse_overrides(self.overrides))
    self.members: list[Member] = module.get_sweep(arg or None)
    if not self.members:
      raise UserError(f"the sweep {spec} has no members")
    self.names = names(self.members)
    # What the results table must say of itself, e.g. that a reduced budget
    # is not comparable with a paper's: NOTES = {form: text}.
    self.note = getattr(module, "NOTES", {}).get(arg or "small")
    # [{'x':, 'y':, 'along':, 'log_x':}] for vae_jax.results.plot; default: NLL
    # against each numeric swept key.
    self.plots = getattr(module, "PLOTS", None) or [
        {"x": k, "y": "test_nll"} for k in self.swept_keys()
        if k != "seed" and all(isinstance(m.get(k), (int, float)) for m in self.members)]
    self.configs = [apply(self.base, m) for m in self.members]
    for name, c in zip(self.names, self.configs):
      try:
        config_lib.validate(c)
      except UserError as e:
        raise UserError(f"sweep member {name}: {e}") from None

  def __len__(self) -> int:
    return len(self.members)

  def swept_keys(self) -> list[str]:
    return sorted({k for m in self.members for k in m})
