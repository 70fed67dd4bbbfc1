"""A top-down hierarchy of spatial latent groups (Ladder VAE, Sønderby et al.
2016; NVAE, Vahdat & Kautz 2020; VDVAE, Child 2021), convolutional, with
residual blocks.

A deterministic bottom-up pass (encoder) computes features f_s of x at each
latent resolution. The top-down pass (decoder) starts from a learned state h
at the lowest resolution and, for each group g in turn (top first, several
groups per resolution, several resolutions):

  p(z_g | z_<g)    = N(prior_head(h))                  decoder
  q(z_g | z_<g, x) = N(μ_p + Δμ, log σ²_p + Δlog σ²),   (Δμ, Δlog σ²) = posterior_head(h, f_s)
  h <- ResBlocks(h + proj(z_g))

so prior and posterior share the top-down state, q is a residual correction of
p (NVAE's residual parameterisation: both heads start at zero, so q = p = N(0, I)
at initialisation), and each group's KL is in closed form given the draws above
it. Between resolutions h is doubled by a resize-convolution; a last one
reaches the image's resolution, where a 3×3 convolution emits the likelihood's
parameters. Latent group g at scale s has shape (r_s, r_s, latent_channels),
r_s = side / 2^(num_scales - s).

Options: the top group's prior may be a learned mixture or a VampPrior
(`prior`; q(z_1|x) stays the prior head's Gaussian plus the residual, the
head only serving as its base), and each q(z_g|·) an inverse autoregressive
flow (`flow_steps` > 0) applied at every spatial position over the group's
channels (the MADE is autoregressive over the latent_channels of one
position; positions are independent given the context, which the posterior
head emits as flow_hidden extra channels). Either takes the group's closed-form KL away.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax import distributions, flows, priors
from vae_jax.models.base import (
  LOG_VAR_BOUND,
  Draws,
  Latents,
  LatentVariableModel,
  Params,
  soft_clamp,
  split_gaussian,
  temperature_sample,
)
from vae_jax.networks import ACTIVATIONS, ResBlock
from vae_jax.networks.layers import upsample


def _conv(features: int, size: int = 3, zero: bool = False, stride: int = 1) -> nn.Module:
  init = nn.initializers.zeros if zero else nn.initializers.lecun_normal()
  return nn.Conv(features, (size, size), strides=(stride, stride), kernel_init=init)



@dataclasses.dataclass(frozen=True)
class TopDown(LatentVariableModel):
  channels: int
  latent_channels: int
  groups_per_scale: tuple[int, ...]  # top (lowest resolution) first
  blocks_per_group: int = 1
  encoder_blocks: int = 1  # residual blocks per scale in the bottom-up pass
  activation: str = "swish"
  prior: priors.Prior = priors.Prior()
  flow_steps: int = 0  # > 0: an IAF posterior in every group, over its channels
  flow_hidden: int = 64

  @property
  def context_dim(self) -> int:
    return self.flow_hidden if self.flow_steps else 0

  def flow(self) -> flows.IAF | None:
    if not self.flow_steps:
      return None
    return flows.IAF(self.latent_channels, self.context_dim, self.flow_steps, self.flow_hidden)

  @property
  def num_scales(self) -> int:
    return len(self.groups_per_scale)

  def resolution(self, scale: int) -> tuple[int, int]:
    f = 2 ** (self.num_scales - scale)
    return self.image_shape[0] // f, self.image_shape[1] // f

  @property
  def group_scales(self) -> list[tuple[str, int]]:
    """(name, scale) of each group, in generation order."""
    out = []
    for s, n in enumerate(self.groups_per_scale):
      out += [(f"z{len(out) + j + 1}", s) for j in range(n)]
    return out

  @property
  def groups(self):
    return {g: self.resolution(s) + (self.latent_channels,) for g, s in self.group_scales}

  @property
  def analytic_kl(self) -> bool:
    return self.flow_steps == 0 and self.prior.closed_form_kl

  @property
  def gaussian_posteriors(self) -> bool:
    return not self.flow_steps

  @property
  def floats_per_draw(self) -> int:
    # The full-resolution state, its residual branch, the output: ~4 live at once.
    return 4 * self.image_shape[0] * self.image_shape[1] * self.channels

  # The pieces, each a small Flax module applied with its own params.
  def _pieces(self) -> tuple[dict[str, nn.Module], dict[str, nn.Module]]:
    c, zc = self.channels, self.latent_channels
    out_ch = math.prod(self.likelihood.output_shape(self.image_shape)[2:])
    enc = {"stem": _conv(c)}
    for s in range(self.num_scales):
      enc[f"down_{s}"] = _conv(c, stride=2)
      for j in range(self.encoder_blocks):
        enc[f"block_{s}_{j}"] = ResBlock(c, self.activation)
    dec = {}
    for g, _ in self.group_scales:
      enc[f"posterior_{g}"] = _conv(2 * zc + self.context_dim, zero=True)
      dec[f"prior_{g}"] = _conv(2 * zc, zero=True)
      dec[f"proj_{g}"] = _conv(c, size=1)
      for j in range(self.blocks_per_group):
        dec[f"block_{g}_{j}"] = ResBlock(c, self.activation)
    for s in range(self.num_scales):
      dec[f"up_{s}"] = _conv(c)
    dec["output"] = _conv(out_ch)
    return enc, dec

  def init(self, rng: jax.Array) -> Params:
    enc_mods, dec_mods = self._pieces()
    c, zc = self.channels, self.latent_channels
    keys = iter(jax.random.split(rng, len(enc_mods) + len(dec_mods) + 1))
    shapes = {"stem": self.image_shape}
    for s in range(self.num_scales):
      r = self.resolution(s)
      shapes[f"up_{s}"] = (2 * r[0], 2 * r[1], c)
    for g, s in self.group_scales:
      r = self.resolution(s)
      shapes[f"posterior_{g}"] = r + (2 * c,)
      shapes[f"proj_{g}"] = r + (zc,)
    shapes["output"] = tuple(self.image_shape[:2]) + (c,)
    default = (8, 8, c)  # convolutions and blocks that keep c channels: any size
    init = lambda name, m: m.init(next(keys), jnp.zeros(shapes.get(name, default)))["params"]
    enc = {n: init(n, m) for n, m in enc_mods.items()}
    dec = {n: init(n, m) for n, m in dec_mods.items()}
    dec["h_top"] = 0.1 * jax.random.normal(next(keys), self.resolution(0) + (c,))
    extra = jax.random.fold_in(rng, 1)  # the optional parts' keys leave the others as they were
    for i, (g, _) in enumerate(self.group_scales):
      if self.flow_steps:
        enc[f"flow_{g}"] = self.flow().init(jax.random.fold_in(extra, i))
    prior_params = self.prior.init(jax.random.fold_in(extra, len(self.group_scales)))
    if prior_params is not None:
      dec["prior"] = prior_params
    return {"encoder": enc, "decoder": dec, "likelihood": self.likelihood.init_params()}

  def _features(self, params: Params, x: jax.Array) -> list[jax.Array]:
    """The bottom-up pass: f_s at each latent resolution, top scale first."""
    mods, p = self._pieces()[0], params["encoder"]
    act = ACTIVATIONS[self.activation]
    h = self.net(mods["stem"], p["stem"], x * self.input_scale)
    feats = []
    for s in reversed(range(self.num_scales)):
      h = self.net(mods[f"down_{s}"], p[f"down_{s}"], act(h))
      for j in range(self.encoder_blocks):
        h = self.net(mods[f"block_{s}_{j}"], p[f"block_{s}_{j}"], h)
      feats.append(h)
    return feats[::-1]

  def _top_down(self, params: Params, batch: tuple[int, ...], choose) -> jax.Array:
    """Runs the generative pass for a batch of `batch` draws; at each group
    `choose(name, scale, prior, h)` returns z. Returns the likelihood's raw
    parameters (*batch, *likelihood output shape)."""
    enc_mods, mods = self._pieces()
    p = params["decoder"]
    act = ACTIVATIONS[self.activation]
    apply = lambda name, *a: self.net(mods[name], p[name], *a)
    h = jnp.broadcast_to(p["h_top"], batch + p["h_top"].shape)
    scales = self.group_scales
    for idx, (g, s) in enumerate(scales):
      prior = split_gaussian(apply(f"prior_{g}", act(h)))
      z = choose(g, s, prior, h)
      h = h + apply(f"proj_{g}", z)
      for j in range(self.blocks_per_group):
        h = apply(f"block_{g}_{j}", h)
      if idx + 1 == len(scales) or scales[idx + 1][1] != s:  # the scale's last group
        h = apply(f"up_{s}", upsample(act(h)))
    raw = apply("output", act(h))
    return raw.reshape(batch + self.likelihood.output_shape(self.image_shape))

  def _posterior(self, params: Params, g: str, prior, h, f
                 ) -> tuple[distributions.DiagGaussian, jax.Array]:
    """The Gaussian q(z_g|·) (with a flow, its base) and the flow's context."""
    enc_mods = self._pieces()[0]
    act = ACTIVATIONS[self.activation]
    f = jnp.broadcast_to(f, h.shape[:-1] + f.shape[-1:])
    out = self.net(enc_mods[f"posterior_{g}"], params["encoder"][f"posterior_{g}"],
                   act(jnp.concatenate([h, f], axis=-1)))
    zc = self.latent_channels
    d_mean, d_log_var = out[..., :zc], out[..., zc:2 * zc]
    return (distributions.DiagGaussian(prior.mean + d_mean,
                                       soft_clamp(prior.log_var + d_log_var, LOG_VAR_BOUND)),
            out[..., 2 * zc:])

  def _summary(self, params: Params, g: str, prior, h, f) -> distributions.DiagGaussian:
    q, context = self._posterior(params, g, prior, h, f)
    if not self.flow_steps:
      return q
    mean, _ = self.flow().forward(params["encoder"][f"flow_{g}"], q.mean, context)
    return distributions.DiagGaussian(mean, q.log_var)

  def draws(self, params, x, rng, num_samples, stop_grad_q=False):
    feats = self._features(params, x)
    out = {"z": {}, "log_pz": {}, "log_qz": {}, "kl": {}}
    keys = dict(zip(self.groups, jax.random.split(rng, len(self.groups))))
    top = next(iter(self.groups))
    epss = {}

    def choose(g, s, prior, h):
      q, context = self._posterior(params, g, prior, h, feats[s])
      eps = epss[g] = jax.random.normal(keys[g], q.mean.shape)
      z, out["log_qz"][g] = flows.sample_and_log_prob(
          q, eps, self.flow(), params["encoder"].get(f"flow_{g}"), context, event_ndim=3)
      out["z"][g] = z
      if g == top and not self.prior.closed_form_kl:
        out["log_pz"][g] = self.top_log_prior(params, z)
      else:
        out["log_pz"][g] = jnp.sum(prior.log_prob_per_unit(z).reshape(num_samples, -1), axis=1)
        if not self.flow_steps:
          out["kl"][g] = q.kl_per_unit(prior)
      return z

    raw = self._top_down(params, (num_samples,), choose)
    if stop_grad_q:
      # log q(z_g | z_<g, x) at the live draws, every parameter of q stopped (the
      # top-down state's too): a second top-down pass with stopped parameters.
      stopped = jax.lax.stop_gradient(params)
      stopped_feats = self._features(stopped, x)

      def density(g, s, prior, h):
        q, context = self._posterior(stopped, g, prior, h, stopped_feats[s])
        out["log_qz"][g] = flows.log_prob(q, out["z"][g], self.flow(),
                                          stopped["encoder"].get(f"flow_{g}"), context, 3,
                                          eps=epss[g])
        return out["z"][g]

      self._top_down(stopped, (num_samples,), density)
    return Draws(log_px_z=self._log_px_z(params, raw, x), **out)

  def posterior_summary(self, params, x):
    feats, out = self._features(params, x), {}

    def choose(g, s, prior, h):
      out[g] = self._summary(params, g, prior, h, feats[s])
      return out[g].mean

    self._top_down(params, (), choose)
    return out

  def sample_latents(self, params, rng, temperature=1.0, given=None):
    given = given or {}
    keys = dict(zip(self.groups, jax.random.split(rng, len(self.groups))))
    out = {}

    top = next(iter(self.groups))

    def choose(g, s, prior, h):
      if g in given:
        out[g] = given[g]
      elif g == top and not self.prior.closed_form_kl:
        out[g] = self.top_prior_sample(params, keys[g], temperature)
      else:
        out[g] = temperature_sample(prior, keys[g], temperature)
      return out[g]

    self._top_down(params, (), choose)
    return out

  def mean_image(self, params, z: Latents):
    raw = self._top_down(params, (), lambda g, s, prior, h: z[g])
    return self.likelihood.mean_image(raw, params["likelihood"])
