"""Evaluation metrics: FID/KID statistics, PPL, projection PSNR, teacher-student consistency.

Feature extractors (Inception for FID) are passed in by the caller; LPIPS is passed as a callable
`lpips(x, y) -> [N]` on NHWC images in [-1, 1] (e.g. `stylekd_jax.lpips.lpips_fn(params)`).
"""

from stylekd_jax.metrics.consistency import consistency
from stylekd_jax.metrics.frechet import FeatureStats, frechet_distance, kid
from stylekd_jax.metrics.ppl import path_length, percentile_filter_mean
from stylekd_jax.metrics.projection import Projection, project
from stylekd_jax.metrics.psnr import psnr, psnr_official_compat, psnr_uint8_wraparound, to_uint8_cagan

__all__ = ["FeatureStats", "frechet_distance", "kid", "path_length", "percentile_filter_mean",
           "project", "Projection", "psnr", "psnr_official_compat", "psnr_uint8_wraparound", "to_uint8_cagan",
           "consistency"]
