"""Every tensor of a source file accounted for, and none non-finite: shared by the converters.

A converter reads the tensors it needs through a `TrackedStateDict`, which records every name
read, then calls `check_all_used`. A tensor that was never read means the file holds a layer
the converter does not understand, or that a layer before it was missing and a walk over the
layers stopped early: either way the converted network would silently differ from the file.
Buffers a converter recomputes (blur filters) are passed as `expected_unused` patterns and
should be checked with `check_filters`.
"""

import re
from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from stylekd_jax.convert.torch_files import CheckpointError

# The [1, 3, 3, 1] FIR filter every StyleGAN2 resampling layer uses (the converter rebuilds it).
BLUR_TAPS = np.asarray([1.0, 3.0, 3.0, 1.0])


class TrackedStateDict(Mapping):
    """A read-only view of a state dict that records which names were read (`used`).

    Only `[]` and `get` count as a read; `in`, iteration and `len` do not.
    """

    def __init__(self, tensors: Mapping[str, np.ndarray]):
        self._tensors = tensors
        self.used: set[str] = set()

    def __getitem__(self, name: str) -> np.ndarray:
        value = self._tensors[name]
        self.used.add(name)
        return value

    def __contains__(self, name) -> bool:
        return name in self._tensors

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)


def name_list(names: Iterable[str], limit: int = 8) -> str:
    """'a, b, c' or 'a, b, ... (12 more)': names for a one-line message."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def check_finite(tensors: Mapping[str, np.ndarray], what: str) -> None:
    """Raise a CheckpointError naming the first floating-point tensor with a NaN or Inf."""
    for name in tensors:
        array = np.asarray(tensors[name])
        if array.dtype.kind != "f" or np.isfinite(array).all():
            continue
        nan = int(np.isnan(array).sum())
        inf = int(np.isinf(array).sum())
        bad = " and ".join(f"{n} {kind}" for n, kind in ((nan, "NaN"), (inf, "Inf")) if n)
        raise CheckpointError(
            f"{what} tensor {name} holds {bad} of its {array.size} values: the file is corrupt or "
            f"was saved after training diverged; convert an earlier checkpoint")


def check_ranks(tensors: Mapping[str, np.ndarray], ranks: Iterable[tuple[str, int]], what: str) -> None:
    """Raise a CheckpointError naming the first tensor whose number of dimensions is not the one
    its kind must have. `ranks` is (name pattern, ndim) pairs; the first full match decides.

    Without it a flattened or squeezed weight fails deep inside the conversion with an
    IndexError (or, worse, broadcasts into a wrong network)."""
    rules = [(re.compile(p), n) for p, n in ranks]
    for name in tensors:
        want = next((n for p, n in rules if p.fullmatch(name)), None)
        shape = np.shape(tensors[name])
        if want is not None and len(shape) != want:
            raise CheckpointError(
                f"{what} tensor {name} has shape {list(shape)} ({len(shape)}-D), but a tensor of "
                f"this kind has {want} dimensions: the file was damaged or saved reshaped; "
                f"convert the checkpoint as the training code wrote it")


def unused_names(tensors: Mapping[str, np.ndarray], used: Iterable[str],
                 expected_unused: Iterable[str] = ()) -> list[str]:
    """Names in `tensors` neither in `used` nor matching (re.fullmatch) an `expected_unused` pattern."""
    used = set(used)
    patterns = [re.compile(p) for p in expected_unused]
    return [k for k in tensors if k not in used and not any(p.fullmatch(k) for p in patterns)]


def check_all_used(tensors: Mapping[str, np.ndarray], used: Iterable[str], what: str, *,
                   allow_unused: bool = False, expected_unused: Iterable[str] = ()) -> list[str]:
    """Raise a CheckpointError listing the tensors the conversion did not use.

    With `allow_unused`, return them as a note for the summary instead ([] when all were used).
    """
    unused = unused_names(tensors, used, expected_unused)
    if not unused:
        return []
    if allow_unused:
        return [f"{what}: {len(unused)} tensor(s) of the file were not converted "
                f"(--allow-unused): {name_list(unused)}"]
    raise CheckpointError(
        f"{what}: {len(unused)} tensor(s) of the file are not used by the conversion: "
        f"{name_list(unused)}; the file holds layers this converter does not know, or a layer "
        f"before them is missing. Check the file, or pass --allow-unused to convert without them")


def check_filters(tensors: Mapping[str, np.ndarray], pattern: str, what: str,
                  taps: np.ndarray = BLUR_TAPS) -> None:
    """Every tensor whose name matches `pattern` must be the (scaled) FIR filter `taps`,
    1-D or its 2-D outer product: the converter rebuilds these buffers instead of reading them."""
    compiled = re.compile(pattern)
    for name in tensors:
        if not compiled.fullmatch(name):
            continue
        f = np.asarray(tensors[name], np.float64)
        want = taps if f.ndim == 1 else np.outer(taps, taps)
        with np.errstate(divide="ignore", invalid="ignore"):
            same = f.shape == want.shape and np.allclose(f / f.sum() * want.sum(), want,
                                                         rtol=1e-4, atol=1e-6)
        if not same:
            raise CheckpointError(
                f"{what} tensor {name} is a resampling filter other than {taps.astype(int).tolist()} "
                f"(shape {list(f.shape)}); only StyleGAN2's default filter can be converted")
