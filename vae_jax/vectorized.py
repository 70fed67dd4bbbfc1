"""Vectorised sweeps: members that differ only in seed, β or learning rate,
trained as one `jax.vmap`ped program on one device.

Each member keeps everything a separate run has — its own keys, data order,
validation, best and latest checkpoints, metrics, figures and eval.json in its
own workdir — and its numbers equal its separate run's to float tolerance
(the batched matmuls may round differently). The lever is the device: one
dispatch does K members' steps, so small models fill it.
"""

import contextlib
import dataclasses
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vae_jax import backend, evaluation, locks, runs
from vae_jax import config as config_lib
from vae_jax import data as data_lib
from vae_jax import models as model_lib
from vae_jax import train as train_lib
from vae_jax.errors import Interrupted, UserError
from vae_jax.objectives import Objective

# What may differ between the members of one vectorised group.
VECTORIZABLE = ("seed", "objective.beta", "optimizer.learning_rate")


def _shared_part(config: ml_collections.ConfigDict) -> dict:
  flat = config_lib.flatten(config)
  return {k: v for k, v in flat.items() if k not in VECTORIZABLE and k != "sweep_index"}


def groups(configs: list[ml_collections.ConfigDict]) -> list[list[int]]:
  """Indices of configs that can train together, in order of first member."""
  out: dict[str, list[int]] = {}
  for i, c in enumerate(configs):
    out.setdefault(repr(sorted(_shared_part(c).items())), []).append(i)
  return list(out.values())


def _stack(trees: list[Any]) -> Any:
  return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def _member(tree: Any, i: int) -> Any:
  return jax.tree.map(lambda a: a[i], tree)


def make_update(model: model_lib.LatentVariableModel, objective: Objective,
                config: ml_collections.ConfigDict,
                transform, guarded: bool = True) -> Any:
  """The jitted (states (K,...), images, indices (K, m, B), keys (K,), betas (K,),
  learning rates (K,)) -> (states, metrics (K, m)): `train.make_multi_step`
  vmapped over members, each with its own β and learning rate (`guarded`: see
  there; vmapped, the guard's cond computes both branches and selects)."""

  def member(state, images, indices, key, beta, learning_rate):
    step = train_lib.make_multi_step(
        model, dataclasses.replace(objective, beta=beta),
        train_lib.build_optimizer(config.optimizer, learning_rate=learning_rate),
        transform, key, config.train.ema_decay, guarded=guarded)
    return step(state, images, indices)

  return backend.jit_train_step(jax.vmap(member, in_axes=(0, None, 0, 0, 0, 0)),
                                donate_argnums=(0,))


def train_members(configs: list[ml_collections.ConfigDict], workdirs: list[str]) -> list[dict]:
  """Trains the members (one group: see `groups`) together, each in its workdir,
  resuming from their checkpoints; returns their eval.json contents, or for a
  member whose loss turned non-finite under nan_policy='stop' the UserError a
  separate run of it would have raised (the others train on without it). An
  error that ends the group carries those members' errors in `.failed`, by
  position in `configs`."""
  if len(groups(configs)) != 1:
    raise UserError("these members differ in more than "
                    f"{', '.join(VECTORIZABLE)}; train them separately")
  for c, w in zip(configs, workdirs):
    config_lib.validate(c)
    runs.check_writable(w)
  with contextlib.ExitStack() as held:
    for w in workdirs:  # every member's workdir, as its own run would
      held.enter_context(locks.hold(w))
    for c, w in zip(configs, workdirs):
      train_lib.check_config_unchanged(w, c)
    base = configs[0]
    try:
      with jax.default_device(backend.select_device(base.backend)):  # one device
        return _train(configs, workdirs, base)
    except Exception as e:  # a failed write: one line, naming that member's intact steps
      path = os.path.abspath(str(getattr(e, "path", None) or getattr(e, "filename", None) or ""))
      owner = next((w for w in workdirs if path.startswith(os.path.abspath(w) + os.sep)),
                   workdirs[0])
      error = train_lib.write_error(e, owner)
      if error is e:
        raise
      error.failed = getattr(e, "failed", {})
      raise error from None


def _train(configs, workdirs, base) -> list[dict]:
  t = base.train
  data = data_lib.load(base.data, base.model.likelihood)
  model = model_lib.build(base.model, data.spec)
  objective = Objective.from_config(base.objective)
  total_steps = train_lib.num_train_steps(t, len(data.train))
  bias = train_lib.output_bias_from_data(base.model, data)
  initial = [train_lib.initial_state(model, train_lib.build_optimizer(c.optimizer),
                                     train_lib.run_keys(c.seed)[0], t.ema_decay, bias)
             for c in configs]
  files = [train_lib.RunFiles(c, w, data, model, total_steps, state)
           for c, w, state in zip(configs, workdirs, initial)]
  like = initial[0]
  for f in files:
    f.open_writer()
  failed: dict[int, UserError] = {}
  try:
    # Members at different steps (stopped apart, or some trained separately)
    # join as the group reaches each one's step: no member repeats a step, and
    # none needs a checkpoint it may no longer keep.
    # (A member saved past a shortened num_steps counts as at the end.)
    starts = sorted({min(f.start, total_steps) for f in files} | {total_steps})
    for begin, until in zip(starts, starts[1:]):
      active = [i for i, f in enumerate(files) if f.start <= begin and i not in failed]
      if active:
        _loop(files, configs, active, data, model, objective, total_steps, begin, until, failed)
      for i in active:
        files[i].start = until
    # One compiled test estimator for all members (params as an argument).
    e = base.eval
    estimator = evaluation.make_estimator(
        model, None, elbo_samples=e.elbo_samples,
        num_importance_samples=e.num_importance_samples, chunk=e.importance_chunk)
    return [failed[i] if i in failed else
            f.finish(Objective.from_config(c.objective), like, None, estimator)
            for i, (f, c) in enumerate(zip(files, configs))]
  except BaseException as e:  # whatever ends the group, members that failed on their own say so
    e.failed = dict(failed)
    raise
  finally:
    for f in files:
      f.close()


