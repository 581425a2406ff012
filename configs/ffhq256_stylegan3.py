"""StyleKD on FFHQ 256 with a StyleGAN3 teacher (paper Table 3, row "StyleGAN3 FFHQ 256").

    python tools/convert_torch_weights.py stylegan3-t-ffhqu-256x256.pkl sg3_teacher/
    python -m stylekd_jax.main --config configs/ffhq256_stylegan3.py --workdir runs/ffhq256_sg3 \\
        --config.teacher=sg3_teacher/ --config.data.source=folder:/data/ffhq256 \\
        --config.loss.face_parser=79999_iter.pth

Teacher StyleGAN3-T 256 (28.5M params, 232 G MACs per image in the StyleGAN2 paper's
convention). Student: every layer's channels x0.4 (CAGAN rounding): [205]*9 + [145, 103, 73,
52, 52], 5.77M params, the paper's 5.6M; its cost is 37 G MACs, not the 4.1 G the paper
lists for both families: a StyleGAN3 of that size runs its layers at up to 276 px and cannot
cost 4.1 G. Inherited mapping, random synthesis and discriminator; L1 3 + LPIPS 3 + LD-KL 30
+ GAN; LD features of layers L1, L2 (36 px, as the DCP-GAN StyleGAN3 distillation); NVlabs'
StyleGAN3 training settings: G lr 0.0025, D lr 0.002, no style mixing, no path-length
regulariser, R1 gamma 2 (FFHQ-U 256), magnitude EMAs updated every G step. Batch 16, 450k steps.
Paper (Table 3, FID 50k, StyleKD protocol): teacher 4.41; CAGAN 7.75; StyleKD 7.14, PSNR 33.58.

For a StyleGAN3-R teacher add `--config.blur_init_sigma=10 --config.blur_fade_kimg=100`
(NVlabs: D's input blur faded over batch * 200 / 32 kimg).

Face mask (official content-aware KD): L1 and LPIPS see only the face of the teacher image
(BiSeNet parsing). Pass the face-parsing.PyTorch weights with
`--config.loss.face_parser=/path/to/79999_iter.pth`, or turn it off with
`--config.loss.face_mask=False`.
"""

from stylekd_jax.config import base_config


def get_config():
    config = base_config()
    config.student.keep_ratio = 0.4
    config.loss.ld_layers = (1, 2)
    config.loss.style_mixing = 0.0
    config.pl_weight = 0.0
    config.r1_gamma = 2.0
    config.lr = 0.0025
    config.d_lr = 0.002
    config.total_steps = 450_000
    config.batch_size = 16
    config.loss.face_mask = True        # needs --config.loss.face_parser=79999_iter.pth
    return config
