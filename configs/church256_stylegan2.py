"""StyleKD on LSUN Church 256 (paper Table 3).

    python tools/convert_torch_weights.py stylegan2-church-config-f.pkl teacher_church/
    python -m stylekd_jax.main --config configs/church256_stylegan2.py --workdir runs/church256 \\
        --config.teacher=teacher_church/ --config.data.source=tfds:lsun/church_outdoor

Student keep ratio 0.3 of the config-f teacher (5.57M params, 4.1 G MACs). Batch 16, 450k steps.
Paper: teacher FID 4.92; CAGAN 8.57; StyleKD 7.96.
"""

from stylekd_jax.config import base_config


def get_config():
    config = base_config()
    config.student.keep_ratio = 0.3
    return config
