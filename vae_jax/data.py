"""Datasets by name, preprocessing, splits, shuffling and batching.

Every source yields integer pixels with a known number of levels L (2 for
binary, 17 for the 0..16 digits, 256 for 8-bit images) or, for user arrays,
continuous floats. Preparation then fixes the evaluation splits once
(binarised or dequantised with fixed seeds) and leaves the training split raw,
so that dynamic binarisation and dequantisation draw fresh noise at each step
on the device (`train_transform`).

Shuffling is a pure function of (seed, epoch): step s of any run reads the same
examples, which is what makes resumed runs exact.
"""

import dataclasses
import importlib.util
import os
import socket
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from vae_jax import likelihoods
from vae_jax.errors import UserError

_OFFLINE_OPTIONS = ("use --config.data.name=digits (embedded), --config.data.name=npz "
                    "--config.data.path=FILE.npz, or --config.data.data_dir=DIR holding a "
                    "prepared tfds copy")


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """What the model needs to know about the data it sees."""
  image_shape: tuple[int, ...]
  num_levels: int | None  # None: continuous values
  dequantized: bool = False


@dataclasses.dataclass
class Data:
  """Prepared splits: `train` raw, `validation` and `test` model-ready float32."""
  spec: DataSpec
  train: np.ndarray
  train_transform: str  # 'none' | 'binarize' | 'dequantize', applied per step
  raw_levels: int | None  # levels of the raw train pixels (before binarisation)
  validation: np.ndarray
  test: np.ndarray
  validation_labels: np.ndarray | None = None
  test_labels: np.ndarray | None = None


def pixel_sums(data: Data) -> tuple[np.ndarray, int]:
  """The training pixels summed over examples, in [0, 1] units (float64), and
  the count: a mean that processes can combine from their shards."""
  scale = 1.0 if data.raw_levels is None else 1.0 / (data.raw_levels - 1)
  return data.train.sum(axis=0, dtype=np.float64) * scale, len(data.train)


@dataclasses.dataclass
class _Source:
  """Arrays as a source gives them: (N, H, W, C) pixels and optional labels."""
  train: np.ndarray
  train_labels: np.ndarray | None
  test: np.ndarray
  test_labels: np.ndarray | None
  num_levels: int | None
  validation: np.ndarray | None = None
  validation_labels: np.ndarray | None = None
  sharded: bool = False  # `train` is already this process's share (see `load`)


def _split_off(images, labels, n, rng_seed=None, field="data.test_size"):
  """(rest, rest_labels, held, held_labels): the last n, after a fixed shuffle if seeded."""
  if n >= len(images):
    raise UserError(f"{field}={n} leaves no training data ({len(images)} examples); lower it")
  order = np.arange(len(images))
  if rng_seed is not None:
    order = np.random.default_rng(rng_seed).permutation(len(images))
  rest, held = order[:len(images) - n], order[len(images) - n:]
  take = lambda a, i: None if a is None else a[i]
  return take(images, rest), take(labels, rest), take(images, held), take(labels, held)


# ---------------------------------------------------------------- sources


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's 8×8 handwritten digits, (1797, 8, 8) levels 0..16 and labels,
  read from the file `sklearn.datasets.load_digits` reads, without importing
  scikit-learn: that import was a sixth of `make run`'s warm start (0.6-1 s)."""
  spec = importlib.util.find_spec("sklearn")
  if spec is None or not spec.submodule_search_locations:
    raise UserError("data.name=digits needs scikit-learn (its 8×8 digits file); "
                    "pip install -r requirements.txt")
  path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
  if not os.path.exists(path):  # a private path: if a release moves it, the public way
    from sklearn.datasets import load_digits
    d = load_digits()
    return d.images.astype(np.int64), d.target.astype(np.int64)
  table = np.loadtxt(path, delimiter=",", dtype=np.int64)
  return table[:, :-1].reshape(-1, 8, 8), table[:, -1]


