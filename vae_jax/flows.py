"""Inverse autoregressive flow (Kingma et al. 2016) on the last axis of a latent.

A draw of the base Gaussian, z_0 = μ + σ ε, goes through T steps; step t is

  (m, s) = MADE_t(z_{t-1}, c)        autoregressive in z_{t-1}'s order, c a context
  σ_t    = sigmoid(s)                 (the paper's numerically stable gated update)
  z_t    = σ_t ⊙ z_{t-1} + (1 - σ_t) ⊙ m

and the vector is reversed between steps, so each step sees the others' last
units first. Output unit i depends on inputs < i only, so each step's Jacobian
is triangular with diagonal σ_t and

  log q(z_T|x) = log N(z_0 | μ, σ²) - Σ_t Σ_i log σ_t,i.

The context c (from the encoder) enters every MADE's hidden layer unmasked.
Everything broadcasts over leading axes, so a flow acts on a (k, d) batch of
draws, or per position on a (k, H, W, C) spatial group (over its C channels).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import distributions

# sigmoid(2) ≈ 0.88: each step starts close to the identity (the paper's +1 to +2 bias).
GATE_BIAS = 2.0


def made_masks(dim: int, hidden: int) -> tuple[np.ndarray, np.ndarray]:
  """MADE's masks (Germain et al. 2015) for the order 1..dim: (dim, hidden) into
  the hidden layer, (hidden, dim) out of it; output i sees inputs j < i only."""
  degrees_in = np.arange(1, dim + 1)
  degrees_hidden = np.arange(hidden) % max(1, dim - 1) + 1
  into = (degrees_hidden[None, :] >= degrees_in[:, None]).astype(np.float32)
  out = (degrees_in[None, :] > degrees_hidden[:, None]).astype(np.float32)
  return into, out


@dataclasses.dataclass(frozen=True)
class IAF:
  dim: int  # size of the last axis the flow acts on
  context_dim: int
  steps: int = 2
  hidden: int = 64

  def init(self, rng: jax.Array) -> dict:
    out = {}
    for t, key in enumerate(jax.random.split(rng, self.steps)):
      k1, k2, k3, k4 = jax.random.split(key, 4)
      scale_in = 1.0 / np.sqrt(self.dim + self.context_dim)
      scale_out = 0.1 / np.sqrt(self.hidden)  # m and s start nearly constant
      out[f"step_{t}"] = {
          "w_z": scale_in * jax.random.normal(k1, (self.dim, self.hidden)),
          "w_c": scale_in * jax.random.normal(k2, (self.context_dim, self.hidden)),
          "b": jnp.zeros((self.hidden,)),
          "w_m": scale_out * jax.random.normal(k3, (self.hidden, self.dim)),
          "b_m": jnp.zeros((self.dim,)),
          "w_s": scale_out * jax.random.normal(k4, (self.hidden, self.dim)),
          "b_s": jnp.full((self.dim,), GATE_BIAS)}
    return out

  def made(self, p: dict, z: jax.Array, context: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(m, s) of one step; m_i and s_i depend on z_<i and the context only."""
    into, out = made_masks(self.dim, self.hidden)
    h = jax.nn.elu(z @ (p["w_z"] * into) + context @ p["w_c"] + p["b"])
    return h @ (p["w_m"] * out) + p["b_m"], h @ (p["w_s"] * out) + p["b_s"]

  def step(self, p: dict, z: jax.Array, context: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One gated step (before the reversal): z', and log σ per unit."""
    m, s = self.made(p, z, context)
    gate = jax.nn.sigmoid(s)
    return gate * z + (1.0 - gate) * m, jax.nn.log_sigmoid(s)

  def forward(self, params: dict, z0: jax.Array, context: jax.Array
              ) -> tuple[jax.Array, jax.Array]:
    """z_T and Σ_t log |det ∂z_t/∂z_{t-1}| per position (leading shape of z0)."""
    z, log_det = z0, 0.0
    for t in range(self.steps):
      if t:
        z = z[..., ::-1]
      z, log_gate = self.step(params[f"step_{t}"], z, context)
      log_det = log_det + jnp.sum(log_gate, axis=-1)
    return z, log_det

  def inverse(self, params: dict, z: jax.Array, context: jax.Array) -> jax.Array:
    """z_0 from z_T. Each step is inverted by `dim` passes of
    x <- (y - (1 - σ(x)) m(x)) / σ(x): pass i fixes unit i in the flow's order
    (its m, σ see units < i only), so the result is the exact inverse, as a
    function of z (and differentiable as one)."""
    for t in reversed(range(self.steps)):
      p, y = params[f"step_{t}"], z
      x = y
      for _ in range(self.dim):
        m, s = self.made(p, x, context)
        gate = jax.nn.sigmoid(s)
        x = (y - (1.0 - gate) * m) / gate
      z = x[..., ::-1] if t else x
    return z


def log_prob(q0: distributions.DiagGaussian, z: jax.Array, flow: IAF | None = None,
             flow_params: dict | None = None, context: jax.Array | None = None,
             event_ndim: int = 1, eps: jax.Array | None = None) -> jax.Array:
  """log q(z) at any z, summed over the last `event_ndim` axes: the Gaussian's
  density, or (with a flow) the base density at the flow's inverse minus the
  log-determinant there.

  `eps`: the standard normal draw z came from (z = flow(μ + σ ε) with q0's μ, σ
  and this context, as values). The inverse is then the known base draw, held
  as a value, with the inverse's derivative (`_base_draw`): inverting the flow
  divides by every gate and is ill-conditioned where gates are small (NaN at
  σ ≈ 0.05 over 16 units in float32)."""
  axes = tuple(range(-event_ndim, 0))
  if flow is None:
    return jnp.sum(q0.log_prob_per_unit(z), axis=axes)
  context = jnp.broadcast_to(context, z.shape[:-1] + context.shape[-1:])
  if eps is None:
    z0 = flow.inverse(flow_params, z, context)
  else:
    z0 = _base_draw(flow, flow_params, context, z, q0.mean + jnp.exp(0.5 * q0.log_var) * eps)
  _, log_det = flow.forward(flow_params, z0, context)
  return jnp.sum(q0.log_prob_per_unit(z0), axis=axes) - _sum_positions(log_det, event_ndim)


def _base_draw(flow: IAF, flow_params: dict, context: jax.Array, z: jax.Array,
               z0: jax.Array) -> jax.Array:
  """The flow's inverse at z, given z0 = inverse(z) as a value: exactly z0's
  value, with the inverse's first derivative in z and the context (the
  implicit function theorem: d z0 = J⁻¹ (dz - ∂f/∂c dc), J = ∂f/∂z0 at z0),
  which is all the path-derivative estimators (STL, DReG) differentiate. J⁻¹
  is applied step by step, each step's Jacobian lower triangular with its
  gates on the diagonal: their product over all steps (det J) can underflow
  where each step's triangular solve is fine."""
  z0, fixed = jax.lax.stop_gradient(z0), jax.lax.stop_gradient(context)
  d = z.shape[-1]
  inputs, a = [], z0  # `forward`'s steps, keeping each one's input (after the reversal)
  for t in range(flow.steps):
    a = a[..., ::-1] if t else a
    inputs.append(jax.lax.stop_gradient(a))
    a = flow.step(flow_params[f"step_{t}"], a, context)[0]
  v = z - a  # 0 in value; carries dz - ∂f/∂c dc
  c = fixed.reshape(-1, fixed.shape[-1])
  for t in reversed(range(flow.steps)):
    step = lambda u, ctx, p=flow_params[f"step_{t}"]: flow.step(p, u, ctx)[0]
    jac = jax.lax.stop_gradient(jax.vmap(jax.jacfwd(step))(inputs[t].reshape(-1, d), c))
    v = jax.scipy.linalg.solve_triangular(jac, v.reshape(-1, d, 1), lower=True).reshape(z.shape)
    v = v[..., ::-1] if t else v
  return z0 + v - jax.lax.stop_gradient(v)


def _sum_positions(log_det: jax.Array, event_ndim: int) -> jax.Array:
  """A flow's log-det per position (over the last axis already), summed over the
  event's other axes (a spatial group's positions)."""
  return jnp.sum(log_det, axis=tuple(range(-(event_ndim - 1), 0))) if event_ndim > 1 \
      else log_det


def sample_and_log_prob(q0: distributions.DiagGaussian, eps: jax.Array,
                        flow: IAF | None = None, flow_params: dict | None = None,
                        context: jax.Array | None = None, stop_grad_q: bool = False,
                        event_ndim: int = 1) -> tuple[jax.Array, jax.Array]:
  """z = flow(μ + σ ε) (or the Gaussian draw with no flow) and log q(z), summed
  over the last `event_ndim` axes. With `stop_grad_q` the density is evaluated
  with q0, the flow's weights and the context under stop_gradient, the draw z
  keeping its gradient (a flow is then inverted at z): the path derivative of
  "sticking the landing" (Roeder et al. 2017), right where q0 and the context
  depend on the parameters only (not on other draws: a model whose q of one
  group conditions on another's draw recomputes them from stopped parameters
  and the live draws, and calls `log_prob`)."""
  axes = tuple(range(-event_ndim, 0))
  z0 = q0.mean + jnp.exp(0.5 * q0.log_var) * eps
  if flow is not None:
    context = jnp.broadcast_to(context, z0.shape[:-1] + context.shape[-1:])
  if stop_grad_q:
    z = z0 if flow is None else flow.forward(flow_params, z0, context)[0]
    sg = jax.lax.stop_gradient
    return z, log_prob(distributions.DiagGaussian(sg(q0.mean), sg(q0.log_var)), z, flow,
                       sg(flow_params), sg(context), event_ndim, eps)
  if flow is None:
    return z0, jnp.sum(q0.log_prob_per_unit(z0), axis=axes)
  z, log_det = flow.forward(flow_params, z0, context)
  return z, jnp.sum(q0.log_prob_per_unit(z0), axis=axes) - _sum_positions(log_det, event_ndim)
