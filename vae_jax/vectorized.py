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
  resuming from their checkpoints; returns their eval.json contents."""
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
  # Members resume together, from the newest step all of them have.
  start = min(f.start for f in files)
  for f, state in zip(files, initial):
    if f.start > start:
      f.state, f.meta = (state, f.meta) if start == 0 else f.latest.restore(start, like=like)
      f.start = start
  for f in files:
    f.open_writer()
  try:
    if start < total_steps:
      _loop(files, configs, data, model, objective, total_steps, start)
    # One compiled test estimator for all members (params as an argument).
    e = base.eval
    estimator = evaluation.make_estimator(
        model, None, elbo_samples=e.elbo_samples,
        num_importance_samples=e.num_importance_samples, chunk=e.importance_chunk)
    return [f.finish(Objective.from_config(c.objective), like, None, estimator)
            for f, c in zip(files, configs)]
  finally:
    for f in files:
      f.close()


def _loop(files, configs, data, model, objective, total_steps, start) -> None:
  t = configs[0].train
  k = len(files)
  train_model = model.computing_in(t.compute_dtype)  # evaluation stays float32
  transform = data_lib.train_transform(data.train_transform, data.raw_levels)
  # Unguarded, as a single run's loop: a stretch with a non-finite step in any
  # member is replayed guarded from the anchor (train.make_multi_step).
  update = make_update(train_model, objective, configs[0], transform, guarded=False)
  guarded_update = None
  estimator = evaluation.make_estimator(model, None, elbo_samples=configs[0].eval.elbo_samples,
                                        num_importance_samples=0, chunk=1)
  states = _stack([f.state for f in files])
  keys = jnp.stack([f.train_key for f in files])
  betas = jnp.asarray([c.objective.beta for c in configs], jnp.float32)
  rates = jnp.asarray([c.optimizer.learning_rate for c in configs], jnp.float32)
  images = jax.device_put(data.train)
  pending: list[dict] = []
  step, last_log_step, last_log_time = start, start, time.time()
  signals = train_lib.StopOnSignal()
  indices_for = lambda begin, end: np.stack([
      data_lib.batch_indices(c.seed, begin, end - begin, len(data.train), t.batch_size)
      for c in configs])
  anchor, anchor_step = jax.tree.map(jnp.copy, states), step
  try:
    while step < total_steps:
      end = train_lib.next_boundary(step, t, total_steps)
      states, metrics = update(states, images, indices_for(step, end), keys, betas, rates)
      pending.append(metrics)
      step = end
      stop = signals.received is not None
      is_log, is_eval, is_ckpt = train_lib.due(step, t, total_steps, stop)
      if not (is_log or is_eval or is_ckpt):
        continue
      host = train_lib.drain(pending, axis=1)
      if host["skipped"].any():
        if guarded_update is None:
          guarded_update = make_update(train_model, objective, configs[0], transform)
        states, pending = train_lib.replay(
            lambda s, a, b: guarded_update(s, images, indices_for(a, b), keys, betas, rates),
            anchor, anchor_step, step, t, total_steps)
        host = train_lib.drain(pending, axis=1)
      rate = (step - last_log_step) * t.batch_size / (time.time() - last_log_time)
      for i, f in enumerate(files):
        row = f.check_finite({name: v[i] for name, v in host.items()}, step)
        # Each member's own examples/s: all K advance in the same wall time.
        row.update(num_devices=1, vectorized_members=k, examples_per_sec=rate)
        state = _member(states, i)
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
      anchor, anchor_step = jax.tree.map(jnp.copy, states), step
      last_log_time = time.time()
  finally:
    signals.restore()
