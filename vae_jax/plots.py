"""Image grids as PNG files (and arrays for TensorBoard)."""

import math

import numpy as np


def image_grid(images: np.ndarray, num_cols: int | None = None, pad: int = 1) -> np.ndarray:
  """(N, H, W, C) images in [0, 1] -> one uint8 canvas, (H', W') or (H', W', 3)."""
  n, h, w, c = images.shape
  num_cols = num_cols or math.ceil(math.sqrt(n))
  num_rows = math.ceil(n / num_cols)
  canvas = np.ones((num_rows * (h + pad) + pad, num_cols * (w + pad) + pad, c), np.float32)
  for i, image in enumerate(np.clip(images, 0.0, 1.0)):
    r, col = divmod(i, num_cols)
    canvas[pad + r * (h + pad):pad + r * (h + pad) + h,
           pad + col * (w + pad):pad + col * (w + pad) + w] = image
  canvas = (canvas * 255).round().astype(np.uint8)
  return canvas[..., 0] if c == 1 else canvas


def save_png(path: str, canvas: np.ndarray, scale: int = 4) -> None:
  """Writes a uint8 canvas, each pixel enlarged `scale` times (8×8 digits are tiny)."""
  from PIL import Image  # matplotlib's own dependency
  big = np.repeat(np.repeat(canvas, scale, axis=0), scale, axis=1)
  Image.fromarray(big).save(path)


# ------------------------------------------------ figures of a trained model

def _figure_to_array(fig) -> np.ndarray:
  fig.canvas.draw()
  array = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
  import matplotlib.pyplot as plt
  plt.close(fig)
  return array


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")  # files only, whatever the machine has for a display
  import matplotlib.pyplot as plt
  return plt


def training_curves(metrics: list[dict]) -> np.ndarray:
  """ELBO (train and validation), rate and distortion against the step."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
  steps = [r["step"] for r in metrics if "elbo" in r]
  axes[0].plot(steps, [r["elbo"] for r in metrics if "elbo" in r], label="train")
  val = [(r["step"], r["val_elbo"]) for r in metrics if "val_elbo" in r]
  if val:
    axes[0].plot(*zip(*val), "o-", label="validation")
  axes[0].set_title("ELBO (nats)")
  axes[0].legend()
  axes[1].plot(steps, [r["kl"] for r in metrics if "elbo" in r], label="train")
  axes[2].plot(steps, [-r["recon"] for r in metrics if "elbo" in r], label="train")
  if val:
    axes[1].plot([r["step"] for r in metrics if "val_rate" in r],
                 [r["val_rate"] for r in metrics if "val_rate" in r], "o-", label="validation")
    axes[2].plot([r["step"] for r in metrics if "val_distortion" in r],
                 [r["val_distortion"] for r in metrics if "val_distortion" in r], "o-",
                 label="validation")
  axes[1].set_title("rate: KL(q(z|x) ‖ p(z)) (nats)")
  axes[2].set_title("distortion: -E_q log p(x|z) (nats)")
  for ax in axes:
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  fig.tight_layout()
  return _figure_to_array(fig)


def kl_per_dimension(kl_per_dim: list[float], variance: list[float]) -> np.ndarray:
  """Bar chart of each latent dimension's mean KL, with the active-unit measure."""
  plt = _pyplot()
  d = len(kl_per_dim)
  fig, ax = plt.subplots(figsize=(max(5, 0.35 * d + 2), 3.4))
  active = np.asarray(variance) > 0.01
  ax.bar(range(d), kl_per_dim, color=np.where(active, "tab:blue", "tab:gray"))
  ax.set_xlabel("latent dimension (grey: inactive, Cov_x E_q[z] ≤ 0.01)")
  ax.set_ylabel("mean KL (nats)")
  ax.set_title(f"KL per dimension, {int(active.sum())} of {d} units active")
  fig.tight_layout()
  return _figure_to_array(fig)


def latent_scatter(q_means: np.ndarray, labels: np.ndarray | None,
                   kl_per_dim: list[float]) -> np.ndarray:
  """Posterior means in the two dimensions of highest KL, coloured by label."""
  plt = _pyplot()
  order = np.argsort(kl_per_dim)[::-1]
  a, b = (order[0], order[1]) if len(order) > 1 else (order[0], order[0])
  fig, ax = plt.subplots(figsize=(5, 4.4))
  if labels is None:
    ax.scatter(q_means[:, a], q_means[:, b], s=6)
  else:
    points = ax.scatter(q_means[:, a], q_means[:, b], s=6, c=labels, cmap="tab10")
    fig.colorbar(points, ax=ax, label="label")
  ax.set_xlabel(f"E_q[z_{a}]")
  ax.set_ylabel(f"E_q[z_{b}]")
  ax.set_title("posterior means, the two dimensions of highest KL")
  fig.tight_layout()
  return _figure_to_array(fig)


