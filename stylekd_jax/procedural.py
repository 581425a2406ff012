"""A small procedural image dataset for the demo: no downloads, fully deterministic.

Why: the demo trains a small StyleGAN2 teacher from scratch on CPU and then distils it, so it
needs training images that exist on every machine, cost nothing to make, and are simple enough
that a GAN learns something visible within a few hundred steps, yet structured enough (edges,
flat regions, colour gradients) that the generated pictures show whether training worked.

A scene (32x32 or 64x64 RGB) is:
  * a smooth linear gradient between two colours of a muted 8-colour background palette, at a
    random angle;
  * 1 or 2 filled shapes on top, each in a different colour of a saturated 8-colour palette:
    an ellipse (sometimes a circle, maybe rotated), a rectangle (sometimes a square, axis-aligned
    or rotated) or an equilateral triangle (random rotation), 30-60 % of the image in size,
    placed at random inside the image, later shapes drawn over earlier ones;
  * anti-aliased edges: each shape's coverage is rasterised at 4x and box-filtered down.

Scene i of seed s is a pure function of (s, i, resolution), drawn from
``np.random.default_rng([s, i])``; the layout does not depend on the resolution, so the 32px and
64px versions of a scene show the same picture. ``write_dataset`` stores scenes as a
stylegan2-ada ``dataset_tool.py``-style zip that ``input_pipeline`` reads as ``zip:/path``.
"""

import dataclasses
import io
import json
import os
import zipfile
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

# Muted colours for the background gradient.
BACKGROUND_PALETTE = np.array([
    (38, 50, 72),     # navy slate
    (62, 88, 110),    # steel
    (92, 130, 120),   # teal grey
    (150, 170, 140),  # sage
    (215, 200, 170),  # sand
    (235, 225, 205),  # cream
    (170, 190, 215),  # sky
    (120, 100, 130),  # dusty plum
], np.float32)

# Saturated colours for the shapes.
SHAPE_PALETTE = np.array([
    (230, 40, 40),    # red
    (245, 140, 20),   # orange
    (250, 215, 30),   # yellow
    (40, 180, 60),    # green
    (20, 200, 210),   # cyan
    (40, 80, 230),    # blue
    (140, 50, 200),   # purple
    (230, 40, 160),   # magenta
], np.float32)

SHAPE_KINDS = ("ellipse", "rectangle", "triangle")
SUPERSAMPLE = 4          # shape coverage is rasterised at this multiple of the resolution
_ELLIPSE_VERTICES = 48   # an ellipse is drawn as this many-sided polygon
_FORMAT = "stylekd_jax.procedural/2"  # bump when scenes change, so old zips are rewritten


@dataclasses.dataclass(frozen=True)
class Shape:
    """One filled shape; lengths and positions are fractions of the image side."""
    kind: str                         # one of SHAPE_KINDS
    color: tuple[float, float, float]  # RGB, 0-255
    center: tuple[float, float]       # (x, y), y down
    size: float                       # ellipse/rectangle width, triangle circumdiameter
    aspect: float                     # height / width (1 for circles, squares and triangles)
    angle: float                      # rotation in radians


@dataclasses.dataclass(frozen=True)
class Scene:
    """A background gradient from color0 to color1 along direction `angle`, then the shapes."""
    color0: tuple[float, float, float]
    color1: tuple[float, float, float]
    angle: float
    shapes: tuple[Shape, ...]


def sample_scene(index: int, seed: int = 0) -> Scene:
    """The random layout of scene `index` (independent of the resolution)."""
    if index < 0 or seed < 0:
        raise ValueError(f"index and seed must be >= 0, got index={index}, seed={seed}")
    rng = np.random.default_rng([seed, index])
    bg0, bg1 = rng.choice(len(BACKGROUND_PALETTE), 2, replace=False)
    bg_angle = rng.uniform(0, 2 * np.pi)
    count = int(rng.integers(1, 3))
    colors = rng.choice(len(SHAPE_PALETTE), count, replace=False)
    shapes = []
    for color in colors:
        kind = SHAPE_KINDS[int(rng.integers(len(SHAPE_KINDS)))]
        size = rng.uniform(0.3, 0.6)
        if kind == "triangle":
            aspect, angle = 1.0, rng.uniform(0, 2 * np.pi / 3)
        else:
            aspect = 1.0 if rng.random() < 0.4 else rng.uniform(0.5, 0.85)
            angle = 0.0 if rng.random() < 0.5 else rng.uniform(0, np.pi)
        center = rng.uniform(size / 2, 1 - size / 2, 2)
        shapes.append(Shape(kind, tuple(SHAPE_PALETTE[color].tolist()), tuple(center.tolist()),
                            float(size), float(aspect), float(angle)))
    return Scene(tuple(BACKGROUND_PALETTE[bg0].tolist()), tuple(BACKGROUND_PALETTE[bg1].tolist()),
                 float(bg_angle), tuple(shapes))


