"""The embedded default: StyleKD distillation of a shipped teacher, on procedural 32px scenes.

    bash launch/demo.sh            # = python -m stylekd_jax.main --config configs/demo.py --workdir runs/demo

No downloads and no weights to fetch. In one command (on a 2-core CPU with one core busy
elsewhere, measured: see the README's demo section):
  1. writes 5000 procedural 32x32 scenes (gradient background, 1-2 coloured shapes) to
     runs/demo/data/ (procedural.py): the teacher's training data;
  2. distils the teacher that comes with the package (stylekd_jax/assets/demo_teacher: a
     StyleGAN2 trained on those scenes for 6000 steps by configs/demo_teacher.py) into a
     student with half the channels (3.1x fewer parameters, 4x fewer MACs) with StyleKD's
     losses (L1 + LPIPS + LD-KL + GAN at weight 0.1) and inherited mapping, 500 steps;
  3. evaluates teacher-student consistency and a Frechet distance on LPIPS-VGG features
     (FD-VGG; no Inception weights offline) and writes runs/demo/report.md: teacher and
     student images for fixed seeds, loss curves, the numbers and each stage's time.
The student's synthesis starts from the teacher's strongest channels (`synthesis_init`
'inherit'), not StyleKD's random synthesis: in the demo's few hundred steps that converges
far faster (measured 2026-12-02 on a 6000-step snapshot, batch 8, lr 0.01: teacher-student
LPIPS 0.22 after 300 steps inherited vs 0.47 random, which levels off at 0.45 by 600 steps).
Over the paper's 450k steps the order reverses (Table 1, FID: inherit/random 8.23,
inherit/inherit 8.61); configs/demo_ablation.py compares the initialisations here.
Batch 8, lr 0.01 (4x NVlabs' small-resolution rate) and Adam momentum (b1 0.9; StyleKD: 0)
for the same reason: more, larger steps in the budget (lr 0.03 diverged). Measured 2026-12-02,
400 steps, T-S LPIPS / PSNR on 1000 samples: 40% of the channels 0.179 / 21.7 dB; half the
channels 0.151 / 22.7; + b1 0.9 0.142 / 23.0; + L1 on every block's RGB (the official
--kd_mode Intermediate) 0.135 / 23.3, where lr 0.005 or 0.02 did no better. Without the GAN
loss (half the channels, b1 0.9) 0.138 / 23.2: at weight 0.1 it neither helps nor hurts here.
L1 at weight 30 (StyleKD: 3) and style mixing on half the batches (StyleKD: 0.9) for PSNR, which
weighs every pixel where LPIPS weighs structure. Measured 2026-12-03, 500 steps, one core per
run: L1 weight 3 / 10 / 20 / 30: 0.126 / 23.58, 0.127 / 23.84, 0.128 / 23.99, 0.130 / 24.01;
with L1 30, mixing 0.5 / 0: 0.125 / 24.18, 0.123 / 24.34 (the metric draws unmixed latents;
0.5 keeps the student trained on mixes too, for style mixing in the editor and explorer).
Expected (README, 2-core CPU): see the README's demo table. To distil a teacher of your own
instead: --config.teacher=DIR (an exported generator, e.g. runs/demo_teacher/student).
Rerunning reuses what is done.
"""

import os

import stylekd_jax
from stylekd_jax.config import base_config

DEMO_TEACHER = os.path.join(os.path.dirname(stylekd_jax.__file__), "assets", "demo_teacher")


def scenes_config():
    """The demo's data and small-resolution settings, shared with configs/demo_teacher.py, which
    trains the teacher on the same scenes (the student's tuning below is not for it)."""
    config = base_config()
    config.seed = 0
    config.data.source = "shapes:5000"     # the teacher's training data (configs/demo_teacher.py)

    # Small images, short runs: NVlabs' small-resolution settings (R1 gamma ~ 0.0002 res^2 /
    # batch, no path-length regularisation as in their CIFAR config, EMA with ramp-up).
    config.r1_gamma = 0.05
    config.pl_weight = 0.0
    config.ema_rampup = 0.05

    config.sample_seeds = tuple(range(12))
    config.eval.batch = 50
    return config


def get_config():
    config = scenes_config()
    config.teacher = DEMO_TEACHER
    config.batch_size = 8

    # The student and the StyleKD losses.
    config.total_steps = 500
    config.student.keep_ratio = 0.5          # 3.1x fewer parameters (0.4: 4.1x, T-S LPIPS +0.04)
    config.student.mapping_init = "inherit"
    config.student.synthesis_init = "inherit"   # see above: the fastest start in a short budget
    config.loss.ld_layers = (1, 2, 3)        # 8, 16, 32 px blocks (0 = 4x4)
    config.loss.l1_intermediate = True       # L1 on every block's RGB, 4-32 px
    config.loss.shared_noise = True          # the consistency metric renders both with one noise
    config.loss.l1 = 30.0                    # see above: +0.4 dB PSNR over StyleKD's 3
    config.loss.style_mixing = 0.5           # see above: +0.2 dB over StyleKD's 0.9
    # GAN weight 0.1 (StyleKD: 1): at 1 the discriminator starts winning after ~300 steps and
    # its gradient pulls the student off the teacher (T-S LPIPS 0.21 at step 300, 0.28 at 400).
    config.loss.gan = 0.1

    config.lr = 0.01
    config.adam_b1 = 0.9                     # see above; StyleKD and NVlabs: 0
    config.ema_decay = 0.5 ** (config.batch_size / 5_000)   # half-life 5k images

    config.log_every_steps = 20
    config.sample_every_steps = 200
    config.checkpoint_every_steps = 200
    config.eval.metrics = "consistency,fdvgg2k"
    config.eval.consistency_samples = 1000
    return config
