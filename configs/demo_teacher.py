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
The data are configs/demo.py's: 5000 scenes of procedural.py, seed 0, written to WORKDIR/data.
"""

from stylekd_jax.config import base_config


def get_config():
    config = base_config()
    config.seed = 0
    config.data.source = "shapes:5000"
    config.batch_size = 16
    config.total_steps = 10_000

    # A StyleGAN2 with 64 channels everywhere (0.32 M parameters), as configs/demo.py trains.
    config.generator.resolution = 32
    config.generator.channel_base = 2048
    config.generator.channel_max = 64
    config.generator.z_dim = 64
    config.generator.w_dim = 64
    config.generator.mapping_layers = 4

    # NVlabs' small-resolution settings: R1 gamma ~ 0.0002 res^2 / batch (raised for stability),
    # no path-length regularisation (their CIFAR config), EMA half-life 10k images with ramp-up.
    config.r1_gamma = 0.05
    config.pl_weight = 0.0
    config.lr = 0.0025
    config.ema_decay = 0.5 ** (16 / 10_000)
    config.ema_rampup = 0.05

    for name in ("l1", "lpips", "ld"):   # distillation losses: off in plain training
        config.loss[name] = 0.0

    config.log_every_steps = 50
    config.sample_every_steps = 500
    config.checkpoint_every_steps = 500
    config.sample_seeds = tuple(range(12))
    config.eval.metrics = "fdvgg2k"
    config.eval.every_steps = 2000
    config.eval.batch = 50
    return config
