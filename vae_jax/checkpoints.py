"""Orbax checkpoints of the train state, each verified by a checksum manifest.

Two managers per run: `checkpoints/` keeps the latest few steps (resume),
`best/` keeps the one with the best validation ELBO (final evaluation).
Saves are synchronous. Orbax alone restores flipped bytes silently and counts
an empty step folder as a step, so after each save we write a manifest of the
SHA-256 of every file, last; a step without a valid manifest is not a
checkpoint. Restoring tries steps from newest to oldest, warns about each bad
one, and moves bad ones aside (never deletes them) only once a good one is
found and training goes on from it.

In a multi-process run every process takes part in each save and restore
(orbax writes collectively); process 0 alone writes manifests and moves bad
steps aside, and the others wait for it.
"""

import hashlib
import json
import os
import shutil
import time
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp

from vae_jax import backend
from vae_jax.errors import UserError

MANIFEST = "vae_jax_manifest.json"


def _digests(step_dir: str) -> dict[str, str]:
  out = {}
  for root, _, files in os.walk(step_dir):
    for name in files:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, step_dir)
      if rel == MANIFEST:
        continue
      h = hashlib.sha256()
      with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
          h.update(block)
      out[rel] = h.hexdigest()
  return out


class Checkpoints:
  """A directory of step-numbered checkpoints, each {state, meta} + manifest."""

  def __init__(self, directory: str, max_to_keep: int):
    self.directory = os.path.abspath(directory)
    self._max_to_keep = max_to_keep
    self._manager = self._new_manager()

  def _new_manager(self):
    options = ocp.CheckpointManagerOptions(max_to_keep=self._max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    return ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

  def save(self, step: int, state: Any, meta: dict) -> None:
    if step in self.steps():
      # A resumed run replays steps deterministically: a good copy is the same
      # checkpoint; a bad one is set aside (kept) before it is written again.
      if self.problem(step) is None:
        return
      self._set_aside(step)
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
    self._manager.wait_until_finished()
    step_dir = os.path.join(self.directory, str(step))
    if backend.is_lead():
      from vae_jax.writers import atomic_write_text  # the manifest is written last, whole
      atomic_write_text(os.path.join(step_dir, MANIFEST), json.dumps(_digests(step_dir)))
    backend.barrier(f"manifest {self.directory} {step}")

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    steps = self.steps()
    return steps[-1] if steps else None

  def problem(self, step: int) -> str | None:
    """Why `step` is not a usable checkpoint, or None if its files check out."""
    step_dir = os.path.join(self.directory, str(step))
    try:
      with open(os.path.join(step_dir, MANIFEST)) as f:
        expected = json.load(f)
    except (OSError, json.JSONDecodeError):
      return "no valid checksum manifest (written partly, or not by vae_jax)"
    actual = _digests(step_dir)
    changed = sorted(k for k in set(expected) | set(actual) if expected.get(k) != actual.get(k))
    return f"{len(changed)} file(s) differ from the manifest, e.g. {changed[0]}" if changed \
        else None

  def restore(self, step: int, like: Any | None = None, verify: bool = True
              ) -> tuple[Any, dict]:
    """(state, meta) at `step`; `like` gives structure, shapes and dtypes.
    verify=False only for a step `newest_good_step` has just verified."""
    problem = self.problem(step) if verify else None
    if problem:
      raise UserError(f"checkpoint {self.directory}/{step} is corrupt: {problem}")
    if like is None:  # the saved shapes, on this process's default device: a run saved
      # on 8 devices loads in a notebook with one (orbax refuses a topology change).
      device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
      is_array = lambda x: hasattr(x, "shape") and hasattr(x, "dtype")
      target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                            self._manager.item_metadata(step)["state"], is_leaf=is_array)
    else:
      target = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    try:
      out = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    except (ValueError, KeyError, TypeError) as e:
      raise UserError(f"checkpoint {self.directory}/{step} does not fit this model "
                      f"({str(e).splitlines()[0][:200]}); use the --workdir of this model's "
                      "run") from None
    return out.state, out.meta

  def newest_good_step(self, warn: bool = True) -> tuple[int | None, list[int]]:
    """(the newest step whose files verify or None, the newer bad steps)."""
    bad = []
    for step in reversed(self.steps()):
      problem = self.problem(step)
      if problem is None:
        return step, bad
      if warn and backend.is_lead():
        warnings.warn(f"skipping checkpoint {self.directory}/{step}: {problem}", stacklevel=3)
      bad.append(step)
    return None, bad

  def restore_newest_good(self, like: Any) -> tuple[int, Any, dict] | None:
    """The newest step that verifies and restores, skipping bad ones with a
    warning; None if there is no step at all; UserError if none is good."""
    step, bad = self.newest_good_step()
    if step is not None:
      state, meta = self.restore(step, like, verify=False)
      for b in bad:
        self._set_aside(b)
      return step, state, meta
    if bad:
      raise UserError(f"no usable checkpoint in {self.directory}: steps {sorted(bad)} are all "
                      "corrupt or partly written; restore them from a backup, or move the "
                      "folder aside to start over")
    return None

  def _set_aside(self, step: int) -> None:
    """Moves a bad step out of orbax's sight (kept for inspection, never deleted)."""
    if backend.is_lead():
      aside = f"{self.directory}_corrupt"
      os.makedirs(aside, exist_ok=True)
      shutil.move(os.path.join(self.directory, str(step)),
                  os.path.join(aside, f"{step}.{time.strftime('%Y%m%d-%H%M%S')}"))
    backend.barrier(f"set aside {self.directory} {step}")
    self._manager.close()
    self._manager = self._new_manager()

  def close(self) -> None:
    self._manager.close()
