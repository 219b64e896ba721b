"""Small numeric helpers shared by the auroral forms and the sky: draws, powers, noise."""

from __future__ import annotations

import math

import cv2
import numpy as np


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """A uniform draw as a Python float (keeps float32 arrays float32 under NEP 50)."""
    return float(rng.uniform(lo, hi))


def pow2k(x: np.ndarray, k: int) -> np.ndarray:
    """``x ** (2 ** k)`` by repeated squaring (numpy's generic power is ~100x slower)."""
    for _ in range(k):
        x = x * x
    return x


def rotate(a: np.ndarray, b: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of the points (a, b) in axes turned by ``angle`` rad; same shapes."""
    ca, sa = math.cos(angle), math.sin(angle)
    return ca * a + sa * b, -sa * a + ca * b


def smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Gaussian-blurred white noise standardised to mean 0, std 1; (n, n) float32."""
    f = rng.standard_normal((n, n), dtype=np.float32)
    f = cv2.GaussianBlur(f, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return (f - f.mean()) / (f.std() + 1e-6)
