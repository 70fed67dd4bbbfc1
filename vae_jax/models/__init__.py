"""Latent-variable models, one module per latent structure, each implementing
`base.LatentVariableModel`; `build` makes the one `config.model.name` names.

  flat       one latent vector (the VAE of Kingma & Welling 2014)
  bottom_up  a stack of stochastic layers (the IWAE paper's two-layer model)
  top_down   a hierarchy of spatial groups with top-down inference (Ladder VAE, NVAE)
"""

import math
from collections.abc import Callable

import ml_collections

from vae_jax import flows, likelihoods, networks, priors
from vae_jax.errors import UserError
from vae_jax.models.base import Draws, LatentVariableModel, Params
from vae_jax.models.bottom_up import BottomUp
from vae_jax.models.flat import Flat
from vae_jax.models.top_down import TopDown

__all__ = ["Draws", "LatentVariableModel", "Params", "Flat", "BottomUp", "TopDown", "build",
           "NAMES"]


def _common(c: ml_collections.ConfigDict, spec) -> dict:
  shape = tuple(spec.image_shape)
  if c.likelihood == "discretized_mix_logistic" and (len(shape) != 3 or shape[-1] not in (1, 3)):
    raise UserError(f"model.likelihood=discretized_mix_logistic needs (H, W, 1) or (H, W, 3) "
                    f"images, the data have shape {shape}; use model.likelihood="
                    "discretized_logistic")
  lik = likelihoods.build(c, spec.num_levels)
  input_scale = 1.0
  if c.likelihood in likelihoods.INTEGER_PIXELS:
    input_scale = 1.0 / (spec.num_levels - 1)  # integer pixels -> [0, 1]
  offset = -math.prod(spec.image_shape) * math.log(spec.num_levels) if spec.dequantized else 0.0
  return dict(image_shape=tuple(spec.image_shape), likelihood=lik, input_scale=input_scale,
              log_prob_offset=offset)


def _prior(c, spec, top_shape: tuple[int, ...]) -> priors.Prior:
  """config.model.prior over the top group (shape `top_shape`)."""
  return priors.Prior(c.prior, c.prior_components, tuple(top_shape), tuple(spec.image_shape))


def _flow_steps(c) -> int:
  return c.flow_steps if c.posterior == "iaf" else 0


def _flat(c, spec) -> Flat:
  kw = _common(c, spec)
  steps = _flow_steps(c)
  flow = flows.IAF(c.latent_dim, c.flow_hidden, steps, c.flow_hidden) if steps else None
  context = c.flow_hidden if steps else 0
  return Flat(encoder=networks.encoder(c, 2 * c.latent_dim + context, len(spec.image_shape)),
              decoder=networks.decoder(c, kw["likelihood"].output_shape(kw["image_shape"])),
              latent_dim=c.latent_dim, prior=_prior(c, spec, (c.latent_dim,)), flow=flow, **kw)


def _bottom_up(c, spec) -> BottomUp:
  kw = _common(c, spec)
  dims = tuple(c.latent_dims)
  if len(c.stochastic_hidden) != len(dims) - 1:
    raise UserError(f"config.model.stochastic_hidden has {len(c.stochastic_hidden)} entries for "
                    f"{len(dims)} latent layers (model.latent_dims={dims}); give one tuple of "
                    "hidden sizes per pair of adjacent layers")
  steps = _flow_steps(c)
  context = c.flow_hidden if steps else 0
  return BottomUp(x_encoder=networks.encoder(c, 2 * dims[0] + context, len(spec.image_shape)),
                  x_decoder=networks.decoder(c, kw["likelihood"].output_shape(kw["image_shape"])),
                  latent_dims=dims, stochastic_hidden=tuple(map(tuple, c.stochastic_hidden)),
                  activation=c.activation, kernel_init=c.kernel_init,
                  latent_variance=c.latent_variance,
                  prior=_prior(c, spec, (dims[-1],)), flow_steps=steps,
                  flow_hidden=c.flow_hidden, **kw)


def _top_down(c, spec) -> TopDown:
  kw = _common(c, spec)
  shape, scales = tuple(spec.image_shape), len(c.groups_per_scale)
  if len(shape) != 3 or shape[0] % 2 ** scales or shape[1] % 2 ** scales:
    raise UserError(f"config.model.groups_per_scale has {scales} scales: the image "
                    f"{shape} must be (H, W, C) with H and W divisible by 2^{scales}; use "
                    "fewer scales")
  top = tuple(s // 2 ** scales for s in shape[:2]) + (c.latent_channels,)
  return TopDown(channels=c.width, latent_channels=c.latent_channels,
                 groups_per_scale=tuple(c.groups_per_scale), blocks_per_group=c.blocks_per_group,
                 encoder_blocks=c.encoder_blocks, activation=c.activation,
                 prior=_prior(c, spec, top), flow_steps=_flow_steps(c),
                 flow_hidden=c.flow_hidden, **kw)


BUILDERS: dict[str, Callable[..., LatentVariableModel]] = {
    "flat": _flat, "bottom_up": _bottom_up, "top_down": _top_down}
NAMES = tuple(BUILDERS)


def build(model_config: ml_collections.ConfigDict, data_spec) -> LatentVariableModel:
  """The model `config.model` describes, for data described by `data_spec`."""
  return BUILDERS[model_config.name](model_config, data_spec)
