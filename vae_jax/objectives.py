"""Per-example bounds on log p(x), vmapped over a batch, and the training loss.

One function, `log_weights`, gives log w_i = log p(x, z_i) - log q(z_i|x) for
z_i ~ q(z|x); the ELBO is their mean, the importance-weighted bound (IWAE,
Burda et al. 2016) is log (1/k) Σ w_i, and evaluation streams them for the
importance-sampled log-likelihood.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import ml_collections
from jax.scipy.special import logsumexp

from vae_jax.models import LatentVariableModel, Params


def log_weights(model: LatentVariableModel, params: Params, x: jax.Array, rng: jax.Array,
                num_samples: int) -> jax.Array:
  """log p(x|z_i) + log p(z_i) - log q(z_i|x) for k draws z_i ~ q(z|x); shape (k,)."""
  return model.draws(params, x, rng, num_samples).log_weights()


def example_terms(model: LatentVariableModel, params: Params, x: jax.Array, rng: jax.Array, *,
                  num_samples: int, analytic_kl: bool, stop_grad_q: bool = False
                  ) -> dict[str, jax.Array]:
  """The bound's parts for ONE example, each a k-sample Monte Carlo estimate.

  recon = (1/k) Σ log p(x|z_i); kl = Σ_g KL_g, each group's KL(q(z_g|·) ‖ p(z_g|·))
  in closed form at the draws (every group must have one) or as
  (1/k) Σ [log q(z_g,i|·) - log p(z_g,i|·)]; elbo = recon - kl;
  iwae = log (1/k) Σ w_i (with k = 1, iwae equals the Monte Carlo-KL elbo).
  kl_<g> gives each group's part, and with the closed form kl_per_unit every
  unit's (the groups flattened and concatenated, in generation order).
  `stop_grad_q`: log q with q's parameters under stop_gradient (STL, DReG).
  """
  return _terms(model.draws(params, x, rng, num_samples, stop_grad_q=stop_grad_q),
                num_samples, analytic_kl)


def check_closed_form_kl(d) -> None:
  """Refuses the closed-form KL where a group has none (its KL would be left out)."""
  if set(d.kl) != set(d.log_qz):
    raise ValueError(f"groups {sorted(set(d.log_qz) - set(d.kl))} have no closed-form KL "
                     "(a stack, a flow posterior or a mixture prior): use the Monte Carlo KL")


def _terms(d, num_samples: int, analytic_kl: bool) -> dict[str, jax.Array]:
  if analytic_kl:
    check_closed_form_kl(d)
  per_group = d.kl_analytic_per_group() if analytic_kl else d.kl_mc_per_group()
  out = {f"kl_{g}": jnp.mean(v) for g, v in per_group.items()}
  recon = jnp.mean(d.log_px_z)
  kl = sum(out.values())
  out.update(recon=recon, kl=kl, elbo=recon - kl,
             iwae=logsumexp(d.log_weights()) - math.log(num_samples))
  if analytic_kl:
    out["kl_per_unit"] = jnp.concatenate([jnp.mean(v, axis=0).reshape(-1)
                                          for v in d.kl.values()])
  return out


def batch_terms(model: LatentVariableModel, params: Params, batch: jax.Array, rng: jax.Array,
                *, num_samples: int, analytic_kl: bool, estimator: str = "reparam"
                ) -> dict[str, jax.Array]:
  """`example_terms` vmapped over the leading axis of `batch`, one key per example.

  With estimator 'stl' or 'dreg' the terms' values are the same, their
  gradients not: the terms are evaluated twice with the same draws, once with
  the generative parameters (decoder, likelihood) under stop_gradient and log q
  evaluated at q's stopped parameters (the encoder's gradient: the path
  derivative), once with the encoder's parameters stopped (the decoder's
  gradient, unchanged). For 'dreg' (Tucker et al. 2019) the `iwae` term's
  encoder gradient is Σ_i w̃_i² ∇_φ log w_i (path derivative), its decoder
  gradient the IWAE one, Σ_i w̃_i ∇_θ log w_i.
  """
  rngs = jax.random.split(rng, batch.shape[0])

  def fn(x, r):
    if estimator == "reparam":
      return example_terms(model, params, x, r, num_samples=num_samples,
                           analytic_kl=analytic_kl)
    # The same draws twice (same key): for the encoder's gradient, and the decoder's.
    d_enc = model.draws(_stop(params, "encoder", keep=True), x, r, num_samples,
                        stop_grad_q=True)
    d_dec = model.draws(_stop(params, "encoder"), x, r, num_samples)
    enc_terms = _terms(d_enc, num_samples, analytic_kl)
    dec_terms = _terms(d_dec, num_samples, analytic_kl)
    out = {k: dec_terms[k] + _grad_only(enc_terms[k]) for k in dec_terms}
    if estimator == "dreg":
      log_w_enc, log_w_dec = d_enc.log_weights(), d_dec.log_weights()
      w = jax.lax.stop_gradient(jax.nn.softmax(log_w_dec))
      out["iwae"] = (logsumexp(log_w_dec) - math.log(num_samples)
                     + _grad_only(jnp.sum(w ** 2 * log_w_enc)))
    return out

  return jax.vmap(fn)(batch, rngs)


def _stop(params: Params, part: str, keep: bool = False) -> Params:
  """`params` with stop_gradient on params[part] (keep=False) or on every other
  top-level part (keep=True)."""
  sg = jax.lax.stop_gradient
  return {k: (v if (k == part) == keep else sg(v)) for k, v in params.items()}


def _grad_only(v: jax.Array) -> jax.Array:
  """Zero in value, v's gradient."""
  return v - jax.lax.stop_gradient(v)


