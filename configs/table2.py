"""Paper Table 2: how the student's mapping network is obtained (synthesis random, FFHQ 256,
batch 8 as the paper's ablations; the paper does not list the mimic losses of this table, so
StyleKD's full set is kept).

    python -m stylekd_jax.main --config configs/table2.py:two_stage_l1 --workdir runs/t2_l1 \\
        --config.teacher=teacher/ --config.data.source=folder:/data/ffhq256 \\
        --config.loss.face_parser=79999_iter.pth   # official face mask (or --config.loss.face_mask=False)

Arguments and the paper's (|S_s - S_t|_1, student FID):
  random              random mapping [512]*8           1.027 / 11.78
  two_stage_l1        [512]*8, mimic with L1           0.156 / 9.69
  two_stage_l2        [512]*8, mimic with L2           0.260 / 10.80
  two_stage_l1_512x5  [512]*5                          0.197 / 10.38
  two_stage_l1_390x7  [390]*7 + [512]                  0.210 / 10.55
  two_stage_l1_256x7  [256]*7 + [512]                  0.245 / 10.86
  inherit             the teacher's mapping            0     / 8.30
"""

from stylekd_jax.config import base_config

MAPPINGS = {
    "random": ("random", "l1", None),
    "two_stage_l1": ("two_stage", "l1", None),
    "two_stage_l2": ("two_stage", "l2", None),
    "two_stage_l1_512x5": ("two_stage", "l1", (512,) * 5),
    "two_stage_l1_390x7": ("two_stage", "l1", (390,) * 7 + (512,)),
    "two_stage_l1_256x7": ("two_stage", "l1", (256,) * 7 + (512,)),
    "inherit": ("inherit", "l1", None),
}


def get_config(arg: str = "inherit"):
    if arg not in MAPPINGS:
        raise ValueError(f"configs/table2.py:{arg}: choose one of {sorted(MAPPINGS)}")
    init, loss, widths = MAPPINGS[arg]
    config = base_config()
    config.student.keep_ratio = 0.3
    config.student.mapping_init = init
    config.student.two_stage.loss = loss
    config.student.mapping_features = widths
    config.batch_size = 8
    config.loss.ld_group_size = 4
    config.loss.face_mask = True
    return config