def _load_digits(c: ml_collections.ConfigDict) -> _Source:
  """scikit-learn's 8×8 handwritten digits (1,797 images, levels 0..16), offline."""
  images, labels = digits_arrays()
  train, train_labels, test, test_labels = _split_off(
      images.astype(np.uint8)[..., None], labels, c.test_size, rng_seed=c.split_seed)
  return _Source(train, train_labels, test, test_labels, num_levels=17)


def _as_nhwc(a: np.ndarray, what: str) -> np.ndarray:
  if a.ndim == 3:
    a = a[..., None]
  if a.ndim != 4:
    raise UserError(f"{what} has shape {a.shape}; expected (N, H, W) or (N, H, W, C)")
  if len(a) == 0:
    raise UserError(f"{what} is empty; give it at least one example")
  return a


def _npz_levels(images: np.ndarray, c: ml_collections.ConfigDict, path: str) -> int | None:
  if np.issubdtype(images.dtype, np.floating):
    if c.num_levels is not None:
      raise UserError(f"{path}: 'image' holds floats (continuous pixels) but data.num_levels="
                      f"{c.num_levels} is set; unset it, or give integer pixels")
    return None
  if not np.issubdtype(images.dtype, np.integer):
    raise UserError(f"{path}: 'image' has dtype {images.dtype}; expected integers or floats")
  if c.num_levels is not None:
    return c.num_levels
  if images.dtype == np.uint8:
    return 256
  raise UserError(f"{path}: integer pixels of dtype {images.dtype}; set "
                  "--config.data.num_levels to the number of grey levels")


NPZ_ARRAYS = ("image", "label", "test_image", "test_label")


def _check_npz(arrays: dict[str, np.ndarray], levels: int | None, path: str) -> None:
  """Every array of a user file against the others, before anything trains:
  labels as long as their images, test arrays like the training ones, pixels
  finite and within the levels."""
  unknown = sorted(set(arrays) - set(NPZ_ARRAYS))
  if unknown:
    raise UserError(f"{path} has arrays {unknown} that nothing reads; it may hold only "
                    f"{', '.join(NPZ_ARRAYS)} (a misspelt name would be ignored)")
  if "test_label" in arrays and "test_image" not in arrays:
    raise UserError(f"{path} has 'test_label' but no 'test_image'; add the test images or "
                    "drop the labels")
  for images_key, labels_key in (("image", "label"), ("test_image", "test_label")):
    if labels_key not in arrays:
      continue
    images, labels = arrays[images_key], arrays[labels_key]
    if labels.ndim != 1 or len(labels) != len(images):
      raise UserError(f"{path}: '{labels_key}' has shape {labels.shape} but '{images_key}' "
                      f"has {len(images)} examples; give one label per example, shape "
                      f"({len(images)},)")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
      raise UserError(f"{path}: '{labels_key}' has dtype {labels.dtype}; labels must be "
                      "integers")
  for key in ("image", "test_image"):
    if key not in arrays:
      continue
    a = arrays[key]
    if key == "test_image" and (np.issubdtype(a.dtype, np.floating)
                                != np.issubdtype(arrays["image"].dtype, np.floating)):
      raise UserError(f"{path}: 'test_image' has dtype {a.dtype} but 'image' has "
                      f"{arrays['image'].dtype}; give both integer or both float pixels")
    if levels is None:
      if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        raise UserError(f"{path}: '{key}' holds NaN or Inf pixels; clean the array first")
    elif a.size and (int(a.min()) < 0 or int(a.max()) > levels - 1):
      raise UserError(f"{path}: '{key}' has pixel values {int(a.min())}..{int(a.max())}, "
                      f"outside 0..{levels - 1} for {levels} levels; set "
                      "--config.data.num_levels or rescale the array")


