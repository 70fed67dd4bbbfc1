"""Training: the train state, the jitted multi-step update, the loop and resume.

The update is a pure function `(state, train_images, batch_indices) -> (state,
metrics)`: it runs `steps_per_dispatch` steps in one `lax.scan` on the device,
with the training set resident there and the state donated. Step s draws its
randomness from fold_in(key, s) and its batch from the (seed, epoch)
permutation, so a run resumed from a checkpoint repeats the uninterrupted one
bit for bit (same machine and software).
"""

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from vae_jax import (
  backend,
  checkpoints,
  evaluation,
  linear_gaussian,
  locks,
  plots,
  provenance,
  runs,
  writers,
)
from vae_jax import config as config_lib
from vae_jax import data as data_lib
from vae_jax import models as model_lib
from vae_jax.errors import Interrupted, UserError, WriteError
from vae_jax.objectives import Objective


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any = None  # an exponential moving average of params, if kept

  @property
  def eval_params(self) -> Any:
    """What evaluation uses: the EMA when the run keeps one."""
    return self.params if self.ema_params is None else self.ema_params


def learning_rate_schedule(c: ml_collections.ConfigDict, peak: Any = None) -> Any:
  """The rate (a number or an optax schedule of the step) of `config.optimizer`;
  `peak` (e.g. a traced value, one per vmapped member) overrides its rate."""
  peak = c.learning_rate if peak is None else peak
  if c.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, peak, c.warmup_steps,
                                              c.warmup_steps + c.decay_steps)
  if c.schedule == "piecewise":  # the rate is multiplied by scale_i from boundary_i on
    return optax.piecewise_constant_schedule(
        peak, dict(zip(map(int, c.boundaries), map(float, c.boundary_scales))))
  if c.warmup_steps:
    return optax.linear_schedule(0.0, peak, c.warmup_steps)
  return peak


def build_optimizer(c: ml_collections.ConfigDict, learning_rate: Any = None
                    ) -> optax.GradientTransformation:
  """The optax optimiser of `config.optimizer`, with its schedule and clipping;
  `learning_rate` overrides the peak rate (see `learning_rate_schedule`)."""
  lr = learning_rate_schedule(c, learning_rate)
  opt = {"adam": lambda: optax.adam(lr, eps=c.adam_eps),
         "adamw": lambda: optax.adamw(lr, eps=c.adam_eps, weight_decay=c.weight_decay),
         "sgd": lambda: optax.sgd(lr)}[c.name]()
  if c.grad_clip_norm is not None:
    opt = optax.chain(optax.clip_by_global_norm(c.grad_clip_norm), opt)
  return opt


def all_finite(tree: Any) -> jax.Array:
  """Whether every element of every array in `tree` is finite.

  One read of each array, as a product with a vector of ones (a column sum):
  it is inf or NaN if any element is, and XLA's CPU backend runs it at memory
  speed, unlike its reductions (is-finite and all, or a sum: 2-3× as long). A
  column whose sum overflows float32 (|Σ| > 3.4e38) counts as non-finite too.
  """
  finite = jnp.asarray(True)
  for a in jax.tree.leaves(tree):
    a = a.reshape(1, -1) if a.ndim < 2 else a.reshape(a.shape[0], -1)
    column_sums = jnp.ones((a.shape[0],), a.dtype) @ a
    finite = finite & jnp.isfinite(jnp.sum(column_sums * 0.0))
  return finite


def take_rows(images: jax.Array, idx: jax.Array) -> jax.Array:
  """images[idx], gathered as rows of the flattened images: on XLA:CPU a batch
  of 512 MNIST images took 50 µs this way and 65 µs as (28, 28, 1) blocks."""
  rows = images.reshape(images.shape[0], -1)[idx]
  return rows.reshape(idx.shape + images.shape[1:])


