"""StyleKD on FFHQ 256, StyleGAN2 config-f teacher -> 70%-pruned-shape student (paper Table 3).

    python tools/convert_torch_weights.py stylegan2-ffhq-256.pkl teacher/
    python -m stylekd_jax.main --config configs/ffhq256_stylegan2.py --workdir runs/ffhq256 \\
        --config.teacher=teacher/ --config.data.source=folder:/data/ffhq256

Student [154]*10 + [77, 77, 39, 39] (keep ratio 0.3, CAGAN rounding): 5.57M params,
4.1 G MACs per image (teacher 30.0M / 45.1 G). Inherited mapping, random synthesis and
discriminator, L1 3 + LPIPS 3 + LD-KL 30 + GAN, batch 16, 450k steps.
Paper (Table 3, FID on 50k samples, StyleKD protocol): teacher 4.5; CAGAN 7.9; StyleKD 7.25,
PPL 0.135, PSNR 33.49.
"""

from stylekd_jax.config import base_config


def get_config():
    config = base_config()
    config.student.keep_ratio = 0.3
    config.total_steps = 450_000
    config.batch_size = 16
    return config