def _load_npz(c: ml_collections.ConfigDict) -> _Source:
  """User arrays: keys 'image' [, 'label', 'test_image', 'test_label']."""
  path = os.path.expanduser(c.path)
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except FileNotFoundError:
    raise UserError(f"data.path {path!r} does not exist; give an .npz file") from None
  except (ValueError, OSError) as e:
    raise UserError(f"data.path {path!r} is not a readable .npz without pickles ({e})"
                    ) from None
  if "image" not in arrays:
    raise UserError(f"{path} has arrays {sorted(arrays)}; it needs one named 'image' "
                    "(N, H, W[, C]), optionally 'label', 'test_image', 'test_label'")
  images = _as_nhwc(arrays["image"], f"{path}: 'image'")
  labels = arrays.get("label")
  levels = _npz_levels(images, c, path)
  _check_npz(arrays, levels, path)
  if "test_image" in arrays:
    test = _as_nhwc(arrays["test_image"], f"{path}: 'test_image'")
    if test.shape[1:] != images.shape[1:]:
      raise UserError(f"{path}: 'test_image' has shape {test.shape[1:]} per example but "
                      f"'image' has {images.shape[1:]}; they must match")
    return _Source(images, labels, test, arrays.get("test_label"), levels)
  # No test arrays: hold out the last test_size examples (MNIST's usual convention).
  train, train_labels, test, test_labels = _split_off(images, labels, c.test_size)
  return _Source(train, train_labels, test, test_labels, levels)


def _load_linear_gaussian(c: ml_collections.ConfigDict) -> _Source:
  """Synthetic continuous data with a known pPCA optimum (vae_jax.linear_gaussian)."""
  from vae_jax import linear_gaussian
  images = linear_gaussian.generate(c.split_seed)
  train, _, test, _ = _split_off(images, None, c.test_size)
  return _Source(train, None, test, None, num_levels=None)


# tfds name -> (grey levels, the splits the dataset has).
TFDS_DATASETS = {
    "mnist": (256, ("train", "test")),
    "fashion_mnist": (256, ("train", "test")),
    "binarized_mnist": (2, ("train", "validation", "test")),
    "cifar10": (256, ("train", "test")),
}


