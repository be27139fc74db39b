"""2-D toy data of the diffusion lessons: moons, circles and a smiley, where noising is easy to see.

Introduced in notebook 03 (forward diffusion); notebook 04 trains a tiny denoiser on it. The
method's data is :mod:`diffcl_lite.data`; nothing here is used to train a recommender.
"""
from __future__ import annotations

import numpy as np

from ..errors import DiffCLError

__all__ = ["TOY_2D_NAMES", "toy_2d"]

TOY_2D_NAMES = ("moons", "circles", "smiley")


def toy_2d(name: str = "moons", n: int = 600, seed: int = 0, noise: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Points on a 2-D shape and their part labels: ``(points float32 (n, 2), labels int64 (n,))``.

    Introduced in notebook 03 (forward diffusion), where the noising is easy to see in 2-D, and used
    again in notebook 04 to train a tiny denoiser. Shapes (NumPy only):

    * ``"moons"``: two interleaving half circles (labels 0, 1);
    * ``"circles"``: an outer and an inner circle of radius 1 and 0.45 (labels 0 = outer, 1 = inner);
    * ``"smiley"``: a face outline (0), left eye (1), right eye (2) and mouth (3).

    Each point gets Gaussian jitter of standard deviation ``noise`` (in the shape's own units), then
    the whole cloud is centred and divided by its overall standard deviation, so every coordinate
    has mean 0 and the cloud has unit scale, like the ``N(0, I)`` noise the diffusion adds. The same
    ``seed`` gives the same points.
    """
    if name not in TOY_2D_NAMES:
        raise DiffCLError(f"toy_2d: name={name!r} is not a known shape; use one of {list(TOY_2D_NAMES)}.")
    if isinstance(n, bool) or int(n) != n or n < 8:
        raise DiffCLError(f"toy_2d: n={n!r} must be an integer >= 8 (points to draw).")
    if not noise >= 0:
        raise DiffCLError(f"toy_2d: noise={noise!r} must be >= 0 (the jitter's standard deviation).")
    n = int(n)
    rng = np.random.default_rng(seed)

    def arc(m: int, cx: float, cy: float, r: float, a0: float, a1: float) -> np.ndarray:
        # points (cx + r cos a, cy + r sin a), a ~ U(a0, a1)
        a = rng.uniform(a0, a1, m)
        return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], axis=1)

    if name == "moons":
        n1 = n // 2
        parts = [arc(n1, 0.0, 0.0, 1.0, 0.0, np.pi), arc(n - n1, 1.0, 0.5, 1.0, np.pi, 2 * np.pi)]
    elif name == "circles":
        n1 = int(round(n * 0.6))
        parts = [arc(n1, 0.0, 0.0, 1.0, 0.0, 2 * np.pi), arc(n - n1, 0.0, 0.0, 0.45, 0.0, 2 * np.pi)]
    else:
        sizes = np.array([0.5, 0.12, 0.12, 0.26])
        counts = np.floor(sizes * n).astype(int)
        counts[0] += n - counts.sum()
        parts = [arc(counts[0], 0.0, 0.0, 1.0, 0.0, 2 * np.pi),
                 arc(counts[1], -0.38, 0.35, 0.12, 0.0, 2 * np.pi),
                 arc(counts[2], 0.38, 0.35, 0.12, 0.0, 2 * np.pi),
                 arc(counts[3], 0.0, 0.05, 0.55, 1.15 * np.pi, 1.85 * np.pi)]
    labels = np.concatenate([np.full(len(p), k, dtype=np.int64) for k, p in enumerate(parts)])
    pts = np.concatenate(parts) + noise * rng.standard_normal((n, 2))
    # x <- (x - mean) / std   (one std over both coordinates: the shape keeps its proportions)
    pts = pts - pts.mean(axis=0)
    pts = pts / np.sqrt((pts**2).mean())
    return pts.astype(np.float32), labels