def _loop(files, configs, active, data, model, objective, total_steps, start, until,
          failed: dict[int, UserError]) -> None:
  """Trains the `active` members (positions in `files`) from `start` to `until`
  (where more members join, or the end), leaving each one's state in its
  RunFiles. A member that fails its NaN check under nan_policy='stop' goes
  into `failed`; the others train on without it, as their separate runs would."""
  base = configs[active[0]]
  t = base.train
  train_model = model.computing_in(t.compute_dtype)  # evaluation stays float32
  transform = data_lib.train_transform(data.train_transform, data.raw_levels)
  # Unguarded, as a single run's loop: a stretch with a non-finite step in any
  # member is replayed guarded from the anchor (train.make_multi_step).
  update = make_update(train_model, objective, base, transform, guarded=False)
  guarded_update = None
  estimator = evaluation.make_estimator(model, None, elbo_samples=base.eval.elbo_samples,
                                        num_importance_samples=0, chunk=1)
  live = list(active)  # the members still training
  states = _stack([files[i].state for i in live])

  def members_arrays():
    cs = [configs[i] for i in live]
    return (jnp.stack([files[i].train_key for i in live]),
            jnp.asarray([c.objective.beta for c in cs], jnp.float32),
            jnp.asarray([c.optimizer.learning_rate for c in cs], jnp.float32))

  keys, betas, rates = members_arrays()
  images = jax.device_put(data.train)
  pending: list[dict] = []
  step, last_log_step, last_log_time = start, start, time.time()
  for i in live:
    files[i].start_clock()
  signals = train_lib.StopOnSignal()
  indices_for = lambda begin, end: np.stack([
      data_lib.batch_indices(configs[i].seed, begin, end - begin, len(data.train), t.batch_size)
      for i in live])
  anchor, anchor_step = jax.tree.map(jnp.copy, states), step
  try:
    while step < until:
      end = min(train_lib.next_boundary(step, t, total_steps), until)
      states, metrics = update(states, images, indices_for(step, end), keys, betas, rates)
      pending.append(metrics)
      step = end
      stop = signals.received is not None
      # Where members join, every state is checked and saved, as at a stop.
      is_log, is_eval, is_ckpt = train_lib.due(step, t, total_steps, stop or step == until)
      if not (is_log or is_eval or is_ckpt):
        continue
      host = train_lib.drain(pending, axis=1)
      if host["skipped"].any():
        if guarded_update is None:
          guarded_update = make_update(train_model, objective, base, transform)
        states, pending = train_lib.replay(
            lambda s, a, b: guarded_update(s, images, indices_for(a, b), keys, betas, rates),
            anchor, anchor_step, step, t, total_steps)
        host = train_lib.drain(pending, axis=1)
      rate = (step - last_log_step) * t.batch_size / (time.time() - last_log_time)
      for j, i in enumerate(live):
        f = files[i]
        try:
          row = f.check_finite({name: v[j] for name, v in host.items()}, step,
                               written=is_log or is_eval)
        except UserError as e:  # this member's run ends here; its checkpoints are intact
          failed[i] = e
          continue
        # Each member's own examples/s and training seconds: all advance in the
        # same wall time.
        row.update(num_devices=1, vectorized_members=len(live), examples_per_sec=rate,
                   train_seconds=f.tick())
        state = _member(states, j)
        if is_eval:
          row.update(f.validate(state, step, estimator, None))
        if is_log or is_eval:
          f.writer.write_scalars(step, row)
        if is_ckpt:
          f.save_latest(step, state)
      last_log_step = step
      if stop:
        signum = signals.received or signal.SIGTERM
        raise Interrupted(signum, f"stopped by signal {signum} at step {step}: checkpoints "
                          "written for every member; run the same command to resume")
      if failed.keys() & set(live):
        keep = [j for j, i in enumerate(live) if i not in failed]
        live = [live[j] for j in keep]
        if not live:
          break
        states = jax.tree.map(lambda a: a[np.asarray(keep)], states)
        keys, betas, rates = members_arrays()
      anchor, anchor_step = jax.tree.map(jnp.copy, states), step
      last_log_time = time.time()
  finally:
    signals.restore()
  for j, i in enumerate(live):
    files[i].state = _member(states, j)
