"""The CPU lowering of Threefry-2x32 (vae_jax.threefry) keeps every bit."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

from vae_jax import backend, threefry  # noqa: F401 -- backend installs the lowering

# Random123's known answers for threefry2x32 with 20 rounds (its kat_vectors):
# (key, counter) -> output, all as pairs of 32-bit words.
KNOWN_ANSWERS = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6b200159, 0x99ba4efe)),
    ((0xffffffff, 0xffffffff), (0xffffffff, 0xffffffff), (0x1cb996fc, 0xbb002be7)),
    ((0x13198a2e, 0x03707344), (0x243f6a88, 0x85a308d3), (0xc4923a9c, 0x483df7a0)),
]


def _words(pairs, i):
  return np.array([p[i] for p in pairs], np.uint32)


@pytest.mark.parametrize("unroll", [True, False])
def test_hash_gives_random123_known_answers(unroll):
  keys, counters, answers = zip(*KNOWN_ANSWERS)
  # The key per element, as the per-example keys of a batch are.
  a, b = jax.jit(lambda *w: threefry.hash_2x32(*w, unroll=unroll))(
      _words(keys, 0), _words(keys, 1), _words(counters, 0), _words(counters, 1))
  np.testing.assert_array_equal(a, _words(answers, 0))
  np.testing.assert_array_equal(b, _words(answers, 1))


@pytest.mark.parametrize("unrolled", [True, False])
@pytest.mark.parametrize("size", [4, threefry.UNROLL_MAX_ELEMENTS + 1])
def test_registered_lowering_gives_known_answers(size, unrolled):
  # jax's hash of a counter array: its first half are the first words, its
  # second half the second words, all under one key.
  for key, counter, answer in KNOWN_ANSWERS:
    count = np.zeros(2 * size, np.uint32)
    count[3], count[size + 3] = counter
    fn = jax.jit(threefry_2x32)
    out = (threefry.SmallHashesUnrolled(fn) if unrolled else fn)(np.array(key, np.uint32), count)
    assert (int(out[3]), int(out[size + 3])) == answer


REFERENCE = """
import sys
import jax, jax.numpy as jnp, numpy as np
def draws():
  k = jax.random.key(7)
  per_example = jax.random.split(jax.random.fold_in(k, 3), 32)
  return {
      "split": jax.random.key_data(jax.random.split(k, 2)),
      "fold_in": jax.random.key_data(jax.random.fold_in(k, 123456)),
      "normal_32x20": jax.random.normal(k, (32, 20)),
      "normal_128x20": jax.random.normal(k, (128, 20)),
      "normal_odd": jax.random.normal(k, (1025,)),
      "per_example": jax.vmap(lambda kk: jax.random.normal(kk, (20,)))(per_example),
      "bernoulli": jax.random.bernoulli(k, 0.3, (64, 784)),
      "keys_2000": jax.random.key_data(jax.random.split(k, 2000)),
  }
out = {n: np.asarray(v) for n, v in jax.jit(draws)().items()}
np.savez(sys.argv[1], **out)
"""


def test_draws_equal_jax_own_lowering(tmp_path):
  # The reference: a process that never imports vae_jax, so JAX's own lowering.
  path = tmp_path / "reference.npz"
  subprocess.run([sys.executable, "-c", REFERENCE, str(path)], check=True,
                 env={**os.environ, "JAX_PLATFORMS": "cpu"})
  reference = np.load(path)
  namespace = {}
  exec(REFERENCE.split("out =")[0], namespace)  # the same `draws`, here
  for jitted in (jax.jit(namespace["draws"]),
                 threefry.SmallHashesUnrolled(jax.jit(namespace["draws"]))):
    ours = {n: np.asarray(v) for n, v in jitted().items()}
    assert sorted(ours) == sorted(reference.files)
    for name in reference.files:
      np.testing.assert_array_equal(ours[name], reference[name], err_msg=name)


def _has_loop(n: int, unrolled: bool) -> bool:
  jitted = jax.jit(lambda k: jax.random.normal(k, (n,)))
  program = (threefry.SmallHashesUnrolled(jitted) if unrolled else jitted).lower(
      jax.random.key(0))
  return " while(" in program.compile().as_text()


def test_only_small_hashes_asked_for_compile_without_a_loop():
  # jax hashes a counter per draw (its partitionable scheme, the default).
  assert jax.config.jax_threefry_partitionable
  assert not _has_loop(32 * 20, unrolled=True)  # batch 32's noise, as measured
  assert not _has_loop(threefry.UNROLL_MAX_ELEMENTS, unrolled=True)
  assert _has_loop(threefry.UNROLL_MAX_ELEMENTS + 1, unrolled=True)
  assert _has_loop(32 * 20, unrolled=False)  # elsewhere: JAX's loop


def test_a_symbolic_shape_keeps_the_loop():
  with threefry.small_hashes_unrolled():
    exported = jax.export.export(jax.jit(lambda k, x: jax.random.normal(k, x.shape)),
                                 platforms=["cpu"])(
        jax.random.key(0), jax.ShapeDtypeStruct(jax.export.symbolic_shape("n"), np.float32))
  np.testing.assert_array_equal(exported.call(jax.random.key(0), np.zeros(5, np.float32)),
                                jax.random.normal(jax.random.key(0), (5,)))
