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

import contextlib
import errno
import hashlib
import io
import json
import logging
import os
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any

import jax
import orbax.checkpoint as ocp

from vae_jax import backend, writers
from vae_jax.errors import UserError, WriteError

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


def step_problem(step_dir: str) -> str | None:
  """Why the step folder is not a usable checkpoint, or None if its files check out."""
  try:
    with open(os.path.join(step_dir, MANIFEST), "rb") as f:
      expected = json.loads(f.read())
  except (OSError, ValueError):  # missing, unreadable, not JSON, not UTF-8
    return "no valid checksum manifest (written partly, or not by vae_jax)"
  if not isinstance(expected, dict):
    return "no valid checksum manifest (written partly, or not by vae_jax)"
  try:
    actual = _digests(step_dir)
  except OSError as e:
    return f"a file cannot be read ({e.strerror or e})"
  changed = sorted(k for k in set(expected) | set(actual) if expected.get(k) != actual.get(k))
  return f"{len(changed)} file(s) differ from the manifest, e.g. {changed[0]}" if changed \
      else None


def newest_intact(directory: str) -> int | None:
  """The newest step in `directory` whose files verify, read without orbax (so
  without writing anything): what a failed write reports as intact."""
  try:
    steps = sorted((int(n) for n in os.listdir(directory) if n.isdigit()), reverse=True)
  except OSError:
    return None
  return next((s for s in steps if step_problem(os.path.join(directory, str(s))) is None),
              None)


def _tree_bytes(tree: Any) -> int:
  return sum(getattr(leaf, "nbytes", 0) for leaf in jax.tree.leaves(tree))


@contextlib.contextmanager
def _held_output() -> Iterator[None]:
  """Holds back what orbax's threads print while a save runs (absl error logs,
  tracebacks of its event loops): replayed unless the save ends in a WriteError,
  whose one line says it all."""
  records: list[logging.LogRecord] = []

  class Hold(logging.Filter):
    def filter(self, record):
      records.append(record)
      return False

  logger, hold, stderr = logging.getLogger("absl"), Hold(), sys.stderr
  logger.addFilter(hold)
  sys.stderr = held = io.StringIO()
  replay = True
  try:
    yield
  except WriteError:
    replay = False
    raise
  finally:
    sys.stderr = stderr
    logger.removeFilter(hold)
    if replay:
      stderr.write(held.getvalue())
      for record in records:
        logger.handle(record)


class Checkpoints:
  """A directory of step-numbered checkpoints, each {state, meta} + manifest."""

  def __init__(self, directory: str, max_to_keep: int):
    self.directory = os.path.abspath(directory)
    self._max_to_keep = max_to_keep
    self._manager = self._new_manager()

  def _new_manager(self):
    # Orbax would delete the oldest step before the new one's manifest exists:
    # `save` prunes itself, once the new step is whole.
    options = ocp.CheckpointManagerOptions(max_to_keep=None, create=True,
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
    step_dir = os.path.join(self.directory, str(step))
    self._check_room(step_dir, state)
    with _held_output(), writers.writing(step_dir):
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
      self._manager.wait_until_finished()
    if backend.is_lead():  # the manifest is written last, whole
      writers.atomic_write_text(os.path.join(step_dir, MANIFEST),
                                json.dumps(_digests(step_dir)))
    backend.barrier(f"manifest {self.directory} {step}")
    for old in self.steps()[:-self._max_to_keep]:  # a kill before here keeps them all
      with writers.writing(os.path.join(self.directory, str(old))):
        self._manager.delete(old)

  def _check_room(self, step_dir: str, state: Any) -> None:
    """Refuses a save the disk has no room for, before orbax starts it: a save
    that fails midway leaves a partial step folder and prints from its threads."""
    previous = self.latest_step()
    if previous is not None:  # the size of the last save is the best estimate
      need = sum(os.path.getsize(os.path.join(root, f))
                 for root, _, files in os.walk(os.path.join(self.directory, str(previous)))
                 for f in files)
    else:
      need = _tree_bytes(state)
    free = shutil.disk_usage(self.directory).free
    if free < need:
      raise WriteError(step_dir, f"{os.strerror(errno.ENOSPC)}: {free // 1024} KiB free, about "
                       f"{need // 1024} KiB needed")

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    steps = self.steps()
    return steps[-1] if steps else None

  def problem(self, step: int) -> str | None:
    """Why `step` is not a usable checkpoint, or None if its files check out."""
    return step_problem(os.path.join(self.directory, str(step)))

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
      with writers.writing(aside):
        os.makedirs(aside, exist_ok=True)
        shutil.move(os.path.join(self.directory, str(step)),
                    os.path.join(aside, f"{step}.{time.strftime('%Y%m%d-%H%M%S')}"))
    backend.barrier(f"set aside {self.directory} {step}")
    self._manager.close()
    self._manager = self._new_manager()

  def close(self) -> None:
    self._manager.close()