@dataclasses.dataclass(frozen=True)
class Objective:
  """The training loss, built from `config.objective`.

  'elbo': loss = -E[recon] + β_t · KL_term, with β_t = β · min(1, step / warm-up)
  and, with free bits λ (Kingma et al. 2016), KL_term = Σ_d max(λ, E_batch[KL_d]).
  'iwae': loss = -E[iwae_k]. `estimator`: the encoder's gradient, 'reparam'
  (the plain reparameterisation gradient), 'stl' (sticking the landing, Roeder
  et al. 2017) or 'dreg' (doubly reparameterised, Tucker et al. 2019; iwae
  only); see `batch_terms`. Valid combinations are enforced in config.py.
  """
  name: str = "elbo"
  num_samples: int = 1
  analytic_kl: bool = True
  beta: float = 1.0
  kl_warmup_steps: int = 0
  free_bits: float = 0.0
  estimator: str = "reparam"

  @classmethod
  def from_config(cls, c: ml_collections.ConfigDict) -> "Objective":
    return cls(name=c.name, num_samples=c.num_samples, analytic_kl=c.kl == "analytic",
               beta=c.beta, kl_warmup_steps=c.kl_warmup_steps, free_bits=c.free_bits,
               estimator=c.estimator)

  def beta_at(self, step: jax.Array) -> jax.Array:
    if self.kl_warmup_steps <= 0:
      return jnp.asarray(self.beta, jnp.float32)
    ramp = jnp.minimum(1.0, step.astype(jnp.float32) / self.kl_warmup_steps)
    return self.beta * ramp

  def loss(self, model: LatentVariableModel, params: Params, batch: jax.Array, rng: jax.Array,
           step: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean loss over the batch and metrics; `elbo` is always the β = 1 ELBO."""
    t = batch_terms(model, params, batch, rng, num_samples=self.num_samples,
                    analytic_kl=self.analytic_kl, estimator=self.estimator)
    metrics = {k: jnp.mean(t[k]) for k in ("recon", "kl", "elbo")}
    if len(model.groups) > 1:  # posterior collapse shows layer by layer in the curves
      metrics.update({f"kl_{g}": jnp.mean(t[f"kl_{g}"]) for g in model.groups})
    if self.name == "iwae":
      metrics["iwae"] = jnp.mean(t["iwae"])
      loss = -metrics["iwae"]
    else:
      kl_term = metrics["kl"]
      if self.free_bits > 0:
        kl_term = jnp.sum(jnp.maximum(self.free_bits, jnp.mean(t["kl_per_unit"], axis=0)))
      beta = self.beta_at(step)
      metrics["beta"] = beta
      loss = -metrics["recon"] + beta * kl_term
    metrics["loss"] = loss
    return loss, metrics
