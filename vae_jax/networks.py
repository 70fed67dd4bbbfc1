"""Flax Linen encoder and decoder networks, looked up by name.

Networks map flat vectors to flat vectors and know nothing about likelihoods
or losses; `model.py` reshapes and interprets their outputs.
"""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu, "tanh": nn.tanh, "gelu": nn.gelu, "elu": nn.elu,
    "softplus": nn.softplus, "swish": nn.swish,
}


class MLP(nn.Module):
  """Dense layers with `activation` between them; linear when hidden_sizes=()."""
  hidden_sizes: Sequence[int]
  output_size: int
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    act = ACTIVATIONS[self.activation]
    for i, size in enumerate(self.hidden_sizes):
      x = act(nn.Dense(size, name=f"hidden_{i}")(x))
    return nn.Dense(self.output_size, name="output")(x)


# name -> constructor(hidden_sizes, output_size, activation). A new
# architecture (convolutional, ResNet) registers here under its own name.
NETWORKS: dict[str, Callable[..., nn.Module]] = {"mlp": MLP}