def make_multi_step(model: model_lib.LatentVariableModel, objective: Objective,
                    optimizer: optax.GradientTransformation,
                    transform: Callable[[jax.Array, jax.Array], jax.Array],
                    key: jax.Array, ema_decay: float | None = None,
                    gather: Callable = take_rows,
                    guarded: bool = True) -> Callable:
  """The pure (state, train_images, indices (m, B)) -> (state, metrics (m,)):
  m training steps in one lax.scan. Step s draws its randomness from
  fold_in(key, s); `gather` takes the batch from the training images.

  guarded: a step whose loss or gradient is not finite leaves the state as it
  was, and `skipped` counts it. Unguarded, every step is applied, and
  `skipped` marks a non-finite loss and, at the last step, a non-finite end
  state (parameters or optimiser moments). Non-finite values stick (x + inf,
  x + NaN, and Adam's moments of either or of an overflowing g² stay
  non-finite), so an unmarked dispatch met no non-finite loss or gradient
  and is what the guarded dispatch gives. (One narrow difference: the guard
  also skips a finite gradient whose column sums overflow float32, see
  `all_finite`; unguarded, such a step is seen only where it leaves a
  parameter or moment non-finite, as Adam's g² does.) The training loop runs
  unguarded and replays a marked stretch guarded (`replay`): the guard's
  lax.cond made XLA copy the parameters and moments at every step.
  """

  def apply(grads, state: TrainState):
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema_decay is not None:
      ema = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, ema, params)
    return params, opt_state, ema

  def keep(grads, state: TrainState):
    del grads
    return state.params, state.opt_state, state.ema_params

  def step_fn(state: TrainState, train_images: jax.Array, batch_idx: jax.Array):
    data_rng, loss_rng = jax.random.split(jax.random.fold_in(key, state.step))
    x = transform(gather(train_images, batch_idx), data_rng)
    loss = lambda p: objective.loss(model, p, x, loss_rng, state.step)
    (loss_value, metrics), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
    if guarded:
      # A lax.cond, not jnp.where: selecting the new or the old state kept both
      # alive, and XLA copied every Adam moment at each step.
      finite = jnp.isfinite(loss_value) & all_finite(grads)
      params, opt_state, ema = jax.lax.cond(finite, apply, keep, grads, state)
    else:
      finite = jnp.isfinite(loss_value)
      params, opt_state, ema = apply(grads, state)
    metrics["skipped"] = 1.0 - finite.astype(jnp.float32)
    return TrainState(state.step + 1, params, opt_state, ema), metrics

  def multi_step(state, train_images, indices):
    if indices.shape[0] == 1:
      # No loop for one step: XLA:CPU ran a convolutional model's step 12×
      # slower inside a while loop (a scan of length 1 is still one) than
      # outside it, so conv configs dispatch one step at a time.
      state, metrics = step_fn(state, train_images, indices[0])
      metrics = jax.tree.map(lambda m: m[None], metrics)
    else:
      state, metrics = jax.lax.scan(lambda s, idx: step_fn(s, train_images, idx), state,
                                    indices)
    if not guarded:  # one read of the parameters and moments per dispatch
      bad_end = 1.0 - all_finite((state.params, state.opt_state)).astype(jnp.float32)
      metrics["skipped"] = metrics["skipped"].at[-1].max(bad_end)
    return state, metrics
  return multi_step


