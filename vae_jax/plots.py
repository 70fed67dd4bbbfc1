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
