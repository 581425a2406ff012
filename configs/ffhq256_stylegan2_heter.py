"""StyleKD on FFHQ 256 with the heterogeneous student: kernel 1 for every non-upsampling conv.

    python -m stylekd_jax.main --config configs/ffhq256_stylegan2_heter.py --workdir runs/ffhq256_heter \\
        --config.teacher=teacher/ --config.data.source=folder:/data/ffhq256

Student [154]*10 + [77, 77, 39, 39] with 1x1 second convs: 4.75M params, 1.5 G MACs per image.
Paper (Table 3, "heter", 3.4M params / 2.7 G MACs by its count): CAGAN-heter FID 13.75,
StyleKD-heter 9.96.
"""

from stylekd_jax.config import base_config


def get_config():
    config = base_config()
    config.student.keep_ratio = 0.3
    config.student.kernel_size = 1
    return config
