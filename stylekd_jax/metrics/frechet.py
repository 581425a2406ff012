"""Fréchet distance (FID) and kernel inception distance (KID) from feature statistics.

Why: FID is the paper's headline number.  The feature extractor (Inception) is passed in by the
caller; this module only accumulates statistics and compares them.  Two protocols exist:
NVlabs' `FeatureStats` uses the biased covariance (divide by n), StyleKD/pytorch-fid (`np.cov`)
the unbiased one (n - 1), so `FeatureStats.cov(unbiased=...)` makes the choice explicit.

Statistics are accumulated as float64 raw moments (n, sum x, sum x x^T), like NVlabs'
`FeatureStats`, so they can be streamed over any number of batches and saved; a saved file
carries a `key` string (dataset + protocol) that `load` checks, so cached real-data statistics
are never silently reused for a different dataset or protocol.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import scipy.linalg

__all__ = ["FeatureStats", "frechet_distance", "kid"]


class FeatureStats:
    """Streaming mean / covariance of feature vectors, in float64.

    `keep_features=True` also keeps every feature row (float32), which KID needs.
    """

    def __init__(self, dim: int | None = None, keep_features: bool = False, key: str = ""):
        self.dim = dim
        self.key = key
        self.keep_features = keep_features
        self.n = 0
        self._sum = None if dim is None else np.zeros(dim, np.float64)
        self._sum_sq = None if dim is None else np.zeros((dim, dim), np.float64)
        self._rows: list[np.ndarray] = []

    def update(self, feats) -> None:
        """Add a batch of features [N, D] (any array type)."""
        x = np.asarray(feats, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be [N, D], got shape {x.shape}")
        if self.dim is None:
            self.dim = x.shape[1]
            self._sum = np.zeros(self.dim, np.float64)
            self._sum_sq = np.zeros((self.dim, self.dim), np.float64)
        if x.shape[1] != self.dim:
            raise ValueError(f"expected {self.dim}-d features, got shape {x.shape}")
        self.n += x.shape[0]
        self._sum += x.sum(axis=0)
        self._sum_sq += x.T @ x
        if self.keep_features:
            self._rows.append(x.astype(np.float32))

    def _check_nonempty(self, need: int = 1):
        if self.n < need:
            raise ValueError(f"need at least {need} feature rows, have {self.n}")

    @property
    def mean(self) -> np.ndarray:
        self._check_nonempty()
        return self._sum / self.n

    def cov(self, unbiased: bool = False) -> np.ndarray:
        """Covariance: biased (/n, NVlabs) or unbiased (/(n-1), pytorch-fid / StyleKD)."""
        self._check_nonempty(2 if unbiased else 1)
        mu = self.mean
        scatter = self._sum_sq - self.n * np.outer(mu, mu)
        return scatter / (self.n - 1 if unbiased else self.n)

    @property
    def features(self) -> np.ndarray:
        if not self.keep_features:
            raise ValueError("features were not kept (construct with keep_features=True)")
        return np.concatenate(self._rows) if self._rows else np.zeros((0, self.dim or 0), np.float32)

    def save(self, path: str) -> None:
        """Write an .npz: key, n, raw moments (and the feature rows when kept). Written beside
        `path` and renamed, so an interrupted save leaves no truncated file there."""
        self._check_nonempty()
        arrays = dict(key=np.array(self.key), n=np.array(self.n, np.int64), sum=self._sum,
                      sum_sq=self._sum_sq)
        if self.keep_features:
            arrays["features"] = self.features
        tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
        try:
            with open(tmp, "wb") as f:  # a file object: np.savez adds no '.npz' suffix
                np.savez(f, **arrays)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    @classmethod
    def load(cls, path: str, key: str | None = None) -> "FeatureStats":
        """Read stats saved by `save`; with `key`, raise ValueError unless it matches."""
        with np.load(os.fspath(path), allow_pickle=False) as z:
            stored_key = str(z["key"])
            if key is not None and stored_key != key:
                raise ValueError(f"feature statistics {path} were computed for key {stored_key!r}, "
                                 f"not {key!r}: recompute them for this dataset/protocol")
            stats = cls(int(z["sum"].shape[0]), keep_features="features" in z, key=stored_key)
            stats.n = int(z["n"])
            stats._sum = z["sum"].astype(np.float64)
            stats._sum_sq = z["sum_sq"].astype(np.float64)
            if stats.keep_features:
                stats._rows = [z["features"]]
        return stats


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), as pytorch-fid computes it.

    When the matrix square root is not finite (near-singular product), eps * I is added to both
    covariances; a complex result whose diagonal has an imaginary part above 1e-3 is an error,
    otherwise the imaginary part (numerical noise) is dropped.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():   # singular products (e.g. dead features) are handled below
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm has a large imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def kid(feats1, feats2, num_subsets: int = 100, max_subset_size: int = 1000, seed: int = 0) -> float:
    """Kernel inception distance: unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 (NVlabs).

    feats1 = real, feats2 = generated.  Averaged over `num_subsets` random subsets of
    m = min(n1, n2, max_subset_size) rows each, drawn without replacement by
    `np.random.RandomState(seed)` (generated rows first, as NVlabs draws them).
    """
    real = np.asarray(feats1, np.float64)
    gen = np.asarray(feats2, np.float64)
    d = real.shape[1]
    m = min(real.shape[0], gen.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 rows in each set, got {real.shape[0]} and {gen.shape[0]}")
    rng = np.random.RandomState(seed)
    t = 0.0
    for _ in range(num_subsets):
        x = gen[rng.choice(gen.shape[0], m, replace=False)]
        y = real[rng.choice(real.shape[0], m, replace=False)]
        a = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
        b = (x @ y.T / d + 1) ** 3
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(t / num_subsets / m)
