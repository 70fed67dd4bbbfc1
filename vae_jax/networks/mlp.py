"""Multi-layer perceptrons: the encoder sees the flattened input."""

import math
from collections.abc import Sequence

import flax.linen as nn
import jax

from vae_jax.networks.layers import ACTIVATIONS

# Weight initialisations by name (biases start at zero). 'lecun_normal', Flax's
# default, has variance 1/fan_in (right for ReLU-free, self-normalising stacks);
# 'glorot_uniform' (Glorot & Bengio 2010), variance 2/(fan_in + fan_out), is
# what the IWAE paper's code used for its tanh networks.
KERNEL_INITS = {"lecun_normal": nn.initializers.lecun_normal(),
                "glorot_uniform": nn.initializers.glorot_uniform()}


def _dense_stack(x: jax.Array, hidden_sizes: Sequence[int], output_size: int,
                 activation: str, kernel_init: str) -> jax.Array:
  """Called inside a compact method: its layers belong to that module."""
  act, init = ACTIVATIONS[activation], KERNEL_INITS[kernel_init]
  for i, size in enumerate(hidden_sizes):
    x = act(nn.Dense(size, kernel_init=init, name=f"hidden_{i}")(x))
  return nn.Dense(output_size, kernel_init=init, name="output")(x)


class MLP(nn.Module):
  """Dense layers with `activation` between them; linear when hidden_sizes=().
  Input (..., n) -> (..., output_size); `flatten_ndim` trailing axes of the
  input (an image's 3) are flattened first."""
  hidden_sizes: Sequence[int]
  output_size: int
  activation: str = "relu"
  flatten_ndim: int = 0
  kernel_init: str = "lecun_normal"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.flatten_ndim:
      x = x.reshape(x.shape[:x.ndim - self.flatten_ndim] + (-1,))
    return _dense_stack(x, self.hidden_sizes, self.output_size, self.activation,
                        self.kernel_init)


class MLPDecoder(nn.Module):
  """An MLP of vectors (..., d) whose output is reshaped to (..., *output_shape)."""
  hidden_sizes: Sequence[int]
  output_shape: tuple[int, ...]
  activation: str = "relu"
  kernel_init: str = "lecun_normal"

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    out = _dense_stack(z, self.hidden_sizes, math.prod(self.output_shape), self.activation,
                       self.kernel_init)
    return out.reshape(z.shape[:-1] + self.output_shape)
