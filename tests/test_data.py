"""Datasets, preprocessing, shuffling and batching."""

import re
import time

import jax
import numpy as np
import pytest

from vae_jax import config as config_lib
from vae_jax import data
from vae_jax.errors import UserError


def _data_config(**overrides):
  c = config_lib.default().data
  for k, v in overrides.items():
    c[k] = v
  return c


def test_digits_splits_are_disjoint_fixed_and_complete():
  d = data.load(_data_config(validation_size=100, test_size=300), "binomial")
  assert d.spec == data.DataSpec((8, 8, 1), 17)
  assert (len(d.train), len(d.validation), len(d.test)) == (1397, 100, 300)
  assert d.train.max() == 16 and d.test.max() == 16
  all_images = np.concatenate([d.train.astype(np.float32), d.validation, d.test])
  from sklearn.datasets import load_digits
  original = load_digits().images.reshape(len(all_images), -1)
  # Every image appears exactly once across the three splits.
  got = np.sort(all_images.reshape(len(all_images), -1).view(np.dtype((np.void, 256))), 0)
  want = np.sort(original.astype(np.float32).view(np.dtype((np.void, 256))), 0)
  assert np.array_equal(got, want)
  again = data.load(_data_config(validation_size=100, test_size=300), "binomial")
  assert np.array_equal(again.test, d.test)


def test_static_and_dynamic_binarisation():
  static = data.load(_data_config(binarize="static"), "bernoulli")
  assert static.spec.num_levels == 2 and static.train_transform == "none"
  assert set(np.unique(static.train)) <= {0.0, 1.0}
  assert np.array_equal(static.test, data.load(_data_config(binarize="static"),
                                               "bernoulli").test)  # fixed seed
  dyn = data.load(_data_config(binarize="dynamic"), "bernoulli")
  assert dyn.train_transform == "binarize" and dyn.train.max() == 16
  np.testing.assert_array_equal(dyn.test, static.test)  # test binarised once, same seed
  fn = data.train_transform("binarize", 17)
  x = np.full((20000,), 4, np.uint8)  # p = 4/16
  b1, b2 = fn(x, jax.random.key(0)), fn(x, jax.random.key(1))
  assert set(np.unique(b1)) <= {0.0, 1.0}
  assert abs(float(b1.mean()) - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 20000)
  assert not np.array_equal(b1, b2)  # fresh draws per step


def test_dequantisation_stays_in_its_bin():
  d = data.load(_data_config(dequantize=True), "gaussian")
  assert d.spec.dequantized and d.train_transform == "dequantize"
  assert d.test.min() >= 0 and d.test.max() < 1
  y = np.asarray(data.train_transform("dequantize", 17)(d.train[:50], jax.random.key(0)))
  np.testing.assert_array_equal(np.floor(y * 17), d.train[:50])


def test_batch_indices_are_a_pure_function_of_seed_and_epoch():
  n, b = 103, 10  # 10 steps per epoch, 3 examples dropped each epoch
  idx = data.batch_indices(seed=3, first_step=0, num_steps=25, n=n, batch_size=b)
  assert idx.shape == (25, 10)
  epoch0 = idx[:10].ravel()
  assert len(set(epoch0)) == 100 and set(epoch0) <= set(range(n))
  assert not np.array_equal(idx[:10], idx[10:20])  # a new order each epoch
  np.testing.assert_array_equal(
      data.batch_indices(seed=3, first_step=13, num_steps=12, n=n, batch_size=b), idx[13:])
  assert not np.array_equal(
      data.batch_indices(seed=4, first_step=0, num_steps=10, n=n, batch_size=b), idx[:10])


def test_eval_batches_pad_and_mask():
  images = np.arange(7 * 2, dtype=np.float32).reshape(7, 2)
  batches = list(data.eval_batches(images, 3))
  assert [int(m.sum()) for _, m in batches] == [3, 3, 1]
  np.testing.assert_array_equal(np.concatenate([b[m] for b, m in batches]), images)


