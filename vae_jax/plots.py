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


def traversals(model, params, kl_per_dim: list[float], num_dims: int = 8,
               num_values: int = 9) -> np.ndarray:
  """Rows: the `num_dims` dimensions of highest KL; columns: that dimension from
  -3 to 3 with the others at the prior mean; cells: E[x|z]."""
  order = np.argsort(kl_per_dim)[::-1][:num_dims]
  values = np.linspace(-3.0, 3.0, num_values)
  z = np.zeros((len(order), num_values, model.latent_dim), np.float32)
  for row, dim in enumerate(order):
    z[row, :, dim] = values
  images = np.asarray(model.mean_image(params, z.reshape(-1, model.latent_dim)))
  return image_grid(images.reshape((-1,) + model.image_shape), num_values)


def sample_grid(model, params, z) -> np.ndarray:
  """E[x|z] at the run's fixed z from the prior: comparable across training."""
  return image_grid(np.asarray(model.mean_image(params, z)))


def run_figures(model, params, test_images: np.ndarray, test_labels: np.ndarray | None,
                fixed_z, metrics: list[dict], test: dict, batch_size: int = 500
                ) -> dict[str, np.ndarray]:
  """Every figure of a trained run, name -> uint8 image."""
  import jax
  import jax.numpy as jnp
  encode_means = jax.jit(jax.vmap(lambda x: model.encode(params, x).mean))
  q_means = np.concatenate([np.asarray(encode_means(jnp.asarray(
      test_images[i:i + batch_size]))) for i in range(0, len(test_images), batch_size)])
  n = min(len(test_images), fixed_z.shape[0] // 2)
  recon = np.asarray(model.mean_image(params, jnp.asarray(q_means[:n])))
  shown = np.asarray(test_images[:n]) * model.input_scale
  cols = min(n, 8)
  rows = []
  for start in range(0, n, cols):  # each row of inputs above its reconstructions
    rows += [shown[start:start + cols], recon[start:start + cols]]
  return {
      "reconstructions": image_grid(np.concatenate(rows), cols),
      "samples": sample_grid(model, params, fixed_z),
      "traversals": traversals(model, params, test["kl_per_dim"]),
      "latent_scatter": latent_scatter(q_means, test_labels, test["kl_per_dim"]),
      "kl_per_dimension": kl_per_dimension(test["kl_per_dim"],
                                           test["posterior_mean_variance"]),
      "training_curves": training_curves(metrics),
  }
