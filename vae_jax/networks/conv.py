"""Convolutional and ResNet encoders and decoders for 28×28×1 and 32×32×3 images.

`channels` gives one stage per entry: the encoder halves the resolution at
the start of each stage (a stride-2 3×3 convolution), then applies
`blocks_per_stage` residual blocks; the decoder mirrors it, doubling the
resolution with resize-convolutions. `blocks_per_stage=0` is the plain
convolutional network (`conv`), > 0 the ResNet (`resnet`). Default Flax
initialisation (LeCun normal) with residual branches starting at zero: see
`ResBlock`.
"""

import math
from collections.abc import Sequence

import flax.linen as nn
import jax

from vae_jax.networks.layers import ACTIVATIONS, ResBlock, upsample


class ConvEncoder(nn.Module):
  """(..., H, W, C) image -> (..., output_size)."""
  channels: Sequence[int]
  output_size: int
  blocks_per_stage: int = 0
  activation: str = "swish"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    act = ACTIVATIONS[self.activation]
    h = x
    for i, ch in enumerate(self.channels):
      h = nn.Conv(ch, (3, 3), strides=(2, 2), name=f"down_{i}")(h if i == 0 else act(h))
      for j in range(self.blocks_per_stage):
        h = ResBlock(ch, self.activation, name=f"block_{i}_{j}")(h)
    h = act(h).reshape(h.shape[:-3] + (-1,))
    return nn.Dense(self.output_size, name="output")(h)


class ConvDecoder(nn.Module):
  """(..., d) -> (..., *output_shape), output_shape = (H, W, ...): the trailing
  axes are the channels of a final 3×3 convolution, reshaped."""
  channels: Sequence[int]
  output_shape: tuple[int, ...]
  blocks_per_stage: int = 0
  activation: str = "swish"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    act = ACTIVATIONS[self.activation]
    height, width = self.output_shape[:2]
    num_stages = len(self.channels)
    h0, w0 = -(-height // 2 ** num_stages), -(-width // 2 ** num_stages)
    top = self.channels[-1]
    h = nn.Dense(h0 * w0 * top, name="input")(z).reshape(z.shape[:-1] + (h0, w0, top))
    for i in reversed(range(num_stages)):
      for j in range(self.blocks_per_stage):
        h = ResBlock(self.channels[i], self.activation, name=f"block_{i}_{j}")(h)
      out_ch = self.channels[i - 1] if i > 0 else self.channels[0]
      h = nn.Conv(out_ch, (3, 3), name=f"up_{i}")(upsample(act(h)))
    h = h[..., :height, :width, :]  # 4 -> 8 -> 16 -> 32 cropped to 28, say
    out = nn.Conv(math.prod(self.output_shape[2:]), (3, 3), name="output")(act(h))
    return out.reshape(z.shape[:-1] + self.output_shape)