def make_update(model: model_lib.LatentVariableModel, objective: Objective,
                optimizer: optax.GradientTransformation,
                transform: Callable[[jax.Array, jax.Array], jax.Array],
                key: jax.Array, ema_decay: float | None = None,
                mesh: jax.sharding.Mesh | None = None, guarded: bool = True) -> Callable:
  """`make_multi_step`, jitted with the state donated (`backend.jit_train_step`).

  With a mesh of several devices, the indices, and so each batch, are split
  over its 'data' axis and the state is replicated. `train_images` is then
  `backend.on_each_device` of a process's shard, and each device gathers its
  part of the batch from its own block (its indices are into that shard).
  """
  platform = None if mesh is None else mesh.devices.flat[0].platform
  if mesh is None or mesh.size == 1:
    return backend.jit_train_step(make_multi_step(model, objective, optimizer, transform, key,
                                                  ema_decay, guarded=guarded),
                                  platform, donate_argnums=(0,))
  from jax.sharding import NamedSharding, PartitionSpec
  gather = jax.shard_map(take_rows, mesh=mesh,
                         in_specs=(PartitionSpec("data"),) * 2, out_specs=PartitionSpec("data"))
  multi_step = make_multi_step(model, objective, optimizer, transform, key, ema_decay, gather,
                               guarded)
  replicated = NamedSharding(mesh, PartitionSpec())
  return backend.jit_train_step(
      multi_step, platform, donate_argnums=(0,),
      in_shardings=(replicated, NamedSharding(mesh, PartitionSpec("data")),
                    NamedSharding(mesh, PartitionSpec(None, "data"))),
      out_shardings=(replicated, replicated))


class StopOnSignal:
  """Notes SIGTERM/SIGINT (preemption, Ctrl-C) so the loop can checkpoint at the
  end of the current dispatch and exit, instead of dying mid-step."""

  def __init__(self):
    self.received: int | None = None
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._note)

  def _note(self, signum, frame):
    del frame
    self.received = signum

  def restore(self) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}


def replay(dispatch: Callable[[Any, int, int], tuple[Any, dict]], anchor: Any, begin: int,
           end: int, t: ml_collections.ConfigDict, total: int) -> tuple[Any, list[dict]]:
  """The dispatches from step `begin` to `end` again, cut as before
  (`next_boundary`), from `anchor`, the state at `begin`: `dispatch(state, a, b)`
  runs steps a..b (guarded, where a stretch met a non-finite step). Returns the
  state at `end` and the dispatches' metrics."""
  state, metrics = anchor, []
  while begin < end:
    boundary = min(next_boundary(begin, t, total), end)
    state, m = dispatch(state, begin, boundary)
    metrics.append(m)
    begin = boundary
  return state, metrics


