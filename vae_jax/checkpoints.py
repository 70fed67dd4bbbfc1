"""Orbax checkpoints of the train state, with a JSON record beside each.

Two managers per run: `checkpoints/` keeps the latest few steps (resume),
`best/` keeps the one with the best validation ELBO (final evaluation).
Saves are synchronous: a checkpoint on disk is complete when `save` returns.
"""

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpoints:
  """A directory of step-numbered checkpoints, each {state, meta}."""

  def __init__(self, directory: str, max_to_keep: int):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def save(self, step: int, state: Any, meta: dict) -> None:
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
    self._manager.wait_until_finished()

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    steps = self.steps()
    return steps[-1] if steps else None

  def restore(self, step: int, like: Any | None = None) -> tuple[Any, dict]:
    """(state, meta) at `step`; `like` gives the tree structure, shapes and dtypes."""
    target = None if like is None else jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    out = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    return out.state, out.meta

  def close(self) -> None:
    self._manager.close()
