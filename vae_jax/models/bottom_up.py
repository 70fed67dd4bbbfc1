"""A bottom-up stack of stochastic layers (Burda et al. 2016, the IWAE paper's
two-layer model; Rezende et al. 2014):

  inference   x -> z1 -> z2 -> ... -> zL    q(z1|x) Π q(z_{i+1}|z_i)
  generative  zL -> ... -> z1 -> x         p(zL) Π p(z_i|z_{i+1}) p(x|z1)

every conditional a diagonal Gaussian whose mean and log-variance an MLP emits
(or, with `latent_variance='constant'`, p(z_i|z_{i+1}) has one learned
variance per unit: with linear networks and a Gaussian likelihood the model is
then linear-Gaussian and log p(x) is exact). x's encoder and decoder come from
the network registry (MLP, conv, ResNet).

The top layer's prior may be a learned mixture or a VampPrior (`prior`), and
each q(z_i|·) an inverse autoregressive flow on its Gaussian (`flow_steps` > 0;
the network of each q then also emits the flow's context vector, and the next
layer conditions on the flow's output).

Only the top group has a closed-form KL (and only with a Gaussian q and N(0, I)):
q(z1|x) and p(z1|z2) condition on different things, so the ELBO of a stack uses the Monte Carlo KL
(config.py's valid-combination table says so).
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import distributions, flows, priors
from vae_jax.models.base import (
  Draws,
  Latents,
  LatentVariableModel,
  Params,
  per_draw,
  split_gaussian,
  temperature_sample,
)
from vae_jax.models.flat import gaussian_marginal_log_prob
from vae_jax.networks import MLP


def group_name(i: int) -> str:
  return f"z{i + 1}"  # z1 is the layer next to x



@dataclasses.dataclass(frozen=True)
class BottomUp(LatentVariableModel):
  x_encoder: nn.Module  # x -> 2 d1
  x_decoder: nn.Module  # z1 -> likelihood parameters
  latent_dims: tuple[int, ...]  # d1, ..., dL (bottom first)
  stochastic_hidden: tuple[tuple[int, ...], ...]  # MLP between z_i and z_{i+1}
  activation: str = "tanh"
  kernel_init: str = "lecun_normal"  # of the MLPs between stochastic layers
  latent_variance: str = "network"  # or 'constant'
  prior: priors.Prior = priors.Prior()
  flow_steps: int = 0  # > 0: an IAF posterior in every layer
  flow_hidden: int = 64  # its MADEs' hidden units, and its context's size

  @property
  def num_layers(self) -> int:
    return len(self.latent_dims)

  x_decoder_path = ("decoder", "x")  # its MLP decoder's last layer: with_output_bias

  @property
  def groups(self):
    return {group_name(i): (self.latent_dims[i],) for i in reversed(range(self.num_layers))}

  @property
  def analytic_kl(self) -> bool:
    return self.num_layers == 1 and self._top_closed_form

  @property
  def gaussian_posteriors(self) -> bool:
    return not self.flow_steps

  @property
  def _top_closed_form(self) -> bool:
    return self.flow_steps == 0 and self.prior.closed_form_kl

  @property
  def context_dim(self) -> int:
    return self.flow_hidden if self.flow_steps else 0

  def flow(self, i: int) -> flows.IAF | None:
    if not self.flow_steps:
      return None
    return flows.IAF(self.latent_dims[i], self.context_dim, self.flow_steps, self.flow_hidden)

  def _up(self, i: int) -> nn.Module:  # q(z_{i+2} | z_{i+1})
    return MLP(self.stochastic_hidden[i], 2 * self.latent_dims[i + 1] + self.context_dim,
               self.activation, kernel_init=self.kernel_init)

  def _down(self, i: int) -> nn.Module:  # p(z_{i+1} | z_{i+2})
    per_unit = 2 if self.latent_variance == "network" else 1
    return MLP(tuple(reversed(self.stochastic_hidden[i])), per_unit * self.latent_dims[i],
               self.activation, kernel_init=self.kernel_init)

  def init(self, rng: jax.Array) -> Params:
    keys = iter(jax.random.split(rng, 2 * self.num_layers + 2))
    init = lambda m, n: m.init(next(keys), jnp.zeros((n,), jnp.float32))["params"]
    enc = {"x": self.x_encoder.init(next(keys), jnp.zeros(self.image_shape))["params"]}
    dec = {"x": init(self.x_decoder, self.latent_dims[0])}
    for i in range(self.num_layers - 1):
      enc[f"up_{i}"] = init(self._up(i), self.latent_dims[i])
      dec[f"down_{i}"] = init(self._down(i), self.latent_dims[i + 1])
      if self.latent_variance == "constant":
        dec[f"log_var_{i}"] = jnp.zeros((self.latent_dims[i],))
    extra = jax.random.fold_in(rng, 1)  # the optional parts' keys leave the others as they were
    for i in range(self.num_layers):
      if self.flow_steps:
        enc[f"flow_{i}"] = self.flow(i).init(jax.random.fold_in(extra, i))
    prior_params = self.prior.init(jax.random.fold_in(extra, self.num_layers))
    if prior_params is not None:
      dec["prior"] = prior_params
    return {"encoder": enc, "decoder": dec, "likelihood": self.likelihood.init_params()}

  def _q(self, params: Params, i: int, below: jax.Array) -> distributions.DiagGaussian:
    """q(z_{i+1} | the layer below: x for i = 0, else z_i) (with a flow: its base)."""
    return self._q_context(params, i, below)[0]

  def _q_context(self, params: Params, i: int, below: jax.Array
                 ) -> tuple[distributions.DiagGaussian, jax.Array]:
    if i == 0:
      h = self.net(self.x_encoder, params["encoder"]["x"], below * self.input_scale)
    else:
      h = self.net(self._up(i - 1), params["encoder"][f"up_{i - 1}"], below)
    d = self.latent_dims[i]
    return split_gaussian(h[..., :2 * d]), h[..., 2 * d:]

  def _p(self, params: Params, i: int, above: jax.Array) -> distributions.DiagGaussian:
    """p(z_{i+1} | z_{i+2}); the top layer's prior is N(0, I)."""
    if i == self.num_layers - 1:
      zeros = jnp.zeros(above.shape[:-1] + (self.latent_dims[i],), above.dtype)
      return distributions.DiagGaussian(zeros, zeros)
    h = self.net(self._down(i), params["decoder"][f"down_{i}"], above)
    if self.latent_variance == "network":
      return split_gaussian(h)
    return distributions.DiagGaussian(h, jnp.broadcast_to(params["decoder"][f"log_var_{i}"],
                                                          h.shape))

  def _decode(self, params: Params, z1: jax.Array) -> jax.Array:
    return self.net(self.x_decoder, params["decoder"]["x"], z1)

  def draws(self, params, x, rng, num_samples, stop_grad_q=False):
    keys = jax.random.split(rng, self.num_layers)
    zs, qs, epss, log_qz = [], [], [], {}
    for i in range(self.num_layers):
      q, context = self._q_context(params, i, x if i == 0 else zs[-1])
      shape = ((num_samples,) if i == 0 else ()) + q.mean.shape
      eps = jax.random.normal(keys[i], shape, q.mean.dtype)
      z, log_qz[group_name(i)] = flows.sample_and_log_prob(
          q, eps, self.flow(i), params["encoder"].get(f"flow_{i}"), context)
      zs.append(z)
      qs.append(q)
      epss.append(eps)
    if stop_grad_q:  # log q(z_i | z_{i-1}) at the live draws, q's parameters stopped
      stopped = jax.lax.stop_gradient(params)
      for i in range(self.num_layers):
        q, context = self._q_context(stopped, i, x if i == 0 else zs[i - 1])
        log_qz[group_name(i)] = flows.log_prob(q, zs[i], self.flow(i),
                                               stopped["encoder"].get(f"flow_{i}"), context,
                                               eps=epss[i])
    log_pz, kl = {}, {}
    for i in range(self.num_layers):
      g = group_name(i)
      if i == self.num_layers - 1:
        log_pz[g] = self.top_log_prior(params, zs[i])
        if self._top_closed_form:  # the top layer: both sides known in closed form
          p = self._p(params, i, zs[i])
          kl[g] = jnp.broadcast_to(qs[i].kl_per_unit(p), zs[i].shape)
      else:
        log_pz[g] = self._p(params, i, zs[i + 1]).log_prob(zs[i])
    return Draws(z={group_name(i): zs[i] for i in range(self.num_layers)},
                 log_px_z=self._log_px_z(params, per_draw(lambda z: self._decode(params, z),
                                                          zs[0]), x),
                 log_pz=log_pz, log_qz=log_qz, kl=kl)

  def posterior_summary(self, params, x):
    """Each layer's q at the layer below's summary mean; with a flow, the base
    Gaussian moved to the flow's image of its mean."""
    out, below = {}, x
    for i in range(self.num_layers):
      q, context = self._q_context(params, i, below)
      if self.flow_steps:
        mean, _ = self.flow(i).forward(params["encoder"][f"flow_{i}"], q.mean, context)
        q = distributions.DiagGaussian(mean, q.log_var)
      out[group_name(i)], below = q, q.mean
    return out

  def sample_latents(self, params, rng, temperature=1.0, given=None):
    given = given or {}
    keys = jax.random.split(rng, self.num_layers)
    z: Latents = {}
    above = jnp.zeros((self.latent_dims[-1],))
    for i in reversed(range(self.num_layers)):
      g = group_name(i)
      if g in given:
        z[g] = given[g]
      elif i == self.num_layers - 1:
        z[g] = self.top_prior_sample(params, keys[i], temperature)
      else:
        z[g] = temperature_sample(self._p(params, i, above), keys[i], temperature)
      above = z[g]
    return z

  def mean_image(self, params, z):
    return self.likelihood.mean_image(self._decode(params, z["z1"]), params["likelihood"])

  def exact_log_px(self, params, images):
    """With linear networks, constant conditional variances and a Gaussian
    likelihood of one variance, x is Gaussian: z_L ~ N(0, I), z_i = A_i z_{i+1}
    + a_i + noise of variance D_i, x = B z_1 + b + noise of variance σ²; its
    mean and covariance follow down the stack, in float64."""
    dec = params["decoder"]
    if "prior" in dec:
      return None
    linear = all(set(dec[f"down_{i}"]) == {"output"} for i in range(self.num_layers - 1))
    if not (linear and set(dec["x"]) == {"output"} and self.latent_variance == "constant"
            and self.log_prob_offset == 0.0
            and getattr(self.likelihood, "variance", None) in ("scalar", "fixed")):
      return None
    f64 = lambda a: np.asarray(a, np.float64)
    mean, cov = np.zeros(self.latent_dims[-1]), np.eye(self.latent_dims[-1])
    for i in reversed(range(self.num_layers - 1)):
      a, bias = f64(dec[f"down_{i}"]["output"]["kernel"]).T, f64(dec[f"down_{i}"]["output"]["bias"])
      mean, cov = a @ mean + bias, a @ cov @ a.T + np.diag(np.exp(f64(dec[f"log_var_{i}"])))
    b, bias = f64(dec["x"]["output"]["kernel"]).T, f64(dec["x"]["output"]["bias"])
    sigma2 = (math.exp(float(params["likelihood"]["log_var"]))
              if self.likelihood.variance == "scalar" else math.exp(self.likelihood.fixed_log_var))
    return gaussian_marginal_log_prob(images, b @ mean + bias,
                                      b @ cov @ b.T + sigma2 * np.eye(len(bias)))
