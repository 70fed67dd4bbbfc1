"""Multi-layer perceptrons: the encoder sees the flattened input."""

import math
from collections.abc import Sequence

import flax.linen as nn
import jax

from vae_jax.networks.layers import ACTIVATIONS


def _dense_stack(x: jax.Array, hidden_sizes: Sequence[int], output_size: int,
                 activation: str) -> jax.Array:
  """Called inside a compact method: its layers belong to that module."""
  act = ACTIVATIONS[activation]
  for i, size in enumerate(hidden_sizes):
    x = act(nn.Dense(size, name=f"hidden_{i}")(x))
  return nn.Dense(output_size, name="output")(x)


class MLP(nn.Module):
  """Dense layers with `activation` between them; linear when hidden_sizes=().
  Input (..., n) -> (..., output_size); `flatten_ndim` trailing axes of the
  input (an image's 3) are flattened first."""
  hidden_sizes: Sequence[int]
  output_size: int
  activation: str = "relu"
  flatten_ndim: int = 0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.flatten_ndim:
      x = x.reshape(x.shape[:x.ndim - self.flatten_ndim] + (-1,))
    return _dense_stack(x, self.hidden_sizes, self.output_size, self.activation)


class MLPDecoder(nn.Module):
  """An MLP of vectors (..., d) whose output is reshaped to (..., *output_shape)."""
  hidden_sizes: Sequence[int]
  output_shape: tuple[int, ...]
  activation: str = "relu"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    out = _dense_stack(z, self.hidden_sizes, math.prod(self.output_shape), self.activation)
    return out.reshape(z.shape[:-1] + self.output_shape)