def test_npz_with_and_without_test_arrays(tmp_path):
  rng = np.random.default_rng(0)
  path = tmp_path / "x.npz"
  np.savez(path, image=rng.integers(0, 256, (50, 5, 4), dtype=np.uint8),
           label=np.arange(50))
  d = data.load(_data_config(name="npz", path=str(path), test_size=10, validation_size=5),
                "discretized_logistic")
  assert d.spec == data.DataSpec((5, 4, 1), 256)
  assert (len(d.train), len(d.validation), len(d.test)) == (35, 5, 10)
  np.testing.assert_array_equal(d.test_labels, np.arange(40, 50))  # the last 10
  np.savez(path, image=rng.integers(0, 2, (20, 3, 3), dtype=np.uint8),
           test_image=rng.integers(0, 2, (6, 3, 3), dtype=np.uint8))
  d = data.load(_data_config(name="npz", path=str(path), num_levels=2, validation_size=4),
                "bernoulli")
  assert (len(d.train), len(d.test)) == (16, 6)


@pytest.mark.parametrize("arrays,likelihood,message", [
    ({"images": np.zeros((4, 2, 2), np.uint8)}, "binomial", "needs one named 'image'"),
    ({"image": np.zeros((4, 2), np.uint8)}, "binomial", "expected (N, H, W)"),
    ({"image": np.zeros((0, 2, 2), np.uint8)}, "binomial", "is empty"),
    ({"image": np.full((9, 2, 2), np.nan, np.float32)}, "gaussian", "NaN"),
    ({"image": np.zeros((9, 2, 2), np.int32)}, "binomial", "data.num_levels"),
    ({"image": np.zeros((9, 2, 2), np.float32)}, "bernoulli", "needs binary pixels"),
    ({"image": np.zeros((9, 2, 2), np.uint8), "test_image": np.zeros((3, 3, 3), np.uint8)},
     "binomial", "must match"),
    ({"image": np.zeros((9, 2, 2), np.uint8)}, "gaussian", "data.dequantize=True"),
])
def test_npz_bad_input_is_one_clear_error(tmp_path, arrays, likelihood, message):
  path = tmp_path / "bad.npz"
  np.savez(path, **arrays)
  with pytest.raises(UserError, match=re.escape(message)):
    data.load(_data_config(name="npz", path=str(path), validation_size=2, test_size=2),
              likelihood)


def test_npz_refuses_pickles_and_missing_files(tmp_path):
  path = tmp_path / "obj.npz"
  np.savez(path, image=np.array([{"a": 1}], dtype=object))
  with pytest.raises(UserError, match="without pickles"):
    data.load(_data_config(name="npz", path=str(path)), "binomial")
  with pytest.raises(UserError, match="does not exist"):
    data.load(_data_config(name="npz", path=str(tmp_path / "none.npz")), "binomial")


def test_validation_size_too_large():
  with pytest.raises(UserError, match="leaves no training data"):
    data.load(_data_config(validation_size=5000), "binomial")


# ------------------------------------------------ tfds (in-process: the mock
# does not reach subprocesses)

def test_tfds_mnist_under_mock():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=30):
    d = data.load(_data_config(name="mnist", binarize="dynamic", validation_size=10),
                  "bernoulli")
  assert d.spec == data.DataSpec((28, 28, 1), 2)
  assert (len(d.train), len(d.validation), len(d.test)) == (20, 10, 30)
  assert d.raw_levels == 256 and d.train_transform == "binarize"
  assert set(np.unique(d.test)) <= {0.0, 1.0}


def test_tfds_binarized_mnist_uses_its_splits_and_checks_values():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=12, max_value=2):  # pixels 0..1
    d = data.load(_data_config(name="binarized_mnist"), "bernoulli")
  assert (len(d.train), len(d.validation), len(d.test)) == (12, 12, 12)
  with tfds.testing.mock_data(num_examples=12):  # the mock's default: 0..254
    with pytest.raises(UserError, match=r"pixel values 0\.\.25[0-9], outside 0\.\.1"):
      data.load(_data_config(name="binarized_mnist"), "bernoulli")