def next_boundary(step: int, t: ml_collections.ConfigDict, total: int) -> int:
  """Where the dispatch starting at `step` ends: a function of `step` alone, so a
  resumed run cuts its steps into the same scans as the uninterrupted run."""
  end = total
  for every in (t.steps_per_dispatch, t.log_every_steps, t.eval_every_steps,
                t.checkpoint_every_steps):
    end = min(end, (step // every + 1) * every)
  return end


def due(step: int, t: ml_collections.ConfigDict, total: int, stop: bool
        ) -> tuple[bool, bool, bool]:
  """(log, evaluate, checkpoint) at the end of the dispatch ending at `step`;
  a stop (a signal) forces the checkpoint."""
  last = step == total
  return (step % t.log_every_steps == 0 or last, step % t.eval_every_steps == 0 or last,
          step % t.checkpoint_every_steps == 0 or last or stop)


def drain(pending: list[dict], axis: int = 0) -> dict[str, np.ndarray]:
  """The metrics of the pending dispatches on the host, concatenated along
  their step axis (0, or 1 behind a members axis); empties `pending`."""
  host = {k: np.concatenate([np.asarray(m[k]) for m in jax.device_get(pending)], axis=axis)
          for k in pending[0]}
  pending.clear()
  return host


def num_train_steps(t: ml_collections.ConfigDict, num_train: int) -> int:
  steps_per_epoch = num_train // t.batch_size
  if steps_per_epoch == 0:
    raise UserError(f"train.batch_size={t.batch_size} exceeds the {num_train} training "
                    f"examples; lower it to at most {num_train}")
  return t.num_steps if t.num_steps is not None else t.num_epochs * steps_per_epoch


def check_config_unchanged(workdir: str, config: ml_collections.ConfigDict) -> None:
  path = os.path.join(workdir, runs.CONFIG_FILE)
  if not os.path.exists(path):
    return
  old = runs.flatten_dict(runs.read_json(path, runs.CONFIG_KEYS)["config"])
  new = config_lib.flatten(config)
  changed = config_lib.changed_fields(old, new)
  if changed:
    shown = ", ".join(f"{k} ({old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r})"
                      for k in changed[:5])
    raise UserError(f"workdir {workdir!r} holds a run with a different config: {shown}; use "
                    "a new --workdir, or the same config to resume")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the VAE of `config` in `workdir` (resuming if possible), then evaluates
  the best checkpoint on the test split once; returns eval.json's contents."""
  config_lib.validate(config)
  mesh = backend.data_mesh(config.backend)
  if config.train.batch_size % mesh.size:
    raise UserError(f"train.batch_size={config.train.batch_size} does not split over the "
                    f"{mesh.size} {config.backend} devices; make it a multiple of {mesh.size}")
  runs.check_writable(workdir)
  with locks.hold(workdir, enabled=backend.is_lead()):  # one live run per workdir
    check_config_unchanged(workdir, config)
    try:
      with jax.default_device(mesh.local_devices[0]):
        return _train_and_evaluate(config, workdir, mesh)
    except Exception as e:  # a full disk or a path blocked mid-run: say where, keep the rest
      error = write_error(e, workdir)
      if error is e:
        raise
      raise error from None


def write_error(error: Exception, workdir: str) -> Exception:
  """A failed write (however a library wrapped it) as the one WriteError line
  naming what in `workdir` is intact; any other error as it was."""
  reason = writers.write_failure(error)
  if reason is None:
    return error
  path = error.path if isinstance(error, WriteError) else (
      getattr(error, "filename", None) or workdir)
  latest = checkpoints.newest_intact(os.path.join(workdir, "checkpoints"))
  best = checkpoints.newest_intact(os.path.join(workdir, "best"))
  intact = (f"the checkpoint of step {latest} is intact" if latest is not None
            else "no checkpoint yet") + ("" if best is None else f" (best: step {best})")
  return WriteError(str(path), reason, intact)


class RunFiles:
  """One run's keys and what it writes in its workdir: config record,
  checkpoints (latest and best), metrics, images and eval.json. Opening it
  restores the newest good checkpoint (`start`, `state`); a vectorised sweep
  keeps one per member."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, data: data_lib.Data,
               model: model_lib.LatentVariableModel, total_steps: int, state: TrainState):
    t = config.train
    self.config, self.workdir, self.data, self.model = config, workdir, data, model
    self.total_steps, self.lead = total_steps, backend.is_lead()
    self.init_key, self.train_key, self.eval_key, image_key = run_keys(config.seed)
    self.image_keys = jax.random.split(image_key, config.eval.num_images)  # fixed prior draws
    self.latest = checkpoints.Checkpoints(os.path.join(workdir, "checkpoints"),
                                          t.keep_checkpoints)
    self.best = checkpoints.Checkpoints(os.path.join(workdir, "best"), 1)
    self.env = provenance.environment()
    # train_seconds: wall time of the training loop (validation and checkpoints
    # included, the test evaluation not), summed over resumes.
    self.meta = {"best_elbo": -math.inf, "best_step": None, "train_seconds": 0.0}
    self.start, self.state = 0, state
    restored = self.latest.restore_newest_good(state)
    if restored:
      self.start, self.state, self.meta = restored
      if self.meta.get("environment") != self.env:
        warnings.warn(f"resuming step {self.start} in a different environment "
                      f"({self.meta.get('environment')} -> {self.env}): results may differ "
                      "in the last bits from an uninterrupted run", stacklevel=3)
    record = {"config": runs.config_to_dict(config), "data_spec": {
        "image_shape": list(data.spec.image_shape), "num_levels": data.spec.num_levels,
        "dequantized": data.spec.dequantized}, "num_train_examples": len(data.train),
        "total_steps": total_steps, "num_processes": jax.process_count(),
        "provenance": provenance.provenance()}
    self.eval_path = os.path.join(workdir, runs.EVAL_FILE)
    self.result = runs.read_eval(self.eval_path)
    self.finished = self.start >= total_steps and self.result is not None
    if self.lead and not self.finished:  # a finished run's record stays as it was
      if self.result is None and os.path.exists(self.eval_path):
        writers.set_aside(self.eval_path)  # damaged: kept, and the evaluation runs again
      writers.atomic_write_text(os.path.join(workdir, runs.CONFIG_FILE),
                                json.dumps(record, indent=2) + "\n")
      with writers.writing(os.path.join(workdir, "images")):
        os.makedirs(os.path.join(workdir, "images"), exist_ok=True)
    backend.barrier("config written")
    self.writer = writers.NullWriter()

  def start_clock(self) -> None:
    self._clock = (time.time(), self.meta.get("train_seconds", 0.0))

  def tick(self) -> float:
    """The run's training seconds so far, kept in the checkpoints' metadata."""
    started, before = self._clock
    self.meta["train_seconds"] = before + time.time() - started
    return self.meta["train_seconds"]

  def open_writer(self) -> None:
    if self.lead:
      self.writer = writers.MetricWriter(self.workdir, resume_step=self.start)

  def check_finite(self, host: dict[str, np.ndarray], step: int, written: bool
                   ) -> dict[str, float]:
    """The row of the steps since the last row: those a checkpoint-only
    boundary drained without a row (kept in the checkpoint's metadata, so a
    resumed run's next row covers the same steps), then `host`'s; after the
    NaN policy: with 'stop' a non-finite step of `host` ends the run naming it
    (the latest checkpoint is intact; a carried one was skipped under 'skip',
    before it). `written`: whether the row is written; if not, its steps are
    kept for the next."""
    unlogged = self.meta.pop("unlogged", None)
    carried = len(unlogged["loss"]) if unlogged else 0
    if unlogged:
      host = {k: np.concatenate([np.asarray(unlogged[k], v.dtype), v]) for k, v in host.items()}
    bad = np.flatnonzero(host["skipped"])
    new_bad = bad[bad >= carried]
    if new_bad.size and self.config.train.nan_policy == "stop":
      first_bad = step - len(host["loss"]) + int(new_bad[0]) + 1
      kept = self.latest.latest_step()
      raise UserError(f"the loss or its gradient became non-finite (loss "
                      f"{host['loss'][new_bad[0]]}) at step {first_bad}; "
                      + (f"the checkpoint of step {kept} is intact" if kept is not None
                         else "no checkpoint was written yet")
                      + "; rerun with --config.train.nan_policy=skip to skip such steps, or "
                      "lower optimizer.learning_rate or set optimizer.grad_clip_norm in a new "
                      "--workdir")
    if not written:
      self.meta["unlogged"] = {k: np.asarray(v).tolist() for k, v in host.items()}
    good = host["skipped"] == 0
    row = {k: float(np.mean(v[good])) if good.any() else float("nan")
           for k, v in host.items() if k != "skipped"}
    row["skipped_steps"] = int(bad.size)
    return row

  def validate(self, state: TrainState, step: int, estimator, mesh) -> dict[str, float]:
    """Validation ELBO; a new best is saved as `best/`; a sample grid."""
    e = self.config.eval
    val = evaluation.evaluate(self.model, state.eval_params, self.data.validation,
                              self.eval_key, batch_size=e.batch_size,
                              elbo_samples=e.elbo_samples,
                              estimator=estimator, mesh=mesh)
    if val["elbo"]["value"] > self.meta["best_elbo"]:
      self.meta.update(best_elbo=val["elbo"]["value"], best_step=step)
      self.best.save(step, state, dict(self.meta, environment=self.env))
    if self.lead and self.config.eval.figures:  # from a host copy: the others are not in this
      grid = plots.sample_grid(self.model, backend.gather(state.eval_params), self.image_keys)
      self.writer.write_images(step, {"samples": grid})
      path = os.path.join(self.workdir, "images", f"samples_step_{step:08d}.png")
      with writers.writing(path):
        plots.save_png(path, grid)
    return {"val_elbo": val["elbo"]["value"], "val_rate": val["rate"],
            "val_distortion": val["distortion"]}

  def save_latest(self, step: int, state: TrainState) -> None:
    self.latest.save(step, state, dict(self.meta, environment=self.env))

  def finish(self, objective: Objective, like: TrainState, mesh, estimator=None) -> dict:
    """Evaluates the best checkpoint on the test split once; writes figures and
    eval.json; returns its contents. `estimator`: a compiled one to share
    (`evaluation.make_estimator` with eval.num_importance_samples)."""
    config, model, data = self.config, self.model, self.data
    best_step, _ = self.best.newest_good_step()
    chosen = "best"
    if best_step is not None:
      best_state, _ = self.best.restore(best_step, like=like, verify=False)
    else:  # lost or damaged: the newest intact training checkpoint stands in
      chosen = "latest (best/ unusable)"
      best_step, _ = self.latest.newest_good_step(warn=False)
      if best_step is None:
        raise UserError(f"no usable checkpoint in {self.best.directory} or "
                        f"{self.latest.directory} to evaluate; train again in a new --workdir")
      warnings.warn(f"no usable best checkpoint in {self.best.directory}: evaluating the "
                    f"newest intact one, {self.latest.directory}/{best_step}, instead",
                    stacklevel=2)
      best_state, _ = self.latest.restore(best_step, like=like, verify=False)
    eval_start = time.time()
    n = config.eval.test_examples  # None: all of them
    test_images = data.test[:n]
    test_labels = None if data.test_labels is None else data.test_labels[:n]
    test = evaluation.full_evaluation(model, best_state.eval_params, test_images,
                                      jax.random.fold_in(self.eval_key, 1), config.eval,
                                      mesh=mesh, objective=objective, estimator=estimator)
    host_params = backend.gather(best_state.eval_params)
    exact = linear_gaussian.report(model, host_params, data.train, test_images, test)
    if exact is not None:
      test["linear_gaussian"] = exact
    if jax.process_count() > 1:  # the replicas must agree, or a number below is a lie
      fingerprint = provenance.fingerprint(
          jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), best_state.eval_params))
      print(f"process {jax.process_index()} of {jax.process_count()}: step "
            f"{self.total_steps}, local parameter copy sha256 {fingerprint}", file=sys.stderr)
    if self.lead and config.eval.figures:
      self.writer.flush()
      figures = plots.run_figures(model, host_params, test_images, test_labels,
                                  self.image_keys, writers.read_jsonl(self.writer.path), test)
      for name, image in figures.items():
        path = os.path.join(self.workdir, "images", f"{name}.png")
        with writers.writing(path):
          plots.save_png(path, image,
                         scale=1 if name in ("training_curves", "kl_per_dimension",
                                             "kl_per_group", "latent_scatter") else 4)
      self.writer.write_images(self.total_steps, figures)
    result = {"split": "test", "checkpoint": chosen, "step": int(best_step),
              "params": "raw" if config.train.ema_decay is None else "ema",
              "validation_elbo": self.meta["best_elbo"], "test": test,
              "train_seconds": self.meta.get("train_seconds"),
              "eval_seconds": time.time() - eval_start,
              "provenance": provenance.provenance()}
    final = {"test_elbo": test["elbo"]["value"], "test_nll": test["nll"]["value"],
             "test_nll_bits_per_dim": test["nll"]["bits_per_dim"], "test_rate": test["rate"],
             "test_distortion": test["distortion"], "test_active_units": test["active_units"],
             **{f"test_kl_{g}": v["kl"] for g, v in test["groups"].items()}}
    if "mutual_information" in test:
      final["test_mutual_information"] = test["mutual_information"]
    final.update({f"test_{k}": v for k, v in test.get("gaps", {}).items() if k.endswith("gap")})
    self.writer.write_scalars(self.total_steps, final, jsonl=False)  # eval.json has them
    self.close()
    if self.lead:
      writers.atomic_write_text(self.eval_path, json.dumps(result, indent=2) + "\n")
      print(evaluation.format_evaluation(result))
    backend.barrier("eval written")
    return result

  def close(self) -> None:
    self.writer.close()
    self.latest.close()
    self.best.close()


def process_start_time() -> float:
  """When this process started (time.time()'s clock)."""
  import psutil
  return psutil.Process().create_time()


# Runs this process has started: the first one's time to first step counts from
# the process's start (imports included), a later one's (members of a sweep run
# one after another in one process) from its own start.
_runs_started = 0


def run_keys(seed: int) -> jax.Array:
  """A run's four keys, from its seed: initialisation, training, evaluation, images."""
  return jax.random.split(jax.random.key(seed), 4)


def initial_state(model: model_lib.LatentVariableModel, optimizer: optax.GradientTransformation,
                  init_key: jax.Array, ema_decay: float | None,
                  output_bias: np.ndarray | None = None) -> TrainState:
  """Step 0. `output_bias`: the x-decoder's last bias (`output_bias_from_data`)."""
  params = model.init(init_key)
  if output_bias is not None:
    params = model.with_output_bias(params, output_bias)
  return TrainState(jnp.asarray(0, jnp.int32), params, optimizer.init(params),
                    None if ema_decay is None else jax.tree.map(jnp.copy, params))


def output_bias_from_data(model_config: ml_collections.ConfigDict,
                          data: data_lib.Data) -> np.ndarray | None:
  """With model.output_bias=data_mean, the logit of the training set's mean
  pixel (clipped to [0.001, 0.999], as the IWAE paper's code did), the same on
  every process: it starts the decoder at the data's marginal, so the latents
  are not first pushed to explain the mean image away (without it the IWAE
  paper's two-layer tanh stack collapses to a KL of a few nats)."""
  if model_config.output_bias != "data_mean":
    return None
  total, count = data_lib.pixel_sums(data)
  if jax.process_count() > 1:
    total, count = jax.tree.map(lambda a: np.sum(a, axis=0),
                                backend.gather((total[None], np.asarray([count]))))
  p = np.clip(total / count, 1e-3, 1 - 1e-3)
  return np.log(p / (1 - p)).astype(np.float32)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                        mesh: jax.sharding.Mesh) -> dict:
  global _runs_started
  origin = process_start_time() if _runs_started == 0 else time.time()
  _runs_started += 1
  t = config.train
  lead, num_processes = backend.is_lead(), jax.process_count()
  data = data_lib.load(config.data, config.model.likelihood,
                       shard=(jax.process_index(), num_processes))
  model = model_lib.build(config.model, data.spec)
  objective = Objective.from_config(config.objective)
  optimizer = build_optimizer(config.optimizer)
  # A multi-process run: each process draws batch_size / P examples per step
  # from its own shard, in its own order; P = 1 is the single-process run.
  local_batch = t.batch_size // num_processes
  stream = None if num_processes == 1 else jax.process_index()
  total_steps = num_train_steps(t, len(data.train) * num_processes)

  state = initial_state(model, optimizer, run_keys(config.seed)[0], t.ema_decay,
                        output_bias_from_data(config.model, data))
  if mesh.size > 1:  # replicated over the mesh (and restored so by orbax)
    state = jax.tree.map(lambda a: backend.global_array(mesh, jax.sharding.PartitionSpec(), a),
                         state)
  run = RunFiles(config, workdir, data, model, total_steps, state)
  if run.finished:
    if lead:
      print(f"run in {workdir} already finished at step {run.start}; results in "
            f"{run.eval_path}")
    run.close()
    return run.result
  start, state = run.start, run.state
  run.open_writer()
  try:
    estimator = evaluation.make_estimator(model, mesh, elbo_samples=config.eval.elbo_samples,
                                          num_importance_samples=0, chunk=1)
    if start < total_steps:
      transform = data_lib.train_transform(data.train_transform, data.raw_levels)
      # Unguarded dispatches; a stretch with a non-finite step is replayed guarded
      # from the state at the stretch's start, the anchor (see make_multi_step).
      train_model = model.computing_in(t.compute_dtype)  # evaluation stays float32
      update = make_update(train_model, objective, optimizer, transform, run.train_key,
                           t.ema_decay, mesh, guarded=False)
      guarded_update = None
      if mesh.size > 1:  # this process's shard on each of its devices
        train_images = backend.on_each_device(mesh, data.train)
      else:
        train_images = jax.device_put(data.train)
      pending: list[dict] = []
      step, last_log_step, last_log_time = start, start, time.time()
      run.start_clock()
      bar = tqdm.tqdm(total=total_steps, initial=start, unit="step",
                      disable=not (t.progress_bar and lead), file=sys.stderr,
                      dynamic_ncols=True)
      signals = StopOnSignal()

      def indices_for(begin: int, end: int):
        indices = data_lib.batch_indices(config.seed, begin, end - begin, len(data.train),
                                         local_batch, stream)
        if mesh.size > 1:
          indices = backend.global_array(mesh, jax.sharding.PartitionSpec(None, "data"),
                                         indices)
        return indices

      anchor, anchor_step = jax.tree.map(jnp.copy, state), step
      first_step = None
      while step < total_steps:
        end = next_boundary(step, t, total_steps)
        state, metrics = update(state, train_images, indices_for(step, end))
        pending.append(metrics)
        if step == start:  # once: what the run really ran on, for its metrics
          num_devices = len(jax.tree.leaves(state.params)[0].sharding.device_set)
          # Seconds from the process's start to its first dispatch's end (imports,
          # data, compilation): what a user waits before training starts.
          jax.block_until_ready(metrics)
          first_step = time.time() - origin
        bar.update(end - step)
        step = end
        stop = signals.received is not None
        if num_processes > 1:  # a signal to any process stops all at the same step
          stop = bool(np.any(backend.gather(np.array([stop], np.int32))))
        is_log, is_eval, is_ckpt = due(step, t, total_steps, stop)
        if not (is_log or is_eval or is_ckpt):
          continue
        # Everything written from here on depends on this state: check it first.
        host = drain(pending)
        if host["skipped"].any():
          if guarded_update is None:
            guarded_update = make_update(train_model, objective, optimizer, transform,
                                         run.train_key, t.ema_decay, mesh)
          state, pending = replay(
              lambda s, a, b: guarded_update(s, train_images, indices_for(a, b)),
              anchor, anchor_step, step, t, total_steps)
          host = drain(pending)
        row = run.check_finite(host, step, written=is_log or is_eval)
        row["num_devices"] = num_devices
        if first_step is not None and (is_log or is_eval):  # the first row written
          row["time_to_first_step"], first_step = first_step, None
        row["train_seconds"] = run.tick()
        row["examples_per_sec"] = ((step - last_log_step) * t.batch_size
                                   / (time.time() - last_log_time))
        last_log_step = step
        if is_eval:
          row.update(run.validate(state, step, estimator, mesh))
        if is_log or is_eval:
          run.writer.write_scalars(step, row)
          bar.set_postfix(loss=f"{row['loss']:.2f}", ex_per_s=f"{row['examples_per_sec']:.0f}")
        if is_ckpt:
          run.save_latest(step, state)
        if stop:
          signals.restore()
          signum = signals.received or signal.SIGTERM  # (received by another process)
          raise Interrupted(signum, f"stopped by signal {signum} at step "
                            f"{step}: checkpoint written to {run.latest.directory}; run the "
                            "same command to resume")
        anchor, anchor_step = jax.tree.map(jnp.copy, state), step
        last_log_time = time.time()  # examples/s counts training, not eval or saving
      signals.restore()
      bar.close()
    # The test split is evaluated once, on the checkpoint chosen by validation.
    return run.finish(objective, state, mesh)
  finally:
    with contextlib.suppress(WriteError):  # on the way out of another error: that one counts
      run.writer.close()
