"""Arrays -> PIL images (and plotly figures), shared by the app and the CLI."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[..., C, H, W] floats in [0, 1] -> [..., H, W, C] uint8."""
    arr = np.clip(np.asarray(images, dtype=np.float64), 0.0, 1.0)
    return np.moveaxis(np.rint(arr * 255).astype(np.uint8), -3, -1)


def image_grid(images: np.ndarray, pad: int = 2, scale: int = 1) -> Image.Image:
    """A grid picture of images [R, S, C, H, W] (rows x columns), white padding, upscaled by `scale`."""
    assert images.ndim == 5, f"expected [rows, cols, C, H, W], got shape {images.shape}"
    rows, cols, channels, h, w = images.shape
    tiles = to_uint8(images)  # [R, S, H, W, C]
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, channels), 255, dtype=np.uint8)
    for r in range(rows):
        for c in range(cols):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            canvas[y : y + h, x : x + w] = tiles[r, c]
    picture = Image.fromarray(canvas[..., 0] if channels == 1 else canvas)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    return picture


def traversal_gif(images: np.ndarray, scale: int = 2, duration_ms: int = 120) -> bytes:
    """Animated GIF of a traversal [L, S, C, H, W]: frame s shows every latent's column s, side by side,
    played forwards then backwards."""
    frames = [image_grid(images[:, s : s + 1].transpose(1, 0, 2, 3, 4), scale=scale) for s in range(images.shape[1])]
    frames = frames + frames[-2:0:-1]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
    return buf.getvalue()


def png_bytes(picture: Image.Image) -> bytes:
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()
