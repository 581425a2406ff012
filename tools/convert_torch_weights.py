"""Convert a PyTorch StyleGAN2 or StyleGAN3 checkpoint into a StyleKD-JAX checkpoint directory, without torch.

    python tools/convert_torch_weights.py stylegan2-ffhq-256.pkl teacher/      # NVlabs pickle
    python tools/convert_torch_weights.py stylegan3-t-ffhqu-256x256.pkl sg3/   # NVlabs StyleGAN3 (T or R)
    python tools/convert_torch_weights.py 256px_full_size.pt teacher_rosi/      # rosinality / StyleKD / CAGAN
    python tools/convert_torch_weights.py pt_inception-2015-12-05-6726825d.pth fid/   # FID Inception

The file is read through an allow-list of pickle globals: nothing in it is executed.
The output directory holds `architecture.json` and the weights (orbax), ready for
`python -m stylekd_jax.generate --checkpoint DIR` and for distillation.
"""

import os
import sys
import time

from stylekd_jax import checkpoint, cli
from stylekd_jax.architecture import count_params, sequence_str
from stylekd_jax.convert import bisenet, inception
from stylekd_jax.convert.stylegan2 import convert_file
from stylekd_jax.convert.torch_files import CheckpointError
from stylekd_jax.outputs import OutputPathError, writable_dir


def summary(converted, source: str) -> str:
    lines = [f"source      {source} ({converted.source_format})"]
    g, d = converted.generator, converted.discriminator
    if g is not None and getattr(g, "family", "") == "stylegan3":
        size, _, _ = g.input_geometry()
        lines += [
            f"generator   StyleGAN3-{g.config_name} {g.resolution}x{g.resolution}, {g.img_channels} "
            f"channels, num_ws {g.num_ws}",
            f"  synthesis input {size}x{size}, layers L0..L{g.num_layers} channels "
            f"{sequence_str(g.channels)}, kernel {g.conv_kernel}, "
            f"{'radial' if g.use_radial_filters else 'separable'} down-filters, conv_clamp {g.conv_clamp}",
            f"  mapping   z {g.z_dim} -> {sequence_str(g.mapping_features)}, lr x{g.mapping_lr_multiplier}",
        ]
    elif g is not None:
        lines += [
            f"generator   {g.resolution}x{g.resolution}, {g.img_channels} channels, num_ws {g.num_ws}",
            f"  synthesis channels {sequence_str(g.channels)}, kernel {g.kernel_size}, "
            f"conv_clamp {g.conv_clamp}",
            f"  mapping   z {g.z_dim} -> {sequence_str(g.mapping_features)}, lr x{g.mapping_lr_multiplier}",
        ]
    if d is not None:
        lines.append(f"discriminator {d.resolution}x{d.resolution}, channels "
                     f"{dict(d.channels)}, mbstd group {d.mbstd_group_size}, conv_clamp {d.conv_clamp}")
    for name, variables in converted.networks.items():
        lines.append(f"  {name:6s} {count_params(variables['params']) / 1e6:.3f}M parameters")
    lines += [f"note        {n}" for n in converted.notes]
    return "\n".join(lines)


def convert_inception(args, start: float) -> int:
    """FID Inception-v3 (pytorch-fid .pth / NVlabs TorchScript .pt) -> OUTDIR/inception.npz."""
    try:
        converted = inception.convert_file(args.source)
        npz = inception.save(args.outdir, converted, args.source, overwrite=args.overwrite)
    except (CheckpointError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"source      {args.source} ({converted.source_format})")
    print(f"inception   FID Inception-v3, pool3 2048 features, "
          f"{count_params(converted.params) / 1e6:.3f}M parameters")
    for note in converted.notes:
        print(f"note        {note}")
    print(f"wrote {npz} in {time.time() - start:.1f} s")
    return 0


def main(argv=None) -> int:
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="NVlabs .pkl or rosinality/StyleKD/CAGAN .pt file")
    parser.add_argument("outdir", help="checkpoint directory to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint")
    parser.add_argument("--allow-unused", action="store_true",
                        help="convert even when the file holds tensors the conversion does not use "
                             "(they are listed as a note); by default that is an error")
    args = parser.parse_args(argv)
    start = time.time()
    if inception.looks_like_inception(args.source):
        return convert_inception(args, start)
    if bisenet.looks_like_bisenet(args.source):
        print(f"error: {args.source} holds the BiSeNet face-parsing weights, which need no "
              f"conversion: pass the file itself to training with "
              f"--config.loss.face_parser={args.source}", file=sys.stderr)
        return 2
    created = not os.path.exists(args.outdir)
    try:   # the output is checked first: a conversion can take a minute
        if os.path.isfile(os.path.join(args.outdir, checkpoint.ARCHITECTURE_FILE)) and not args.overwrite:
            raise FileExistsError(f"{os.path.abspath(args.outdir)} already holds a checkpoint; "
                                  f"choose another directory or pass --overwrite")
        writable_dir(args.outdir)
        converted = convert_file(args.source, allow_unused=args.allow_unused)
        checkpoint.save(args.outdir, converted.networks, converted.generator,
                        converted.discriminator, overwrite=args.overwrite,
                        source={"file": os.path.abspath(args.source),
                                "format": converted.source_format},
                        notes=converted.notes)
    except (CheckpointError, FileExistsError, OutputPathError) as e:
        if created and os.path.isdir(args.outdir) and not os.listdir(args.outdir):
            os.rmdir(args.outdir)   # leave nothing behind for a failed conversion
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary(converted, args.source))
    print(f"wrote {args.outdir} in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
