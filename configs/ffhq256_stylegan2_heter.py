"""StyleKD on FFHQ 256 with the heterogeneous student: kernel 1 for every non-upsampling conv.

    python -m stylekd_jax.main --config configs/ffhq256_stylegan2_heter.py --workdir runs/ffhq256_heter \\
        --config.teacher=teacher/ --config.data.source=folder:/data/ffhq256 \\
        --config.loss.face_parser=79999_iter.pth

Student [154]*10 + [77, 77, 39, 39] with 1x1 second convs: 4.75M params, 1.5 G MACs per image.
Paper (Table 3, "heter", 3.4M params / 2.7 G MACs by its count): CAGAN-heter FID 13.75,
StyleKD-heter 9.96.

Face mask (official content-aware KD): L1 and LPIPS see only the face of the teacher image
(BiSeNet parsing). Pass the face-parsing.PyTorch weights with
`--config.loss.face_parser=/path/to/79999_iter.pth`, or turn it off with
`--config.loss.face_mask=False`.
"""

from stylekd_jax.config import base_config


def get_config():
    config = base_config()
    config.student.keep_ratio = 0.3
    config.student.kernel_size = 1
    config.loss.face_mask = True        # needs --config.loss.face_parser=79999_iter.pth
    config.eval.ppl_samples = 5000      # paper-comparable PPL: eval.metrics=ppl_wfull_stylekd
    return config
