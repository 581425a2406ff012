"""StyleKD on FFHQ 256, StyleGAN2 config-f teacher -> 70%-pruned-shape student (paper Table 3).

    python tools/convert_torch_weights.py stylegan2-ffhq-256.pkl teacher/
    python -m stylekd_jax.main --config configs/ffhq256_stylegan2.py --workdir runs/ffhq256 \\
        --config.teacher=teacher/ --config.data.source=folder:/data/ffhq256 \\
        --config.loss.face_parser=79999_iter.pth

Student [154]*10 + [77, 77, 39, 39] (keep ratio 0.3, CAGAN rounding): 5.57M params,
4.1 G MACs per image (teacher 30.0M / 45.1 G). Inherited mapping, random synthesis and
discriminator, L1 3 + LPIPS 3 + LD-KL 30 + GAN, batch 16, 450k steps.
Paper (Table 3, FID on 50k samples, StyleKD protocol): teacher 4.5; CAGAN 7.9; StyleKD 7.25,
PPL 0.135, PSNR 33.49 (paper-comparable here: `ppl_wfull_stylekd` over 5000 pairs and
`psnr_official_compat` of `python -m stylekd_jax.evaluate --metrics psnr`; see the README).

Face mask (official content-aware KD): L1 and LPIPS see only the face of the teacher image
(BiSeNet parsing). Pass the face-parsing.PyTorch weights with
`--config.loss.face_parser=/path/to/79999_iter.pth`, or turn it off with
`--config.loss.face_mask=False`.
"""

from stylekd_jax.config import base_config


def get_config():
    config = base_config()
    config.student.keep_ratio = 0.3
    config.total_steps = 450_000
    config.batch_size = 16
    config.loss.face_mask = True        # needs --config.loss.face_parser=79999_iter.pth
    config.eval.ppl_samples = 5000      # paper-comparable PPL: eval.metrics=ppl_wfull_stylekd
    return config
