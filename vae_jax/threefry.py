"""Threefry-2x32, the hash under every jax.random key and draw, lowered for
XLA:CPU without a loop where its arrays are small, in the training steps.

JAX lowers the hash to a five-iteration while loop on the CPU. Each iteration
is up to sixteen XLA thunks (the two words' updates and copies that rotate the
key schedule through the loop state), each with a fixed cost. A training
step at batch 32 hashes four times (fold_in, split, the per-example keys,
the noise): about 190 of the step's 272 thunks, for a few hundred numbers.
Unrolled, as JAX lowers it for GPUs and TPUs, the step ran 3.5-4.5 % faster on
a 2-core AMD EPYC (the same step compiled both ways, timed in turn; 1 % at
batch 64, where only the keys' hashes are small enough). Large arrays keep a
loop: unrolled, XLA fuses the hash into each consumer of the draws and
computes it again there, and at batch 128 the step was 3.5 % slower.

Only the training steps unroll (`SmallHashesUnrolled`, given by
`backend.jit_train_step`); every other program keeps the loop, as with JAX's
own lowering: unrolled, a jitted program of many small draws compiles slowly
(a bottom-up model's jitted init: 3.5 s against 1.1 s).

The arithmetic is the hash's own (Salmon et al. 2011, "Parallel random
numbers: as easy as 1, 2, 3"; Random123's threefry2x32 with 20 rounds), so
every key and draw keeps its bits: the tests check Random123's known answers
and jax.random's draws from a process without this lowering.
"""
import contextlib
import contextvars
import math

import jax
import jax.numpy as jnp
import numpy as np

# Hashes of at most this many elements are unrolled: one per draw (jax's
# partitionable scheme), so batch 32's noise (32 × 20) is unrolled and batch
# 128's (2,560) keeps the loop.
UNROLL_MAX_ELEMENTS = 1024

_ROTATIONS = np.array([[13, 15, 26, 6], [17, 29, 16, 24]], np.uint32)
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(v: jax.Array, d) -> jax.Array:
  return (v << d) | (v >> (np.uint32(32) - d))


def hash_2x32(k1, k2, x1, x2, *, unroll: bool):
  """Threefry-2x32 of the words (x1, x2) under the key (k1, k2): 20 rounds in
  five groups of four, a key injection after each group; unrolled, or in a
  loop that rotates the key schedule and rotation constants through its state
  (as JAX's own CPU lowering does)."""
  key_shape = jnp.broadcast_shapes(jnp.shape(k1), jnp.shape(k2))
  k1, k2 = jnp.broadcast_to(k1, key_shape), jnp.broadcast_to(k2, key_shape)
  shape = jnp.broadcast_shapes(key_shape, jnp.shape(x1), jnp.shape(x2))
  words = (jnp.broadcast_to(x1 + k1, shape), jnp.broadcast_to(x2 + k2, shape))
  # Injection i uses keys i and i + 1 (mod 3) and adds i to the second word.
  keys = (k2, k1 ^ k2 ^ _PARITY, k1)
  rotations = tuple(_ROTATIONS)

  def group(count, state):
    (a, b), keys, rotations = state
    for r in rotations[0]:
      a = a + b
      b = _rotate_left(b, r) ^ a
    return ((a + keys[0], b + keys[1] + count), keys[1:] + keys[:1],
            rotations[1:] + rotations[:1])

  state = (words, keys, rotations)
  if unroll:
    for i in range(5):
      state = group(np.uint32(i + 1), state)
    return state[0]
  state = (words, keys, tuple(jnp.asarray(r) for r in rotations))
  return jax.lax.fori_loop(0, 5, lambda i, s: group((i + 1).astype(np.uint32), s), state)[0]


_unroll_small = contextvars.ContextVar("vae_jax_threefry_unroll_small", default=False)


@contextlib.contextmanager
def small_hashes_unrolled():
  """Programs lowered inside unroll their hashes of at most
  UNROLL_MAX_ELEMENTS elements (once `install_cpu_lowering` has run)."""
  token = _unroll_small.set(True)
  try:
    yield
  finally:
    _unroll_small.reset(token)


class SmallHashesUnrolled:
  """A jitted function lowered (at its first call for a signature, or by
  .lower) inside `small_hashes_unrolled`."""

  def __init__(self, jitted):
    self._jitted = jitted

  def __call__(self, *args, **kwargs):
    with small_hashes_unrolled():
      return self._jitted(*args, **kwargs)

  def lower(self, *args, **kwargs):
    with small_hashes_unrolled():
      return self._jitted.lower(*args, **kwargs)


def _cpu_lowering(k1, k2, x1, x2):
  shape = jnp.broadcast_shapes(*(jnp.shape(a) for a in (k1, k2, x1, x2)))
  try:
    small = math.prod(int(d) for d in shape) <= UNROLL_MAX_ELEMENTS
  except (TypeError, jax.errors.InconclusiveDimensionOperation):  # symbolic: the loop
    small = False
  return hash_2x32(k1, k2, x1, x2, unroll=small and _unroll_small.get())


def install_cpu_lowering() -> bool:
  """Registers `hash_2x32` as JAX's CPU lowering of the Threefry primitive,
  for programs lowered afterwards: in a loop, as JAX's own, except inside
  `small_hashes_unrolled`. Returns False, leaving JAX's own, where this JAX
  no longer exposes the primitive or the registration."""
  try:
    from jax.extend.random import threefry2x32_p
    from jax.interpreters import mlir
    mlir.register_lowering(threefry2x32_p,
                           mlir.lower_fun(_cpu_lowering, multiple_results=True),
                           platform="cpu")
  except (ImportError, AttributeError, TypeError):
    return False
  return True