def _network_reachable(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
  try:
    socket.create_connection((host, 443), timeout=timeout).close()
    return True
  except OSError:
    return False


def _tfds_split(builder, name: str, split: str, download: bool):
  """Reads one split into numpy (iterating: tfds' batch_size=-1 aborted under the mock)."""
  import tensorflow_datasets as tfds  # Deferred: imports TensorFlow.
  try:
    ds = builder.as_dataset(split=split, shuffle_files=False)
  except AssertionError:  # tfds' way of saying the data are not prepared
    if not download:
      raise UserError(f"tfds dataset {name!r} is not prepared in {builder.data_dir} and "
                      f"data.download=False; {_OFFLINE_OPTIONS}") from None
    if not _network_reachable():
      raise UserError(f"tfds dataset {name!r} is not prepared and cannot be downloaded: "
                      f"no network; {_OFFLINE_OPTIONS}") from None
    builder.download_and_prepare()
    ds = builder.as_dataset(split=split, shuffle_files=False)
  images, labels = [], []
  for ex in tfds.as_numpy(ds.batch(1024)):
    images.append(ex["image"])
    if "label" in ex:
      labels.append(ex["label"])
  if not images:
    raise UserError(f"tfds dataset {name!r} split {split!r} is empty")
  return np.concatenate(images), (np.concatenate(labels) if labels else None)


def _split_sizes(builder) -> dict[str, int]:
  return {name: split.num_examples for name, split in builder.info.splits.items()}


def _load_tfds(c: ml_collections.ConfigDict, shard: tuple[int, int] = (0, 1)) -> _Source:
  import tensorflow_datasets as tfds  # Deferred: imports TensorFlow.
  levels, known_splits = TFDS_DATASETS[c.name]
  builder = tfds.builder(c.name, data_dir=c.data_dir)
  available = tuple(builder.info.splits) or known_splits
  for split in ("train", "test"):
    if split not in available:
      raise UserError(f"tfds dataset {c.name!r} has splits {sorted(available)}, not "
                      f"{split!r}")
  read = {"test": _tfds_split(builder, c.name, "test", c.download)}  # prepares if it must
  index, count = shard
  sizes = _split_sizes(builder)
  sharded = count > 1 and "train" in sizes
  if sharded:  # read only this process's share of train (tfds' split slicing)
    n = sizes["train"]
    if "validation" in available:
      read["validation"] = _tfds_split(builder, c.name, "validation", c.download)
    else:  # the held-out validation is the last validation_size, as `load` takes it
      _check_validation_size(c, n)
      read["validation"] = _tfds_split(builder, c.name, f"train[{n - c.validation_size}:]",
                                       c.download)
      n -= c.validation_size
    part = shard_of(n, index, count)
    read["train"] = _tfds_split(builder, c.name, f"train[{part.start}:{part.stop}]",
                                c.download)
  else:
    read.update({s: _tfds_split(builder, c.name, s, c.download) for s in available
                 if s in ("train", "validation")})
  for split, (images, _) in read.items():
    lo, hi = int(images.min()), int(images.max())
    if lo < 0 or hi > levels - 1:
      raise UserError(f"tfds dataset {c.name!r} split {split!r} has pixel values {lo}..{hi}"
                      f", outside 0..{levels - 1}; the data in {builder.data_dir} are not "
                      f"what {c.name!r} should hold")
  val = read.get("validation", (None, None))
  return _Source(*read["train"], *read["test"], num_levels=levels,
                 validation=val[0], validation_labels=val[1], sharded=sharded)


# name -> loader(config.data). Every tfds name in TFDS_DATASETS loads through tfds.
SOURCES: dict[str, Callable[[ml_collections.ConfigDict], _Source]] = {
    "digits": _load_digits, "npz": _load_npz, "linear_gaussian": _load_linear_gaussian,
    **{name: _load_tfds for name in TFDS_DATASETS},
}


# ---------------------------------------------------------- preprocessing


def _binarize_np(images: np.ndarray, levels: int, seed: int) -> np.ndarray:
  p = images.astype(np.float32) / (levels - 1)
  return (np.random.default_rng(seed).random(p.shape, dtype=np.float32) < p).astype(np.float32)


def _dequantize_np(images: np.ndarray, levels: int, seed: int) -> np.ndarray:
  u = np.random.default_rng(seed).random(images.shape, dtype=np.float32)
  return (images.astype(np.float32) + u) / levels


def _prepare_eval(images, levels, c, seed):
  if c.binarize != "none" and levels != 2:
    return _binarize_np(images, levels, seed)
  if c.dequantize:
    return _dequantize_np(images, levels, seed)
  return images.astype(np.float32)


def _check_data_fits_likelihood(levels, c, likelihood):
  binary = levels == 2 or c.binarize != "none"
  if likelihood == "bernoulli" and not binary:
    raise UserError(f"likelihood 'bernoulli' needs binary pixels but data.name={c.name!r} has "
                    f"{levels or 'continuous'} levels; set --config.data.binarize=dynamic "
                    "or static")
  if likelihood in likelihoods.INTEGER_PIXELS and levels is None:
    raise UserError(f"likelihood {likelihood!r} needs integer pixels but data.name={c.name!r} "
                    "is continuous; use model.likelihood=gaussian")
  if likelihood == "gaussian" and levels is not None and not c.dequantize:
    raise UserError("a Gaussian likelihood on discrete pixels gives no valid log-likelihood;"
                    " set --config.data.dequantize=True")
  if c.dequantize and levels is None:
    raise UserError("data.dequantize=True needs integer pixels; the data are continuous")


def _check_validation_size(c: ml_collections.ConfigDict, n: int) -> None:
  if c.validation_size >= n:
    raise UserError(f"data.validation_size={c.validation_size} leaves no training data "
                    f"({n} examples); lower it")


def shard_of(n: int, index: int, count: int) -> slice:
  """Process `index` of `count`: its contiguous, equal share of n training
  examples (the last n % count are left out, as a partial batch would be)."""
  if n < count:
    raise UserError(f"{n} training examples cannot be shared by {count} processes; use "
                    "fewer processes or more data")
  size = n // count
  return slice(index * size, (index + 1) * size)


def load(c: ml_collections.ConfigDict, likelihood: str, shard: tuple[int, int] = (0, 1)
         ) -> Data:
  """Loads `c.name`, checks it fits `likelihood`, and prepares the splits.

  shard=(index, count): a process of a multi-process run keeps only its share
  of the training examples (`shard_of`); from tfds it reads only that share
  (a `train[a:b]` split). Validation and test stay whole, as every process
  evaluates its part of every padded batch.
  """
  src = _load_tfds(c, shard) if c.name in TFDS_DATASETS else SOURCES[c.name](c)
  levels = src.num_levels
  _check_data_fits_likelihood(levels, c, likelihood)
  train, train_labels = src.train, src.train_labels
  if src.validation is None:
    train, train_labels, val, val_labels = _split_off(train, train_labels, c.validation_size,
                                                   field="data.validation_size")
  else:
    val, val_labels = src.validation, src.validation_labels
  index, count = shard
  if count > 1 and not src.sharded:  # a file read whole: keep this process's share
    keep = shard_of(len(train), index, count)
    train, train_labels = train[keep], None if train_labels is None else train_labels[keep]
  for name, images in (("train", train), ("validation", val), ("test", src.test)):
    if len(images) == 0:
      raise UserError(f"the {name} split of {c.name!r} is empty; adjust data.validation_size"
                      " or data.test_size")

  # Fixed seeds for evaluation splits: the test set is binarised/dequantised once.
  val = _prepare_eval(val, levels, c, seed=c.eval_noise_seed)
  test = _prepare_eval(src.test, levels, c, seed=c.eval_noise_seed + 1)
  transform = "none"
  if c.binarize == "static" and levels != 2:
    train = _binarize_np(train, levels, seed=c.eval_noise_seed + 2)
  elif c.binarize == "dynamic" and levels != 2:
    transform = "binarize"
  elif c.dequantize:
    transform = "dequantize"
  model_levels = 2 if c.binarize != "none" else levels
  spec = DataSpec(tuple(train.shape[1:]), model_levels, dequantized=c.dequantize)
  return Data(spec, train, transform, levels, val, test, val_labels, src.test_labels)


def train_transform(kind: str, levels: int | None) -> Callable[[jax.Array, jax.Array],
                                                                jax.Array]:
  """(raw batch, rng) -> model-ready float32 batch, run inside the jitted step."""
  if kind == "binarize":
    return lambda x, rng: jax.random.bernoulli(
        rng, x.astype(jnp.float32) / (levels - 1)).astype(jnp.float32)
  if kind == "dequantize":
    return lambda x, rng: (x.astype(jnp.float32) + jax.random.uniform(rng, x.shape)) / levels
  return lambda x, rng: x.astype(jnp.float32)


# ---------------------------------------------------------------- batching


def epoch_permutation(seed: int, epoch: int, n: int, stream: int | None = None
                      ) -> np.ndarray:
  """The order of the n training examples in `epoch`: a pure function of both
  (and of `stream`, a process's own shuffle in a multi-process run)."""
  key = [seed, epoch] if stream is None else [seed, epoch, stream]
  return np.random.default_rng(key).permutation(n)


def batch_indices(seed: int, first_step: int, num_steps: int, n: int,
                  batch_size: int, stream: int | None = None) -> np.ndarray:
  """Indices of the training batches of steps first_step.. (num_steps, batch_size).

  Each epoch is a fresh permutation; its last partial batch is dropped.
  """
  steps_per_epoch = n // batch_size
  out = np.empty((num_steps, batch_size), np.int32)
  cache: dict[int, np.ndarray] = {}
  for i, step in enumerate(range(first_step, first_step + num_steps)):
    epoch, pos = divmod(step, steps_per_epoch)
    if epoch not in cache:
      cache[epoch] = epoch_permutation(seed, epoch, n, stream)
    out[i] = cache[epoch][pos * batch_size:(pos + 1) * batch_size]
  return out


def eval_batches(images: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray,
                                                                        np.ndarray]]:
  """All examples in order, the last batch padded with zeros; yields (batch, mask)."""
  for start in range(0, len(images), batch_size):
    batch = images[start:start + batch_size]
    mask = np.ones(batch_size, bool)
    if len(batch) < batch_size:
      mask[len(batch):] = False
      pad = np.zeros((batch_size - len(batch),) + batch.shape[1:], batch.dtype)
      batch = np.concatenate([batch, pad])
    yield batch, mask