def kl_per_group(groups: dict) -> np.ndarray:
  """Bar chart of each latent group's mean KL, labelled with its active units:
  posterior collapse, layer by layer."""
  plt = _pyplot()
  names = list(groups)
  fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(names) + 2), 3.4))
  ax.bar(range(len(names)), [groups[g]["kl"] for g in names])
  ax.set_xticks(range(len(names)),
                [f"{g}\n{groups[g]['active_units']}/{groups[g]['units']}" for g in names])
  ax.set_xlabel("latent group, top first (active units / units)")
  ax.set_ylabel("mean KL (nats)")
  ax.set_title("KL per group")
  fig.tight_layout()
  return _figure_to_array(fig)


def _batched(fn, *args, batch_size: int = 256):
  """fn vmapped and jitted, over the leading axis of args, in batches."""
  import jax
  f = jax.jit(jax.vmap(fn))
  n = len(jax.tree.leaves(args)[0])
  out = [jax.device_get(f(*jax.tree.map(lambda a: a[i:i + batch_size], args)))
         for i in range(0, n, batch_size)]
  return jax.tree.map(lambda *parts: np.concatenate(parts), *out)


def traversals(model, params, kl_per_unit: list[float], num_dims: int = 8,
               num_values: int = 9) -> np.ndarray:
  """Rows: the `num_dims` units of the top latent group with the highest KL;
  columns: that unit from -3 to 3, the group's other units at their prior mean
  and the groups below at their prior means given it; cells: E[x|z]."""
  import jax
  import jax.numpy as jnp
  top, shape = next(iter(model.groups.items()))
  order = np.argsort(kl_per_unit)[::-1][:num_dims]
  values = np.linspace(-3.0, 3.0, num_values)
  key = jax.random.key(0)  # unused at temperature 0
  base = np.asarray(model.sample_latents(params, key, 0.0)[top]).reshape(-1)
  z = np.tile(base, (len(order), num_values, 1)).astype(np.float32)
  for row, unit in enumerate(order):
    z[row, :, unit] = values
  z = jnp.asarray(z.reshape((-1,) + shape))
  images = _batched(lambda zt: model.mean_image(
      params, model.sample_latents(params, key, 0.0, given={top: zt})), z)
  return image_grid(images.reshape((-1,) + model.image_shape), num_values)


def sample_grid(model, params, keys, temperature: float = 1.0) -> np.ndarray:
  """E[x|z] of z drawn from the prior at `temperature` with the run's fixed
  keys: comparable across training."""
  return image_grid(_batched(lambda k: model.mean_image(
      params, model.sample_latents(params, k, temperature)), keys))


SAMPLE_TEMPERATURES = (1.0, 0.7)  # NVAE and VDVAE show samples at t < 1 too


def run_figures(model, params, test_images: np.ndarray, test_labels: np.ndarray | None,
                image_keys, metrics: list[dict], test: dict) -> dict[str, np.ndarray]:
  """Every figure of a trained run, name -> uint8 image."""
  top = next(iter(model.groups))
  group = test["groups"][top]
  q_means = _batched(lambda x: model.posterior_summary(params, x)[top].mean, test_images)
  q_means = q_means.reshape(len(q_means), -1)
  n = min(len(test_images), len(image_keys) // 2)
  recon = _batched(lambda x: model.reconstruct(params, x), test_images[:n])
  shown = np.asarray(test_images[:n]) * model.input_scale
  cols = min(n, 8)
  rows = []
  for start in range(0, n, cols):  # each row of inputs above its reconstructions
    rows += [shown[start:start + cols], recon[start:start + cols]]
  kl_top = group.get("kl_per_unit", group["posterior_mean_variance"])
  figures = {"reconstructions": image_grid(np.concatenate(rows), cols)}
  for t in SAMPLE_TEMPERATURES:
    figures["samples" if t == 1.0 else f"samples_t{t}"] = sample_grid(model, params, image_keys,
                                                                      t)
  figures.update({
      "traversals": traversals(model, params, kl_top),
      "latent_scatter": latent_scatter(q_means, test_labels, kl_top),
      "training_curves": training_curves(metrics),
  })
  if len(test["groups"]) == 1:
    figures["kl_per_dimension"] = kl_per_dimension(kl_top, group["posterior_mean_variance"])
  else:
    figures["kl_per_group"] = kl_per_group(test["groups"])
  return figures