def background(scene: Scene, resolution: int) -> np.ndarray:
    """float32 [res, res, 3]: the linear gradient, 0-255, spanning the image along scene.angle."""
    coords = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution
    direction = np.array([np.cos(scene.angle), np.sin(scene.angle)], np.float32)
    proj = coords[None, :] * direction[0] + coords[:, None] * direction[1]  # [y, x]
    corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32) @ direction
    t = (proj - corners.min()) / (corners.max() - corners.min())
    c0, c1 = np.asarray(scene.color0, np.float32), np.asarray(scene.color1, np.float32)
    return c0 + t[..., None] * (c1 - c0)


def _outline(shape: Shape) -> np.ndarray:
    """[n, 2] polygon vertices (x, y) in image fractions."""
    if shape.kind == "triangle":
        phi = shape.angle + np.arange(3) * 2 * np.pi / 3
        local = 0.5 * shape.size * np.stack([np.cos(phi), np.sin(phi)], -1)
        rotate = False
    else:
        half = 0.5 * shape.size * np.array([1.0, shape.aspect])
        if shape.kind == "ellipse":
            phi = np.arange(_ELLIPSE_VERTICES) * 2 * np.pi / _ELLIPSE_VERTICES
            local = half * np.stack([np.cos(phi), np.sin(phi)], -1)
        else:
            local = half * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
        rotate = True
    if rotate and shape.angle:
        c, s = np.cos(shape.angle), np.sin(shape.angle)
        local = local @ np.array([[c, s], [-s, c]])
    return local + np.asarray(shape.center)


def coverage(shape: Shape, resolution: int) -> np.ndarray:
    """float32 [res, res] in [0, 1]: the fraction of each pixel the shape covers (anti-aliased)."""
    big = resolution * SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    # Continuous coordinate u covers fine pixel floor(u); PIL puts pixel centres at integers.
    points = _outline(shape) * big - 0.5
    ImageDraw.Draw(mask).polygon([tuple(p) for p in points.tolist()], fill=255)
    small = mask.resize((resolution, resolution), Image.Resampling.BOX)
    return np.asarray(small, np.float32) / 255.0


def draw_scene(scene: Scene, resolution: int) -> np.ndarray:
    """uint8 [res, res, 3]: the background with the shapes composited in order."""
    image = background(scene, resolution)
    for shape in scene.shapes:
        alpha = coverage(shape, resolution)[..., None]
        image += alpha * (np.asarray(shape.color, np.float32) - image)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def render_scene(index: int, resolution: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 [resolution, resolution, 3]; a pure function of (seed, index, resolution)."""
    if resolution < 4:
        raise ValueError(f"resolution must be >= 4, got {resolution}")
    return draw_scene(sample_scene(index, seed), resolution)


def image_name(index: int) -> str:
    """The zip member name of image `index`, as dataset_tool.py writes it."""
    return f"{index // 1000:05d}/img{index:08d}.png"


def _metadata(num_images: int, resolution: int, seed: int) -> dict:
    return {"labels": None,
            "procedural": {"format": _FORMAT, "num_images": num_images,
                           "resolution": resolution, "seed": seed}}


def _is_current(path: str, num_images: int, resolution: int, seed: int) -> bool:
    """Whether `path` is a complete zip written by write_dataset with these arguments."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if "dataset.json" not in names:
                return False
            meta = json.loads(z.read("dataset.json"))
            images = sorted(n for n in names if n.lower().endswith(".png"))
            if meta != _metadata(num_images, resolution, seed) or len(images) != num_images:
                return False
            if images != [image_name(i) for i in range(num_images)]:
                return False
            with Image.open(io.BytesIO(z.read(images[-1]))) as last:
                return last.size == (resolution, resolution)
    except (OSError, zipfile.BadZipFile, ValueError, KeyError):
        return False


def write_dataset(path: str, num_images: int, resolution: int = 32, seed: int = 0,
                  progress: Callable[[int, int], None] | None = None) -> str:
    """Write scenes 0..num_images-1 as a dataset_tool-style zip at `path`; return `path`.

    Members: PNGs named like '00000/img00000123.png' and 'dataset.json' holding
    {"labels": null} plus the generator's arguments. Reuses (does not touch) an existing zip
    written with the same (num_images, resolution, seed); anything else at `path` is replaced.
    The zip is built in path + '.tmp' and moved into place with os.replace, so an interrupted
    write never leaves a truncated zip at `path` (a stale .tmp is simply overwritten).
    progress(done, total) is called every 1000 images and at the end (not when reusing).
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if resolution < 4 or seed < 0:
        raise ValueError(f"need resolution >= 4 and seed >= 0, got {resolution}, {seed}")
    if os.path.isfile(path) and _is_current(path, num_images, resolution, seed):
        return path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
                for i in range(num_images):
                    buf = io.BytesIO()
                    Image.fromarray(render_scene(i, resolution, seed)).save(buf, format="png")
                    z.writestr(image_name(i), buf.getvalue())
                    done = i + 1
                    if progress is not None and (done % 1000 == 0 or done == num_images):
                        progress(done, num_images)
                z.writestr("dataset.json", json.dumps(_metadata(num_images, resolution, seed)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return path
