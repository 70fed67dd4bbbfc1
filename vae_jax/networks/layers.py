"""Building blocks shared by the networks."""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu, "tanh": nn.tanh, "gelu": nn.gelu, "elu": nn.elu,
    "softplus": nn.softplus, "swish": nn.swish,
}


class ResBlock(nn.Module):
  """x + conv3x3(act(conv3x3(act(x)))), pre-activation (He et al. 2016).

  No normalisation layer: batch statistics would make a per-example ELBO depend
  on the rest of the batch (and differ between training and evaluation).
  Instead the branch's last convolution starts at zero (SkipInit, De & Smith
  2020; Fixup, Zhang et al. 2019), so every block is the identity at
  initialisation and a deep stack trains as stably as a shallow one.
  """
  channels: int
  activation: str = "swish"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    act = ACTIVATIONS[self.activation]
    h = nn.Conv(self.channels, (3, 3), name="conv_0")(act(x))
    h = nn.Conv(self.channels, (3, 3), kernel_init=nn.initializers.zeros, name="conv_1")(act(h))
    return x + h


def upsample(x: jax.Array) -> jax.Array:
  """Nearest-neighbour ×2 of (..., H, W, C): with a convolution after it, a
  resize-convolution, free of transposed convolutions' checkerboard artefacts
  (Odena et al. 2016)."""
  return jnp.repeat(jnp.repeat(x, 2, axis=-3), 2, axis=-2)
