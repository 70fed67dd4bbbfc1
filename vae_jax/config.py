"""Default config, validation and the fields a resumed run may change.

Experiments (`experiments/*.py`) start from `default()` and patch it. Optional
fields are typed placeholders (`placeholder(int)`), so `--config.a.b=value`
can set them with type checking. `validate` is the one place that checks
values, ranges and combinations; each failure is one `UserError` line naming
the field and what is allowed.
"""

import hashlib
import json
import math
from collections.abc import Callable
from typing import Any

import ml_collections
from ml_collections import config_dict

from vae_jax.errors import UserError

DATASETS = ("digits", "npz", "linear_gaussian", "mnist", "fashion_mnist", "binarized_mnist",
            "cifar10")
LIKELIHOODS = ("bernoulli", "gaussian", "binomial", "discretized_logistic",
               "discretized_mix_logistic")
MODELS = ("flat", "bottom_up", "top_down")
NETWORKS = ("mlp", "conv", "resnet")


def default() -> ml_collections.ConfigDict:
  """The defaults every experiment patches: the embedded digits, a small MLP VAE."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.backend = "cpu"  # cpu | gpu | tpu; no silent fallback
  # With a sweep file as --config: train its member i, in <workdir>/<its name>.
  c.sweep_index = config_dict.placeholder(int)

  c.data = d = ml_collections.ConfigDict()
  d.name = "digits"
  d.path = config_dict.placeholder(str)  # .npz for data.name=npz
  d.data_dir = config_dict.placeholder(str)  # tfds data_dir
  d.download = True  # tfds may download when online
  d.num_levels = config_dict.placeholder(int)  # integer .npz pixels other than uint8
  d.binarize = "none"  # none | dynamic | static
  d.dequantize = False  # uniform dequantisation, for Gaussian likelihoods
  d.validation_size = 200  # held out of the training split
  d.test_size = 300  # held out when the source has no test split
  d.split_seed = 0  # fixes the digits test split, whatever the run's seed
  d.eval_noise_seed = 1234  # binarisation/dequantisation of evaluation splits

  c.model = m = ml_collections.ConfigDict()
  m.name = "flat"  # flat | bottom_up | top_down: the latent structure (vae_jax/models/)
  m.encoder = "mlp"  # mlp | conv | resnet: x's encoder (flat, bottom_up)
  m.decoder = "mlp"  # mlp | conv | resnet: x's decoder (flat, bottom_up)
  m.encoder_hidden = (256,)  # mlp
  m.decoder_hidden = (256,)  # mlp
  m.channels = (32, 64)  # conv/resnet: channels of each stage, one halving of resolution each
  m.blocks_per_stage = 1  # resnet: residual blocks per stage
  m.activation = "relu"
  m.kernel_init = "lecun_normal"  # lecun_normal | glorot_uniform: the MLPs' weights
  # zero | data_mean: the decoder's last bias; data_mean (a logit per pixel) starts
  # it at the logit of the training set's mean pixel, as the IWAE paper's code did.
  m.output_bias = "zero"
  m.latent_dim = 8  # flat
  m.latent_dims = (100, 50)  # bottom_up: size of z1 (next to x), z2, ...
  m.stochastic_hidden = ((50, 50),)  # bottom_up: MLP hidden sizes between z_i and z_{i+1}
  m.latent_variance = "network"  # bottom_up p(z_i|z_{i+1}): network | constant (linear-Gaussian)
  m.width = 64  # top_down: channels of the deterministic state
  m.latent_channels = 8  # top_down: channels of each latent group
  m.groups_per_scale = (2, 2)  # top_down: latent groups at each resolution, lowest first
  m.blocks_per_group = 1  # top_down: residual blocks after each group
  m.encoder_blocks = 1  # top_down: residual blocks per resolution, bottom-up pass
  m.prior = "standard"  # standard | mixture | vampprior: p of the top latent group
  m.prior_components = 10  # mixture / vampprior: K components (pseudo-inputs)
  m.posterior = "gaussian"  # gaussian | iaf: q of every latent group
  m.flow_steps = 2  # iaf: autoregressive steps
  m.flow_hidden = 64  # iaf: MADE hidden units, and the size of the encoder's context
  m.likelihood = "binomial"
  m.gaussian_variance = "scalar"  # fixed | scalar | per_pixel
  m.gaussian_fixed_variance = 1.0
  m.num_mixtures = 10  # discretized_mix_logistic: logistic components per pixel

  c.objective = o = ml_collections.ConfigDict()
  o.name = "elbo"  # elbo | iwae
  o.num_samples = 1  # z samples per example (k for iwae)
  o.kl = "analytic"  # analytic | mc
  o.estimator = "reparam"  # reparam | stl | dreg: the encoder's gradient estimator
  o.beta = 1.0
  o.kl_warmup_steps = 0
  o.free_bits = 0.0  # nats per latent dimension, on the batch-mean KL

  c.optimizer = p = ml_collections.ConfigDict()
  p.name = "adam"  # adam | adamw | sgd
  p.learning_rate = 1e-3
  p.schedule = "constant"  # constant | cosine | piecewise
  p.boundaries = config_dict.placeholder(tuple)  # piecewise: steps where the rate changes
  p.boundary_scales = config_dict.placeholder(tuple)  # piecewise: factor at each boundary
  p.adam_eps = 1e-8  # adam/adamw ε (Burda et al. used 1e-4)
  p.warmup_steps = 0
  p.decay_steps = config_dict.placeholder(int)  # cosine: steps to decay over
  p.grad_clip_norm = config_dict.placeholder(float)
  p.weight_decay = 0.0  # adamw only

  c.train = t = ml_collections.ConfigDict()
  t.batch_size = 128
  t.num_epochs = 50
  t.num_steps = config_dict.placeholder(int)  # when set, overrides num_epochs
  t.steps_per_dispatch = 10  # train steps run by one jitted lax.scan call
  t.log_every_steps = 100
  t.eval_every_steps = 500
  t.checkpoint_every_steps = 500
  t.keep_checkpoints = 2
  t.progress_bar = True
  t.nan_policy = "stop"  # a non-finite loss/gradient: stop (naming the step) | skip the step
  t.ema_decay = config_dict.placeholder(float)  # e.g. 0.999: evaluate an EMA of the params
  # The networks' arithmetic in training: float32 | bfloat16 (mixed precision:
  # parameters, optimiser state, losses and every evaluation stay float32).
  t.compute_dtype = "float32"

  c.eval = e = ml_collections.ConfigDict()
  e.batch_size = 256
  e.num_importance_samples = 1000  # k of the test log-likelihood estimate
  e.test_examples = config_dict.placeholder(int)  # evaluate the first N of the test split only
  e.importance_chunk = 100  # samples per chunk of the streaming estimate
  e.elbo_samples = 10  # z samples per example for the reported ELBO
  e.num_images = 64
  e.figures = True  # sample grids at each evaluation and the final figures (PNG, TensorBoard)
  e.gap_examples = 0  # >0: split log p(x) - ELBO into approximation and amortisation gaps
  e.gap_steps = 300  # Adam steps optimising each example's q for the gap
  e.gradient_draws = 0  # >0: variance and SNR of the training gradient over this many draws
  e.gradient_batch = 64  # test examples in the batch of that gradient

  # The published result an experiment reproduces or sets out to beat (read by
  # scripts/results.py); it changes nothing that is computed.
  c.reference = r = ml_collections.ConfigDict()
  r.source = ""  # the paper
  r.table = ""  # table and row
  r.nll = config_dict.placeholder(float)  # its test NLL, nats
  r.bits_per_dim = config_dict.placeholder(float)  # or its bits/dim
  r.differences = ""  # how this config's protocol differs: split, binarisation, k, epochs
  return c


def small_form(c: ml_collections.ConfigDict, *, num_steps: int, batch_size: int,
               every: int, num_importance_samples: int = 4) -> ml_collections.ConfigDict:
  """Shrinks an experiment to seconds (big_vision's `runlocal`): for tests and
  smoke runs. Logs every `every` steps, evaluates and checkpoints at 2×`every`."""
  c.train.num_steps, c.train.batch_size = num_steps, batch_size
  c.train.log_every_steps = every
  c.train.eval_every_steps = c.train.checkpoint_every_steps = 2 * every
  c.eval.num_importance_samples = num_importance_samples
  c.eval.importance_chunk = max(1, num_importance_samples // 3)
  c.eval.elbo_samples = 2
  return c


# Fields a resumed run may change without changing what it computes
# (sweep_index only locates a member, whose overrides are in the config: a
# member started by scripts/train.py --config.sweep_index=i resumes in a
# vectorised group, which leaves it unset, and the other way round; a run
# stopped by a non-finite step resumes with nan_policy=skip from a checkpoint
# no skipped step precedes, and every row counts the steps it skipped).
SAFE_TO_CHANGE = ("train.num_epochs", "train.num_steps", "train.progress_bar",
                  "train.keep_checkpoints", "train.nan_policy", "eval.", "reference.",
                  "sweep_index")

_CHOICES = {
    "backend": ("cpu", "gpu", "tpu"),
    "data.name": DATASETS,
    "data.binarize": ("none", "dynamic", "static"),
    "model.name": MODELS,
    "model.encoder": NETWORKS,
    "model.decoder": NETWORKS,
    "model.latent_variance": ("network", "constant"),
    "model.activation": ("relu", "tanh", "gelu", "elu", "softplus", "swish"),
    "model.kernel_init": ("lecun_normal", "glorot_uniform"),
    "model.output_bias": ("zero", "data_mean"),
    "model.likelihood": LIKELIHOODS,
    "model.gaussian_variance": ("fixed", "scalar", "per_pixel"),
    "objective.name": ("elbo", "iwae"),
    "objective.kl": ("analytic", "mc"),
    "objective.estimator": ("reparam", "stl", "dreg"),
    "model.prior": ("standard", "mixture", "vampprior"),
    "model.posterior": ("gaussian", "iaf"),
    "optimizer.name": ("adam", "adamw", "sgd"),
    "optimizer.schedule": ("constant", "cosine", "piecewise"),
    "train.nan_policy": ("stop", "skip"),
    "train.compute_dtype": ("float32", "bfloat16"),
}

# field -> (lowest allowed, inclusive?) ; None values (unset placeholders) pass.
_MINIMA = {
    "seed": (0, True), "data.split_seed": (0, True), "data.eval_noise_seed": (0, True),
    "sweep_index": (0, True), "data.validation_size": (1, True), "data.test_size": (1, True),
    "data.num_levels": (2, True), "model.latent_dim": (1, True),
    "model.blocks_per_stage": (0, True), "model.width": (1, True),
    "model.latent_channels": (1, True), "model.blocks_per_group": (0, True),
    "model.encoder_blocks": (0, True), "model.num_mixtures": (1, True),
    "model.prior_components": (1, True), "model.flow_steps": (1, True),
    "model.flow_hidden": (1, True),
    "model.gaussian_fixed_variance": (0, False), "objective.num_samples": (1, True),
    "objective.beta": (0, True), "objective.kl_warmup_steps": (0, True),
    "objective.free_bits": (0, True), "optimizer.learning_rate": (0, False),
    "optimizer.warmup_steps": (0, True), "optimizer.decay_steps": (1, True),
    "optimizer.grad_clip_norm": (0, False), "optimizer.weight_decay": (0, True),
    "optimizer.adam_eps": (0, False),
    "train.batch_size": (1, True), "train.num_epochs": (1, True), "train.num_steps": (1, True),
    "train.steps_per_dispatch": (1, True), "train.log_every_steps": (1, True),
    "train.eval_every_steps": (1, True), "train.checkpoint_every_steps": (1, True),
    "train.keep_checkpoints": (1, True), "eval.batch_size": (1, True),
    "eval.num_importance_samples": (1, True), "eval.importance_chunk": (1, True),
    "eval.elbo_samples": (1, True), "eval.num_images": (1, True),
    "eval.gap_examples": (0, True), "eval.gap_steps": (1, True),
    "eval.gradient_draws": (0, True), "eval.gradient_batch": (1, True),
    "eval.test_examples": (1, True),
    "train.ema_decay": (0, False),
}

# tuple fields -> what they must be.
_SIZE_TUPLES = {
    "model.encoder_hidden": "a tuple of positive layer sizes, e.g. (512, 256), or () for none",
    "model.decoder_hidden": "a tuple of positive layer sizes, e.g. (512, 256), or () for none",
    "model.channels": "a non-empty tuple of positive channel counts, e.g. (32, 64)",
    "model.latent_dims": "a non-empty tuple of positive latent sizes, z1 first, e.g. (100, 50)",
    "model.groups_per_scale": "a non-empty tuple of positive group counts, e.g. (2, 2)",
    "model.stochastic_hidden": "a tuple of tuples of layer sizes, one per pair of adjacent "
                               "latent layers, e.g. ((50, 50),)",
}
_NON_EMPTY = ("model.channels", "model.latent_dims", "model.groups_per_scale")

# The combinations that are invalid, one row each: (is_invalid(config), why and fix).
_INVALID_COMBINATIONS: list[tuple[Callable[[Any], bool], str]] = [
    (lambda c: c.optimizer.schedule == "piecewise" and (
        not c.optimizer.boundaries or c.optimizer.boundary_scales is None
        or len(c.optimizer.boundaries) != len(c.optimizer.boundary_scales)),
     "optimizer.schedule=piecewise needs optimizer.boundaries and optimizer.boundary_scales "
     "of equal length (steps, and the factor applied at each)"),
    (lambda c: c.optimizer.schedule == "piecewise" and c.optimizer.warmup_steps > 0,
     "optimizer.schedule=piecewise with optimizer.warmup_steps > 0: not combined; set "
     "optimizer.warmup_steps=0"),
    (lambda c: c.eval.gradient_draws == 1,
     "eval.gradient_draws=1: a variance needs at least 2 draws; set it to 0 (off) or >= 2"),
    (lambda c: c.objective.name == "iwae" and c.objective.beta != 1.0,
     "objective.name=iwae with objective.beta != 1: β-weighting has no meaning in the IWAE "
     "bound; set objective.beta=1"),
    (lambda c: c.objective.name == "iwae" and c.objective.kl == "analytic",
     "objective.name=iwae with objective.kl=analytic: the IWAE bound weighs each sample's "
     "log p(z) - log q(z|x); set objective.kl=mc"),
    (lambda c: c.objective.name == "iwae" and c.objective.kl_warmup_steps > 0,
     "objective.name=iwae with objective.kl_warmup_steps > 0: KL warm-up needs a separate "
     "KL term; set objective.kl_warmup_steps=0 or objective.name=elbo"),
    (lambda c: c.objective.name == "iwae" and c.objective.free_bits > 0,
     "objective.name=iwae with objective.free_bits > 0: free bits act on a separate KL term;"
     " set objective.free_bits=0 or objective.name=elbo"),
    (lambda c: c.objective.kl == "analytic" and c.model.name == "bottom_up"
     and len(c.model.latent_dims) > 1,
     "objective.kl=analytic with model.name=bottom_up and several layers: q(z1|x) and "
     "p(z1|z2) condition on different variables, so z1's KL has no closed form; set "
     "objective.kl=mc"),
    (lambda c: c.model.name == "top_down" and (c.model.encoder != "mlp"
                                               or c.model.decoder != "mlp"),
     "model.encoder/model.decoder select x's networks of the flat and bottom_up models; "
     "model.name=top_down builds its own ResNet (model.width, model.groups_per_scale): "
     "leave them at mlp"),
    (lambda c: c.objective.kl == "analytic" and c.model.prior != "standard",
     "objective.kl=analytic with model.prior=mixture/vampprior: the KL to a mixture prior has "
     "no closed form; set objective.kl=mc"),
    (lambda c: c.objective.kl == "analytic" and c.model.posterior == "iaf",
     "objective.kl=analytic with model.posterior=iaf: a flow's KL has no closed form; set "
     "objective.kl=mc"),
    (lambda c: c.objective.estimator == "dreg" and c.objective.name != "iwae",
     "objective.estimator=dreg needs objective.name=iwae: DReG reweights the importance "
     "weights of the IWAE bound; use objective.estimator=stl for the ELBO"),
    (lambda c: c.objective.estimator != "reparam" and c.objective.kl == "analytic",
     "objective.estimator=stl/dreg with objective.kl=analytic: they change the gradient of "
     "log q inside the Monte Carlo bound; set objective.kl=mc"),
    (lambda c: c.objective.estimator == "dreg" and c.model.prior == "vampprior",
     "objective.estimator=dreg with model.prior=vampprior: the VampPrior depends on the "
     "encoder's parameters, and DReG's encoder weighting (squared weights) would bias that "
     "term; use objective.estimator=stl or reparam"),
    (lambda c: c.eval.gap_examples > 0 and (c.model.posterior != "gaussian"
                                            or c.model.prior != "standard"),
     "eval.gap_examples > 0 needs model.posterior=gaussian and model.prior=standard: the gap "
     "split optimises one Gaussian q(z|x) per example with the closed-form KL; set "
     "eval.gap_examples=0"),
    (lambda c: c.eval.gap_examples > 0 and c.model.name != "flat",
     "eval.gap_examples > 0 needs model.name=flat: the gap split optimises one Gaussian "
     "q(z|x) per example, which a hierarchy does not have; set eval.gap_examples=0"),
    (lambda c: c.objective.free_bits > 0 and c.objective.kl == "mc",
     "objective.free_bits > 0 with objective.kl=mc: free bits clamp the per-dimension "
     "analytic KL; set objective.kl=analytic"),
    (lambda c: c.data.dequantize and c.model.likelihood != "gaussian",
     "data.dequantize=True with model.likelihood != gaussian: dequantised pixels are "
     "continuous; use model.likelihood=gaussian or data.dequantize=False"),
    (lambda c: c.model.output_bias == "data_mean" and (
        c.model.likelihood not in ("bernoulli", "binomial") or c.model.decoder != "mlp"
        or c.model.name not in ("flat", "bottom_up")),
     "model.output_bias=data_mean needs one logit per pixel: model.likelihood=bernoulli "
     "or binomial and an mlp decoder (model.decoder=mlp, model.name=flat or bottom_up); "
     "set model.output_bias=zero"),
    (lambda c: c.data.binarize != "none" and c.model.likelihood != "bernoulli",
     "data.binarize != none with model.likelihood != bernoulli: binary pixels need "
     "model.likelihood=bernoulli"),
    (lambda c: c.data.name == "npz" and c.data.path is None,
     "data.name=npz needs data.path: set --config.data.path=FILE.npz"),
    (lambda c: c.optimizer.schedule == "cosine" and c.optimizer.decay_steps is None,
     "optimizer.schedule=cosine needs optimizer.decay_steps: set it to the steps to decay "
     "over"),
    (lambda c: c.train.ema_decay is not None and c.train.ema_decay >= 1,
     "train.ema_decay must be below 1 (e.g. 0.999); leave it unset for no EMA"),
    (lambda c: c.optimizer.weight_decay > 0 and c.optimizer.name != "adamw",
     "optimizer.weight_decay > 0 needs optimizer.name=adamw"),
]


def get(config: ml_collections.ConfigDict, path: str) -> Any:
  for key in path.split("."):
    config = config[key]
  return config


def as_json_value(value: Any) -> Any:
  """Tuples, nested too, as lists: what a value reads as from JSON."""
  return [as_json_value(v) for v in value] if isinstance(value, (tuple, list)) else value


def as_config_value(value: Any) -> Any:
  """The inverse: lists from JSON as (nested) tuples, as configs hold them."""
  return tuple(as_config_value(v) for v in value) if isinstance(value, list) else value


def flatten(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
  """{'a.b': value} for every leaf; tuples become lists (as in JSON)."""
  out = {}
  for key, value in config.items():
    path = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      out.update(flatten(value, path + "."))
    else:
      out[path] = as_json_value(value)
  return out


def _non_finite(config: ml_collections.ConfigDict) -> str | None:
  """The first field (or element of a tuple field) that is NaN or ±Inf: every
  comparison with NaN is False, so a range check alone lets it through."""
  for path, value in flatten(config).items():
    for v in value if isinstance(value, list) else [value]:
      if isinstance(v, float) and not math.isfinite(v):
        return f"config.{path}={value!r} is not a finite number; give a finite value"
  return None


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises UserError (one line) at the first invalid value or combination."""
  for path, allowed in _CHOICES.items():
    value = get(config, path)
    if value not in allowed:
      raise UserError(f"config.{path}={value!r} is not allowed; choose one of "
                      f"{', '.join(allowed)}")
  message = _non_finite(config)
  if message:
    raise UserError(message)
  for path, (low, inclusive) in _MINIMA.items():
    value = get(config, path)
    if value is None:
      continue
    if not isinstance(value, (int, float)) or isinstance(value, bool):
      raise UserError(f"config.{path}={value!r} must be a number")
    if value < low or (value == low and not inclusive):
      raise UserError(f"config.{path}={value!r} is out of range; it must be "
                      f"{'>=' if inclusive else '>'} {low}")
  for path, example in _SIZE_TUPLES.items():
    sizes = get(config, path)
    nested = path == "model.stochastic_hidden"
    flat = [s for t in sizes for s in (t if isinstance(t, tuple) else [t])] if nested else sizes
    positive = all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in flat)
    if (not isinstance(sizes, tuple) or not positive
        or (nested and not all(isinstance(t, tuple) for t in sizes))
        or (path in _NON_EMPTY and not sizes)):
      raise UserError(f"config.{path}={sizes!r} must be {example}")
  boundaries, scales = config.optimizer.boundaries, config.optimizer.boundary_scales
  if boundaries is not None and not all(
      isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in boundaries):
    raise UserError(f"config.optimizer.boundaries={boundaries!r} must be a tuple of steps "
                    ">= 1, e.g. (1000, 5000)")
  if scales is not None and not all(
      isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0 for f in scales):
    raise UserError(f"config.optimizer.boundary_scales={scales!r} must be a tuple of "
                    "factors > 0, e.g. (0.1, 0.1)")
  for is_invalid, message in _INVALID_COMBINATIONS:
    if is_invalid(config):
      raise UserError(message)


