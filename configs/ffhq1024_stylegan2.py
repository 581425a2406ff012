"""StyleKD on FFHQ 1024 (paper Table 3, 1024 rows).

    python tools/convert_torch_weights.py stylegan2-ffhq-1024.pkl teacher1024/
    python -m stylekd_jax.main --config configs/ffhq1024_stylegan2.py --workdir runs/ffhq1024 \\
        --config.teacher=teacher1024/ --config.data.source=folder:/data/ffhq1024 \\
        --config.loss.face_parser=79999_iter.pth

Student: keep ratio 0.3 of config-f, 7.0 G MACs per image (teacher 74.3 G), as the paper;
5.65M parameters by our count (the paper lists 9.2M / 49.1M for student / teacher).
LPIPS on images resized to 256, as the official code does. Batch 16, 450k steps.
Paper: teacher FID 2.7; CAGAN 7.6; StyleKD 7.19.

Face mask (official content-aware KD): L1 and LPIPS see only the face of the teacher image
(BiSeNet parsing). Pass the face-parsing.PyTorch weights with
`--config.loss.face_parser=/path/to/79999_iter.pth`, or turn it off with
`--config.loss.face_mask=False`.
"""

from stylekd_jax.config import base_config


def get_config():
    config = base_config()
    config.student.keep_ratio = 0.3
    config.loss.lpips_size = 256
    config.loss.face_mask = True        # needs --config.loss.face_parser=79999_iter.pth
    config.eval.ppl_samples = 5000      # paper-comparable PPL: eval.metrics=ppl_wfull_stylekd
    return config
