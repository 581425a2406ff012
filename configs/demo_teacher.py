"""The demo's teacher, trained for longer than the demo can: plain StyleGAN2 on its scenes.

    XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=dot \
        python -m stylekd_jax.main --config configs/demo_teacher.py --workdir runs/demo_teacher \
        --config.total_steps=6000

re-creates the teacher that ships in stylekd_jax/assets/demo_teacher (3.7 MB: G, G_ema and D
with architecture.json) and that configs/demo.py distils: this run's export after 6000 steps
(96k images, about 90 minutes on the idle 2-core EPYC VM at 1.1-1.5 steps/s with the YNNPACK
flag above; rerunning resumes). Without --config.total_steps it goes on to 10 000 steps.
Measured (2026-12-02): FD-VGG 2k to the real scenes 0.78 / 0.61 / 0.55 after 2000 / 4000 /
6000 steps (the 800-step teacher the demo used to train itself: 1.25). Its samples hold one
saturated shape with edges on a plain background, mostly ellipses; the real scenes' squares,
triangles, second shapes and gradient backgrounds are still rare. Tried for 2000 steps
(2026-12-03), each worse than this config's 0.78: lr 0.005, 0.89; R1 gamma 0.0128 (NVlabs'
0.0002 res^2 / batch), 0.85. Continued from the shipped export (2026-12-03, `--config.init_from=
stylekd_jax/assets/demo_teacher`, its G, G_ema and D with fresh Adam): 0.524 / 0.516 after 2000 /
4000 more steps (8000 / 10 000 in all); from there, 1000 more steps gave 0.538 unchanged and
0.538-0.540 with lr 0.0005, R1 gamma 0.0128 or D's lr halved; resuming the 10 000-step run
(its Adam state) for 2000 more gave 0.543 at 12 000. The FD-VGG of this 64-channel network
plateaus near 0.52-0.54, moving by 0.02 between evaluations (the estimate's own noise, over z
seeds: 0.002). Its D does not overfit the 5000 scenes (mean logit on scenes 0-999 3.79, on
unseen scenes 20 000-20 999 3.88, on G's samples -1.56). Nothing tried learns faster: 2000 steps
from scratch (2026-12-03) with style mixing off gave 0.81, with 96 channels (--config.generator.
channel_base=3072 --config.generator.channel_max=96; 1.7x slower per step) 0.87. The step does
25 GFLOP (compiled count, batch 16), 46 GFLOP/s: 30% of the VM's float32 matmul peak.
Data (5000 scenes of procedural.py, seed 0, in WORKDIR/data) and the small-resolution
settings are configs/demo.py's (`scenes_config`, not the student's tuning); the network, batch,
learning rate and EMA are set here; the GAN weight (1) and Adam b1 (0) are NVlabs' defaults.
"""

import importlib.util
import os

_spec = importlib.util.spec_from_file_location("demo", os.path.join(os.path.dirname(__file__), "demo.py"))
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)


def get_config():
    """configs/demo.py's data and small-resolution settings; plain training of the network below."""
    config = demo.scenes_config()   # no teacher: plain training of `generator`

    # A StyleGAN2 with 64 channels everywhere at 32 px (0.32M synthesis + mapping parameters).
    config.generator.resolution = 32
    config.generator.channel_base = 2048
    config.generator.channel_max = 64
    config.generator.z_dim = 64
    config.generator.w_dim = 64
    config.generator.mapping_layers = 4

    config.total_steps = 10_000
    config.batch_size = 16
    config.lr = 0.0025                  # NVlabs' small-resolution rate (the demo's student: 0.01)
    for name in ("l1", "lpips", "ld"):   # distillation losses: off in plain training
        config.loss[name] = 0.0
    config.ema_decay = 0.5 ** (16 / 10_000)   # EMA half-life 10k images (the demo's: 5k)

    config.log_every_steps = 50
    config.sample_every_steps = 500
    config.checkpoint_every_steps = 500
    config.eval.metrics = "fdvgg2k"
    config.eval.every_steps = 2000
    return config