# Fields added to the code after runs were recorded, each with the value that
# reproduces the behaviour from before it existed: a recorded config without the
# field reads as that value (absent other fields read as unset, None).
LEGACY_DEFAULTS: dict[str, Any] = {"model.kernel_init": "lecun_normal",
                                   "model.output_bias": "zero",
                                   "train.compute_dtype": "float32"}


def _ignored(key: str, ignore: tuple[str, ...]) -> bool:
  return any(key == s or (s.endswith(".") and key.startswith(s)) for s in ignore)


def _comparable(flat: dict[str, Any], ignore: tuple[str, ...]) -> dict[str, Any]:
  """The fields that tell two configs apart: set (not None), not at their
  LEGACY_DEFAULTS value, not ignored."""
  return {k: v for k, v in flat.items()
          if v is not None and not (k in LEGACY_DEFAULTS and v == LEGACY_DEFAULTS[k])
          and not _ignored(k, ignore)}


def changed_fields(old: dict[str, Any], new: dict[str, Any],
                   ignore: tuple[str, ...] = SAFE_TO_CHANGE) -> list[str]:
  """Flat fields that differ between two flattened configs, safe ones excluded.

  A field absent from one side counts as unset (None), or as its
  LEGACY_DEFAULTS value: a field added to the code since a run started
  changes nothing unless it is set to something new.
  """
  a, b = _comparable(old, ignore), _comparable(new, ignore)
  return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def fingerprint(flat: dict[str, Any], ignore: tuple[str, ...] = SAFE_TO_CHANGE) -> str:
  """A short hash of a flattened config that two configs share exactly when
  `changed_fields` finds no change between them."""
  text = json.dumps(_comparable(flat, ignore), sort_keys=True, default=repr)
  return hashlib.sha256(text.encode()).hexdigest()[:16]
