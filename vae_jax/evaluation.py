"""Test-set estimates with two errors each: across examples and Monte Carlo.

For each example n, with z_i ~ q(z|x_n) and w_i = p(x_n, z_i) / q(z_i|x_n):

  ELBO_n  ≈ (1/S) Σ_s [log p(x_n|z_s) - KL(q ‖ p)]   (or log w_s with MC KL)
  log p̂_n = log (1/k) Σ_i w_i                        (Burda et al. 2016, eq. 8)

log p̂_n is streamed over chunks of samples with a running log-sum-exp, so the
memory is set by the chunk, not by k. Its Monte Carlo variance comes from the
delta method, Var[log w̄] ≈ s²_w / (k w̄²) = (Σw² / (Σw)² - 1/k) · k/(k - 1),
with s²_w the weights' sample variance (ddof=1, as the ELBO's; none at k = 1). A dataset
figure, the mean over N examples, is reported with
  se      = std_n(estimate_n) / √N            (the spread of the data)
  mc_err  = √(Σ_n Var_MC[estimate_n]) / N      (the sampling noise of the number)
and in bits per dimension, figure / (D ln 2). Matmuls run at 'highest'
precision: a reported number must not depend on a backend's fast default.
"""

import dataclasses
import json
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from vae_jax import backend, diagnostics, objectives, provenance, runs, writers
from vae_jax import data as data_lib
from vae_jax.errors import UserError
from vae_jax.models import LatentVariableModel, Params


