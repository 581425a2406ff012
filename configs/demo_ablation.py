"""Paper Table 1 at demo scale: how the student is initialised, with L1 + LPIPS mimic losses.

    python -m stylekd_jax.main --config configs/demo_ablation.py --workdir runs/demo_ablation
    # or reuse the teacher of `bash launch/demo.sh`:
    python -m stylekd_jax.main --config configs/demo_ablation.py --workdir runs/demo_ablation \
        --config.teacher=runs/demo/teacher/student --config.teacher_training.total_steps=0

Trains the demo teacher (configs/demo.py; reused if this workdir already has it), then three
students with the same seeds, data and steps, each in runs/demo_ablation/NAME:
  random_random    random mapping, random synthesis
  inherit_inherit  mapping and synthesis (strongest channels) inherited from the teacher
  inherit_random   inherited mapping, random synthesis (StyleKD's choice)
runs/demo_ablation/report.md tabulates teacher-student consistency and FD-VGG per variant.
About 11 minutes on a 2-core CPU with the demo's teacher, 17 when training it. The paper's
finding (FFHQ 256, Table 1): inheriting the mapping network removes the output discrepancy
(FID 10.78 random/random vs 8.23 inherit/random with RGB + LPIPS). Measured here (README):
teacher-student L1 0.366 random/random vs 0.194 inherit/random, mapping L1 1.19 vs 0.01.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location("demo", os.path.join(os.path.dirname(__file__), "demo.py"))
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)

VARIANTS = {
    "random_random": ("random", "random"),
    "inherit_inherit": ("inherit", "inherit"),
    "inherit_random": ("inherit", "random"),
}


def get_config():
    config = demo.get_config()
    config.loss.ld = 0.0     # L1 + LPIPS mimic only, as Table 1's initialisation rows compare
    config.variants = {name: {"student": {"mapping_init": mapping, "synthesis_init": synthesis}}
                       for name, (mapping, synthesis) in VARIANTS.items()}
    return config
