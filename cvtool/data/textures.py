"""Random textured backgrounds for the synthetic datasets.

Real photos have clutter; a flat background would let a model learn the object from
its mere presence of colour. Smooth noise, gradients and stripes make the synthetic
sets a fair (if small) test of the real loaders and models.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Noise in [0, 1] of shape (h, w, 3), smooth over about h / cells pixels."""
    coarse = rng.random((cells, cells, 3)).astype(np.float32)
    img = Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    return np.asarray(img, dtype=np.float32) / 255.0


def background(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """A random RGB background: coloured smooth noise, a gradient and sometimes stripes."""
    base = rng.uniform(0.15, 0.85, size=3).astype(np.float32)
    noise = smooth_noise(rng, h, w, int(rng.integers(2, 9))) - 0.5
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)[..., None] - 0.5
    img = base + 0.5 * noise + rng.uniform(-0.3, 0.3) * ramp
    if rng.random() < 0.4:
        period = rng.uniform(6, 24)
        stripes = np.sin((xx * np.cos(angle) - yy * np.sin(angle)) * 2 * np.pi / period)
        img = img + 0.08 * stripes[..., None]
    img = img + rng.normal(0, 0.02, size=img.shape)
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8), "RGB")
