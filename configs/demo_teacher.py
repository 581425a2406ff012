"""A teacher for the demo trained for longer than the demo can: plain StyleGAN2 on its scenes.

    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=dot \
        python -m stylekd_jax.main --config configs/demo_teacher.py --workdir runs/demo_teacher

configs/demo.py trains its teacher for 800 steps inside the demo's time budget, and that
teacher draws soft colour blobs (FD-VGG 1.25 to the real scenes). The same network trained here
for 10 000 steps (160k images, about 150 minutes on a 2-core CPU at 1.1-1.2 steps/s with the
YNNPACK flag above; rerunning resumes) is meant to be shipped with the package so that the demo
distils a teacher whose samples are the scenes. Measured on the way (2026-12-02, 2-core EPYC
VM): FD-VGG 0.78 after 2000 steps and 0.61 after 4000; shapes with edges appear from about
1500 steps, and by 4500 most samples hold one saturated shape (mostly ellipses so far).
Network, data (5000 scenes of procedural.py, seed 0, in WORKDIR/data) and training settings are
configs/demo.py's teacher training; only the length, the EMA half-life and logging differ.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location("demo", os.path.join(os.path.dirname(__file__), "demo.py"))
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)


def get_config():
    """configs/demo.py's teacher training (its network, data and small-resolution settings) as a
    run of its own, for longer."""
    config = demo.get_config()
    config.total_steps = 10_000
    config.teacher_training.total_steps = 0
    for name in ("l1", "lpips", "ld"):   # distillation losses: off in plain training
        config.loss[name] = 0.0
    config.ema_decay = 0.5 ** (16 / 10_000)   # EMA half-life 10k images (the demo's: 5k)

    config.log_every_steps = 50
    config.sample_every_steps = 500
    config.checkpoint_every_steps = 500
    config.eval.metrics = "fdvgg2k"
    config.eval.every_steps = 2000
    return config