def example_estimates(model: LatentVariableModel, params: Params, x: jax.Array,
                      rng: jax.Array, *, elbo_samples: int, analytic_kl: bool,
                      num_importance_samples: int, chunk: int) -> dict[str, jax.Array]:
  """Per-example ELBO and log p̂ with their Monte Carlo variances (one example),
  each group's KL (`kl/<g>`, and per unit `kl_per_unit/<g>` where it has a closed
  form) and posterior parameters (`q_mean/<g>`, `q_log_var/<g>`)."""
  elbo_rng, is_rng = jax.random.split(rng)
  d = model.draws(params, x, elbo_rng, elbo_samples)
  if analytic_kl:
    objectives.check_closed_form_kl(d)
  kl_groups = d.kl_analytic_per_group() if analytic_kl else d.kl_mc_per_group()
  kl_draw = sum(kl_groups.values())
  per_sample = d.log_px_z - kl_draw  # with the Monte Carlo KL: the log-weights
  out = {"elbo": jnp.mean(per_sample),
         "elbo_mc_var": jnp.var(per_sample, ddof=1) / elbo_samples if elbo_samples > 1
                        else jnp.nan,
         "recon": jnp.mean(d.log_px_z), "kl": jnp.mean(kl_draw)}
  out.update({f"kl/{g}": jnp.mean(v) for g, v in kl_groups.items()})
  out.update({f"kl_per_unit/{g}": jnp.mean(v, axis=0) for g, v in d.kl.items()})
  for g, q in model.posterior_summary(params, x).items():
    out[f"q_mean/{g}"], out[f"q_log_var/{g}"] = q.mean, q.log_var
  if num_importance_samples:
    k = num_importance_samples
    num_chunks = -(-k // chunk)

    def body(carry, i):
      lse1, lse2 = carry
      log_w = objectives.log_weights(model, params, x, jax.random.fold_in(is_rng, i), chunk)
      valid = i * chunk + jnp.arange(chunk) < k  # the last chunk may overhang k
      log_w = jnp.where(valid, log_w, -jnp.inf)
      return (jnp.logaddexp(lse1, logsumexp(log_w)),
              jnp.logaddexp(lse2, logsumexp(2.0 * log_w))), None

    init = (jnp.asarray(-jnp.inf), jnp.asarray(-jnp.inf))
    if num_chunks == 1:  # no loop: XLA:CPU runs convolutions 12× slower inside one
      (lse1, lse2), _ = body(init, 0)
    else:
      (lse1, lse2), _ = jax.lax.scan(body, init, jnp.arange(num_chunks))
    out["log_px"] = lse1 - math.log(k)
    out["log_px_mc_var"] = (jnp.maximum(jnp.exp(lse2 - 2.0 * lse1) - 1.0 / k, 0.0) * k / (k - 1)
                            if k > 1 else jnp.full_like(lse1, jnp.nan))
  return out


def _summary(values: np.ndarray, mc_var: np.ndarray | None, num_dims: int,
             sign: float = 1.0) -> dict[str, Any]:
  n = len(values)
  mean = sign * float(np.mean(values))
  se = float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
  mc = (float(math.sqrt(np.sum(mc_var)) / n)
        if mc_var is not None and np.all(np.isfinite(mc_var)) else None)
  per_dim = 1.0 / (num_dims * math.log(2.0))
  return {"value": mean, "se": se, "mc_err": mc, "bits_per_dim": mean * per_dim,
          "bits_per_dim_se": se * per_dim,
          "bits_per_dim_mc_err": None if mc is None else mc * per_dim}


def _batch_estimates(model: LatentVariableModel, params: Params, batch: jax.Array,
                     rng: jax.Array, *,
                     elbo_samples: int, analytic_kl: bool | None = None,
                     num_importance_samples: int,
                     chunk: int) -> dict[str, jax.Array]:
  """Per-example estimates of a batch; the closed-form KL wherever the model
  has one for every group (analytic_kl=None)."""
  analytic_kl = model.analytic_kl if analytic_kl is None else analytic_kl
  chunk = bounded_chunk(model, chunk, num_importance_samples)
  rngs = jax.random.split(rng, batch.shape[0])
  fn = lambda x, r: example_estimates(
      model, params, x, r, elbo_samples=elbo_samples, analytic_kl=analytic_kl,
      num_importance_samples=num_importance_samples, chunk=chunk)
  with jax.default_matmul_precision("highest"):
    return jax.vmap(fn)(batch, rngs)


def make_estimator(model: LatentVariableModel, mesh: jax.sharding.Mesh | None = None, **kwargs):
  """A jitted (params, batch, rng) -> per-example estimates, compiled once for
  any params: what validation during training uses. With a mesh of several
  devices the batch and the estimates are split over its 'data' axis (each
  example's key depends on its place in the batch, not on the split)."""
  fn = lambda params, batch, rng: _batch_estimates(model, params, batch, rng, **kwargs)
  if mesh is None or mesh.size == 1:
    return jax.jit(fn)
  from jax.sharding import NamedSharding, PartitionSpec
  replicated, split = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh,
                                                                          PartitionSpec("data"))
  jitted = jax.jit(lambda params, batch, key_data: fn(params, batch,
                                                       jax.random.wrap_key_data(key_data)),
                   in_shardings=(replicated, split, replicated), out_shardings=split)

  def sharded(params, batch, rng):
    # Each process gives its rows of the padded batch; all get all estimates.
    rows = len(batch) // jax.process_count()
    mine = batch[jax.process_index() * rows:(jax.process_index() + 1) * rows]
    key_data = backend.global_array(mesh, PartitionSpec(), jax.random.key_data(rng))
    return backend.gather(jitted(params, backend.global_array(mesh, PartitionSpec("data"), mine),
                                 key_data))
  return sharded


def estimator_for_params(model: LatentVariableModel, params: Params, **kwargs):
  """The same, compiled for fixed `params`: XLA then treats the weights as
  constants, which made the k=5000 estimate 1.3× faster on a CPU; worth one
  compilation for a final evaluation."""
  jitted = jax.jit(lambda batch, rng: _batch_estimates(model, params, batch, rng, **kwargs))
  return lambda _, batch, rng: jitted(batch, rng)


# Examples × samples decoded per step of the streamed estimate: ~15 MB of
# logits for MNIST. A 500 × 100 chunk (157 MB) ran 2.3× slower on a CPU.
MAX_ROWS_PER_CHUNK = 5000
# The same bound in floats of the largest activation of a draw (`floats_per_draw`):
# what keeps a convolutional or hierarchical model's chunk in bounded memory.
MAX_FLOATS_PER_CHUNK = 5000 * 784
# Draws of ONE example per chunk, in floats of its largest activation: 256 MB
# of float32 (about 1 GB with the few activations alive at once), whatever k
# and the image size; the MLP models' chunks (≤ k) stay far below it.
MAX_CHUNK_FLOATS = 64 * 2 ** 20


