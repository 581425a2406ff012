"""The embedded default: teacher training and StyleKD distillation on procedural 32px scenes.

    bash launch/demo.sh            # = python -m stylekd_jax.main --config configs/demo.py --workdir runs/demo

No downloads and no weights needed. In one command (about 11 minutes on a 2-core CPU):
  1. writes 5000 procedural 32x32 scenes (gradient background, 1-3 coloured shapes) to
     runs/demo/data/ (procedural.py);
  2. trains a small StyleGAN2 teacher on them with the same trainer (plain training mode);
  3. distils it with the StyleKD recipe into a student with 40% of the channels (>4x fewer
     parameters): inherited mapping, random synthesis, L1 + LPIPS + LD-KL + GAN;
  4. evaluates teacher-student consistency and a Frechet distance on LPIPS-VGG features
     (FD-VGG; no Inception weights offline) and writes runs/demo/report.md: teacher and
     student images for fixed seeds, loss curves, the numbers and each stage's time.
Expected (README, 2-core CPU): teacher FD-VGG 1.25; student 4.1x smaller, FD-VGG 1.35,
teacher-student L1 0.20 / LPIPS 0.39 / PSNR 18.4 dB (a random-mapping student: L1 0.37, see
configs/demo_ablation.py). Rerunning reuses what is done.
"""

from stylekd_jax.config import base_config


def get_config():
    config = base_config()
    config.seed = 0
    config.data.source = "shapes:5000"
    config.batch_size = 16

    # The teacher: a StyleGAN2 with 64 channels everywhere, trained here first.
    config.generator.resolution = 32
    config.generator.channel_base = 2048
    config.generator.channel_max = 64
    config.generator.z_dim = 64
    config.generator.w_dim = 64
    config.generator.mapping_layers = 4
    config.teacher_training.total_steps = 800

    # The student and the StyleKD losses.
    config.total_steps = 400
    config.student.keep_ratio = 0.4
    config.student.mapping_init = "inherit"
    config.student.synthesis_init = "random"
    config.loss.ld_layers = (1, 2, 3)        # 8, 16, 32 px blocks (0 = 4x4)

    # Small images, short runs: NVlabs' small-resolution settings (R1 gamma ~ 0.0002 res^2 /
    # batch, no path-length regularisation as in their CIFAR config, EMA with ramp-up).
    config.r1_gamma = 0.05
    config.pl_weight = 0.0
    config.lr = 0.0025
    config.ema_decay = 0.5 ** (16 / 5_000)
    config.ema_rampup = 0.05

    config.log_every_steps = 20
    config.sample_every_steps = 200
    config.checkpoint_every_steps = 200
    config.sample_seeds = tuple(range(12))
    config.eval.metrics = "consistency,fdvgg2k"
    config.eval.consistency_samples = 1000
    config.eval.batch = 50
    return config