def test_tfds_offline_fails_fast_naming_the_options(tmp_path, monkeypatch):
  pytest.importorskip("tensorflow_datasets")
  monkeypatch.setattr(data, "_network_reachable", lambda *a, **k: False)
  start = time.time()
  with pytest.raises(UserError, match="data.name=digits.*npz.*data_dir"):
    data.load(_data_config(name="mnist", data_dir=str(tmp_path)), "binomial")
  with pytest.raises(UserError, match="data.download=False"):
    data.load(_data_config(name="fashion_mnist", data_dir=str(tmp_path), download=False),
              "binomial")
  assert time.time() - start < 10



def test_process_shards_are_disjoint_equal_and_keep_evaluation_whole():
  c = _data_config(validation_size=100, test_size=300)
  whole = data.load(c, "binomial")
  parts = [data.load(c, "binomial", shard=(i, 3)) for i in range(3)]
  size = len(whole.train) // 3  # 1397 // 3: the last 2 examples are left out
  assert [len(p.train) for p in parts] == [size] * 3
  np.testing.assert_array_equal(np.concatenate([p.train for p in parts]),
                                whole.train[:3 * size])
  for p in parts:
    np.testing.assert_array_equal(p.test, whole.test)
    np.testing.assert_array_equal(p.validation, whole.validation)
  # Each process shuffles its shard in its own order; no stream is the 1-process order.
  a, b = (data.batch_indices(0, 0, 1, size, 8, stream=s) for s in (0, 1))
  assert not np.array_equal(a, b)
  np.testing.assert_array_equal(data.batch_indices(0, 0, 1, size, 8),
                                data.epoch_permutation(0, 0, size)[None, :8])


def test_tfds_process_reads_only_its_share(monkeypatch):
  """From tfds a process asks only for its `train[a:b]` (and the held-out
  validation); the shares put together are the single-process training set."""
  tfds = pytest.importorskip("tensorflow_datasets")
  full = np.random.default_rng(0).integers(0, 256, (30, 28, 28, 1)).astype(np.uint8)
  labels, asked = np.arange(30), []

  def fake_split(builder, name, split, download):
    asked.append(split)
    if split in ("train", "test"):
      return full, labels
    lo, _, hi = split[len("train["):-1].partition(":")
    part = slice(int(lo), int(hi) if hi else None)
    return full[part], labels[part]

  monkeypatch.setattr(data, "_tfds_split", fake_split)
  c = _data_config(name="mnist", binarize="dynamic", validation_size=6)
  with tfds.testing.mock_data(num_examples=30):
    whole = data.load(c, "bernoulli")
    monkeypatch.setattr(data, "_split_sizes", lambda builder: {"train": 30, "test": 30})
    asked.clear()
    parts = [data.load(c, "bernoulli", shard=(i, 2)) for i in range(2)]
  assert [a for a in asked if a.startswith("train")] == [
      "train[24:]", "train[0:12]", "train[24:]", "train[12:24]"]
  np.testing.assert_array_equal(np.concatenate([p.train for p in parts]), whole.train)
  for p in parts:
    np.testing.assert_array_equal(p.validation, whole.validation)
    np.testing.assert_array_equal(p.test, whole.test)


def test_digits_are_scikit_learns_without_importing_it():
  """The embedded default reads scikit-learn's digits file itself (its import
  was a sixth of a warm `make run`): the same images and labels as
  sklearn.datasets.load_digits."""
  from sklearn.datasets import load_digits
  images, labels = data.digits_arrays()
  d = load_digits()
  assert images.shape == (1797, 8, 8) and images.max() == 16
  np.testing.assert_array_equal(images, d.images.astype(np.int64))
  np.testing.assert_array_equal(labels, d.target)
