"""Paper Table 1: initialisation of the student x mimic losses (FFHQ 256, batch 8).

    python -m stylekd_jax.main --config configs/table1.py:inherit_random_rgb_lpips_ld \\
        --workdir runs/t1_ir_rgb_lpips_ld --config.teacher=teacher/ --config.data.source=folder:/data/ffhq256 \\
        --config.loss.face_parser=79999_iter.pth   # official face mask (or --config.loss.face_mask=False)

The argument is MAPPING_SYNTHESIS_LOSSES: mapping and synthesis init are `random` or
`inherit`; LOSSES is `none` or `rgb` with optional `_lpips` and `_ld`. Student FIDs reported:
  random_random:    none 10.92, rgb 10.78, rgb_lpips 11.27
  random_inherit:   rgb 10.81, rgb_lpips 10.88
  inherit_inherit:  none 10.54, rgb 9.41, rgb_lpips 8.61, rgb_lpips_ld 8.45
  inherit_random:   rgb 9.42, rgb_lpips 8.23, rgb_lpips_ld 7.94
"""

from stylekd_jax.config import base_config

INITS = ("random", "inherit")


def get_config(arg: str = "inherit_random_rgb_lpips_ld"):
    parts = arg.split("_")
    if len(parts) < 3 or parts[0] not in INITS or parts[1] not in INITS:
        raise ValueError(f"configs/table1.py:{arg}: expected MAPPING_SYNTHESIS_LOSSES, e.g. "
                         f"inherit_random_rgb_lpips_ld (inits: {INITS})")
    losses = set(parts[2:])
    if not losses <= {"none", "rgb", "lpips", "ld"} or ("none" in losses and len(losses) > 1):
        raise ValueError(f"configs/table1.py:{arg}: losses must be 'none' or 'rgb' plus optional "
                         f"'lpips' and 'ld'")
    config = base_config()
    config.student.keep_ratio = 0.3
    config.student.mapping_init, config.student.synthesis_init = parts[0], parts[1]
    config.batch_size = 8
    config.loss.ld_group_size = 4
    config.loss.l1 = 3.0 if "rgb" in losses else 0.0
    config.loss.lpips = 3.0 if "lpips" in losses else 0.0
    config.loss.ld = 30.0 if "ld" in losses else 0.0
    config.loss.face_mask = True
    return config