def bounded_chunk(model: LatentVariableModel, chunk: int, num_importance_samples: int) -> int:
  """The importance-sampling chunk: at most k, and one example's chunk within
  MAX_CHUNK_FLOATS."""
  return max(1, min(chunk, num_importance_samples or 1,
                    MAX_CHUNK_FLOATS // model.floats_per_draw))
# Posterior means and log-variances kept per example for mutual information
# (the first N' examples, N' · units ≤ this): 16 MB of float32 per array.
MAX_POSTERIOR_FLOATS = 4_000_000


def evaluate(model: LatentVariableModel, params: Params, images: np.ndarray, rng: jax.Array, *,
             batch_size: int, elbo_samples: int, analytic_kl: bool | None = None,
             num_importance_samples: int = 0, chunk: int = 100,
             estimator=None, mesh: jax.sharding.Mesh | None = None) -> dict[str, Any]:
  """Dataset figures for `images`: every example counts once (pad and mask).
  With a mesh of several devices, each padded batch is split over them."""
  if num_importance_samples:  # bound the temporaries, whatever eval.batch_size says
    rows = min(MAX_ROWS_PER_CHUNK, MAX_FLOATS_PER_CHUNK // model.floats_per_draw)
    batch_size = min(batch_size, max(1, rows // bounded_chunk(model, chunk,
                                                              num_importance_samples)))
  kwargs = dict(elbo_samples=elbo_samples, analytic_kl=analytic_kl,
                num_importance_samples=num_importance_samples, chunk=chunk)
  if mesh is not None and mesh.size > 1:
    batch_size = -(-batch_size // mesh.size) * mesh.size  # padded to split evenly
    estimator = estimator or make_estimator(model, mesh, **kwargs)
  estimator = estimator or estimator_for_params(model, params, **kwargs)
  rng, mi_rng = jax.random.split(rng)
  parts: dict[str, list[np.ndarray]] = {}
  kept = max(1, MAX_POSTERIOR_FLOATS // sum(math.prod(v) for v in model.groups.values()))
  moments: dict[str, tuple] = {}  # per unit: count, mean and M2 of q_mean
  for i, (batch, mask) in enumerate(data_lib.eval_batches(images, batch_size)):
    out = jax.device_get(estimator(params, batch, jax.random.fold_in(rng, i)))
    for key, value in out.items():
      value = np.asarray(value)[mask]
      if key.startswith("q_mean/"):
        moments[key] = diagnostics.combine_moments(moments.get(key), value)
      if key.startswith("q_"):  # only the first examples: the MI estimate's memory
        have = sum(len(v) for v in parts.get(key, []))
        value = value[:max(0, kept - have)]
      parts.setdefault(key, []).append(value)
  per_example = {k: np.concatenate(v) for k, v in parts.items()}
  n, d = len(images), model.num_pixels
  rate = float(np.mean(per_example["kl"]))
  groups = {}
  for g in model.groups:
    count, _, m2 = moments[f"q_mean/{g}"]
    variance = m2 / count  # Var_x E_q[z_u|x], over all examples
    mi_examples = len(per_example[f"q_mean/{g}"])
    groups[g] = {
        "shape": list(model.groups[g]), "kl": float(np.mean(per_example[f"kl/{g}"])),
        "active_units": int(np.sum(variance > diagnostics.ACTIVE_THRESHOLD)),
        "units": int(variance.size),
        "posterior_mean_variance": variance.tolist(),
        # A flow's q is not the Gaussian summary: no estimate rather than a wrong one.
        "mutual_information": diagnostics.mutual_information(
            per_example[f"q_mean/{g}"].reshape(mi_examples, -1),
            per_example[f"q_log_var/{g}"].reshape(mi_examples, -1),
            jax.random.fold_in(mi_rng, len(groups))) if model.gaussian_posteriors else None,
        "mutual_information_ceiling": math.log(mi_examples)}
    if f"kl_per_unit/{g}" in per_example:
      groups[g]["kl_per_unit"] = np.mean(per_example[f"kl_per_unit/{g}"].reshape(n, -1),
                                         axis=0, dtype=np.float64).tolist()
  first = groups[next(iter(groups))]
  result = {
      "num_examples": n,
      "elbo": _summary(per_example["elbo"].astype(np.float64),
                       per_example["elbo_mc_var"].astype(np.float64), d),
      "elbo_samples": elbo_samples,
      "rate": rate,  # mean KL(q(z|x) ‖ p(z)), nats
      "distortion": float(-np.mean(per_example["recon"], dtype=np.float64)),
      # Units of every group with a closed-form KL, concatenated in generation order.
      "kl_per_dim": sum((v.get("kl_per_unit", []) for v in groups.values()), []),
      "active_units": sum(v["active_units"] for v in groups.values()),
      "posterior_mean_variance": sum((v["posterior_mean_variance"] for v in groups.values()),
                                     []),
      "groups": groups,
  }
  if len(groups) == 1 and first["mutual_information"] is not None:
    # rate = I(x; z) + KL(q(z) ‖ p(z)) (Hoffman & Johnson 2016). The mixture
    # estimator cannot exceed log N: near it, I(x; z) is larger.
    result.update(mutual_information=first["mutual_information"],
                  mutual_information_ceiling=first["mutual_information_ceiling"],
                  marginal_kl=rate - first["mutual_information"])
  if num_importance_samples:
    result["nll"] = _summary(per_example["log_px"].astype(np.float64),
                             per_example["log_px_mc_var"].astype(np.float64), d, sign=-1.0)
    result["num_importance_samples"] = num_importance_samples
  return result


def full_evaluation(model: LatentVariableModel, params: Params, images: np.ndarray, rng: jax.Array,
                    e, num_importance_samples: int | None = None,
                    chunk: int | None = None, mesh: jax.sharding.Mesh | None = None,
                    objective=None, estimator=None) -> dict[str, Any]:
  """Everything `config.eval` asks for on one split: estimates with errors,
  diagnostics, (eval.gap_examples > 0) the gap decomposition, and
  (eval.gradient_draws > 0, given the training `objective`) the noise of its
  gradient at these parameters on the first eval.gradient_batch examples."""
  est_rng, gap_rng = jax.random.split(rng)
  result = evaluate(model, params, images, est_rng, batch_size=e.batch_size,
                    elbo_samples=e.elbo_samples,
                    num_importance_samples=num_importance_samples or e.num_importance_samples,
                    chunk=chunk or e.importance_chunk, mesh=mesh, estimator=estimator)
  # The diagnostics below run on each process's own device, from a host copy.
  host_params = backend.gather(params) if e.gap_examples or e.gradient_draws else None
  if e.gap_examples:
    result["gaps"] = diagnostics.gap_decomposition(
        model, host_params, images[:e.gap_examples], gap_rng, num_steps=e.gap_steps,
        elbo_samples=max(e.elbo_samples, 10),
        num_importance_samples=num_importance_samples or e.num_importance_samples,
        batch_size=e.batch_size)
  if e.gradient_draws and objective is not None:
    noise = lambda o: diagnostics.gradient_noise(
        model, o, host_params, images[:e.gradient_batch],
        jax.random.fold_in(rng, 2), e.gradient_draws,
        step=o.kl_warmup_steps)  # the objective as trained, past any warm-up
    result["gradient"] = noise(objective)
    if objective.name == "elbo" and model.analytic_kl and objective.estimator == "reparam":
      # both KL estimators at the same parameters and draws
      other = noise(dataclasses.replace(objective, analytic_kl=not objective.analytic_kl))
      mc, analytic = ((other, result["gradient"]) if objective.analytic_kl
                      else (result["gradient"], other))
      result["gradient"]["encoder_variance_mc_over_analytic_kl"] = (
          mc["encoder_variance"] / analytic["encoder_variance"])
  return result


def evaluate_run(workdir: str, *, split: str = "test", checkpoint: str = "best",
                 num_importance_samples: int | None = None, chunk: int | None = None,
                 seed: int = 0, gap_examples: int | None = None,
                 num_examples: int | None = None) -> str:
  """Evaluates a saved run again, writes eval_<split>_<checkpoint>_k<k>.json and
  returns the printed summary (EMA parameters when the run keeps them)."""
  run = runs.load_run(workdir, checkpoint)
  c = run.config
  k = num_importance_samples or c.eval.num_importance_samples
  if k < 1 or (chunk is not None and chunk < 1) or (gap_examples or 0) < 0:
    raise UserError("--num_samples and --chunk must be >= 1, --gap_examples >= 0")
  if gap_examples is not None:
    c.eval.gap_examples = gap_examples
  with jax.default_device(backend.select_device(c.backend)):
    d = data_lib.load(c.data, c.model.likelihood)
    images = d.test if split == "test" else d.validation
    images = images[:num_examples] if num_examples else images
    start = time.perf_counter()
    result = full_evaluation(run.model, run.eval_params, images, jax.random.key(seed), c.eval,
                             num_importance_samples=k, chunk=chunk,
                             objective=objectives.Objective.from_config(c.objective))
    result["seconds"] = time.perf_counter() - start
  out = {"split": split, "checkpoint": checkpoint, "step": run.step,
         "params": "ema" if run.ema_params is not None else "raw", "test": result,
         "seed": seed, "provenance": provenance.provenance()}
  path = os.path.join(workdir, f"eval_{split}_{checkpoint}_k{k}.json")
  writers.atomic_write_text(path, json.dumps(out, indent=2) + "\n")
  return format_evaluation(out) + f"\nwritten to {path}"


def _fmt(name: str, s: dict, unit: str = "nats") -> str:
  mc = "n/a" if s["mc_err"] is None else f"{s['mc_err']:.3f}"
  return (f"{name}: {s['value']:.3f} {unit} (± {s['se']:.3f} across examples, ± {mc} Monte "
          f"Carlo) = {s['bits_per_dim']:.4f} bits/dim")


def group_table(groups: dict) -> list[str]:
  """Per latent group (top first): KL, active units, mutual information."""
  rows = [f"{'group':<6} {'shape':<12} {'KL (nats)':>10} {'active':>12} {'MI (nats)':>10}"]
  for g, v in groups.items():
    rows.append(f"{g:<6} {'x'.join(map(str, v['shape'])):<12} {v['kl']:>10.3f} "
                f"{v['active_units']:>5} / {v['units']:<5} "
                + (f"{v['mutual_information']:>10.3f}" if v["mutual_information"] is not None
                   else f"{'n/a (flow)':>10}"))
  return rows


def format_evaluation(result: dict) -> str:
  test = result["test"]
  lines = [f"{result['split']} split, {test['num_examples']} examples, {result['checkpoint']} "
           f"checkpoint (step {result['step']}):",
           "  " + _fmt(f"ELBO ({test['elbo_samples']} z samples per example)", test["elbo"])]
  if "nll" in test:
    lines.append("  " + _fmt(f"NLL = -log p(x), importance-sampled with k="
                             f"{test['num_importance_samples']}", test["nll"]))
  units = sum(g["units"] for g in test["groups"].values())
  if "mutual_information" in test:
    lines.append(f"  rate {test['rate']:.3f} nats (mutual information "
                 f"{test['mutual_information']:.3f}, estimable up to log N = "
                 f"{test['mutual_information_ceiling']:.3f}, + marginal KL "
                 f"{test['marginal_kl']:.3f}), "
                 f"distortion {test['distortion']:.3f} nats, {test['active_units']} of "
                 f"{units} units active")
  else:
    lines.append(f"  rate {test['rate']:.3f} nats, distortion {test['distortion']:.3f} nats, "
                 f"{test['active_units']} of {units} units active")
    lines += ["  " + line for line in group_table(test["groups"])]
  if "linear_gaussian" in test:
    lg = test["linear_gaussian"]
    lines.append(f"  linear-Gaussian check: train log p(x) exact {lg['train_log_px_exact']:.4f}, "
                 f"pPCA maximum {lg['train_log_px_ppca_maximum']:.4f} (gap "
                 f"{lg['train_gap_to_ppca_maximum']:.4f}); test log p(x) exact "
                 f"{lg['test_log_px_exact']:.4f}, importance-sampled "
                 f"{lg['test_log_px_importance_sampled']:.4f}"
                 + ("" if lg["importance_sampled_mc_err"] is None else
                    f" (± {lg['importance_sampled_mc_err']:.4f} Monte Carlo)"))
  if "gaps" in test:
    g = test["gaps"]
    lines.append(f"  gap on {g['num_examples']} examples: log p(x) {g['log_px']:.3f} = ELBO "
                 f"{g['elbo_encoder']:.3f} + amortisation {g['amortisation_gap']:.3f} "
                 f"(± {g['amortisation_gap_se']:.3f}) + approximation "
                 f"{g['approximation_gap']:.3f} (± {g['approximation_gap_se']:.3f}) nats")
  return "\n".join(lines)
