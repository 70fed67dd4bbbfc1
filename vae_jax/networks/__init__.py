"""Flax Linen networks, looked up by name: `mlp`, `conv`, `resnet`.

An *encoder* maps one image (H, W, C) — or any array, flattened — to a vector
of `output_size`; a *decoder* maps vectors (..., d) to arrays (..., *output_shape)
(an image's likelihood parameters). They know nothing about latents or losses:
the models in `vae_jax.models` decide what the vectors mean.
"""

from collections.abc import Callable

import flax.linen as nn
import ml_collections

from vae_jax.networks.conv import ConvDecoder, ConvEncoder
from vae_jax.networks.layers import ACTIVATIONS, ResBlock
from vae_jax.networks.mlp import KERNEL_INITS, MLP, MLPDecoder

__all__ = ["ACTIVATIONS", "KERNEL_INITS", "MLP", "MLPDecoder", "ConvEncoder", "ConvDecoder",
           "ResBlock", "NAMES", "encoder", "decoder"]

NAMES = ("mlp", "conv", "resnet")


def _conv_kwargs(c: ml_collections.ConfigDict, name: str) -> dict:
  # `conv` is `resnet` with no residual blocks: one code path for both.
  return dict(channels=tuple(c.channels),
              blocks_per_stage=c.blocks_per_stage if name == "resnet" else 0,
              activation=c.activation)


_ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": lambda c, n, out, ndim: MLP(tuple(c.encoder_hidden), out, c.activation, ndim,
                                       c.kernel_init),
    "conv": lambda c, n, out, ndim: ConvEncoder(output_size=out, **_conv_kwargs(c, n)),
    "resnet": lambda c, n, out, ndim: ConvEncoder(output_size=out, **_conv_kwargs(c, n)),
}
_DECODERS: dict[str, Callable[..., nn.Module]] = {
    "mlp": lambda c, n, shape: MLPDecoder(tuple(c.decoder_hidden), shape, c.activation,
                                          c.kernel_init),
    "conv": lambda c, n, shape: ConvDecoder(output_shape=shape, **_conv_kwargs(c, n)),
    "resnet": lambda c, n, shape: ConvDecoder(output_shape=shape, **_conv_kwargs(c, n)),
}


def encoder(c: ml_collections.ConfigDict, output_size: int, input_ndim: int = 3) -> nn.Module:
  """The encoder `config.model.encoder` names, emitting `output_size` numbers
  from an input of `input_ndim` axes (an image's 3)."""
  return _ENCODERS[c.encoder](c, c.encoder, output_size, input_ndim)


def decoder(c: ml_collections.ConfigDict, output_shape: tuple[int, ...]) -> nn.Module:
  """The decoder `config.model.decoder` names, emitting (..., *output_shape)."""
  return _DECODERS[c.decoder](c, c.decoder, tuple(output_shape))
