"""Write PyTorch `.pt` files (the zip `torch.save` container) without importing torch.

The inverse of `torch_files.load_torch_file` for the one case export needs: a tree of dicts,
lists, numbers, strings and numpy arrays. The container, as `torch.save` writes it (and
`torch.load`, also with `weights_only=True`, reads it):

    archive/data.pkl     pickle (protocol 2) of the tree; each tensor is
                         torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
                         requires_grad, OrderedDict()) and each storage a persistent id
                         ('storage', torch.FloatStorage, key, 'cpu', numel)
    archive/data/<key>   the storage's raw little-endian bytes, 64-byte aligned
    archive/byteorder    'little'
    archive/version      '3'

The torch globals are written by name (GLOBAL opcodes): nothing of torch is imported, and
the file names only the globals a plain state dict does.
"""

import collections
import io
import pickle
import struct
import zipfile

import numpy as np

ARCHIVE = "archive"
_ALIGN = 64   # torch aligns storages so that they can be memory-mapped
_STORAGE_TYPES = {np.dtype("float32"): "FloatStorage", np.dtype("float64"): "DoubleStorage",
                  np.dtype("float16"): "HalfStorage", np.dtype("int64"): "LongStorage",
                  np.dtype("int32"): "IntStorage", np.dtype("uint8"): "ByteStorage",
                  np.dtype("bool"): "BoolStorage"}


class _Global:
    """A module-level name to be pickled as a GLOBAL opcode (never imported here)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):   # pickle wants the callable of a reduce tuple to be callable
        raise TypeError(f"{self.module}.{self.name} is a name to write, not to call")


_REBUILD_TENSOR = _Global("torch._utils", "_rebuild_tensor_v2")
_ORDERED_DICT = _Global("collections", "OrderedDict")


class _Storage:
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array


class _Tensor:
    def __init__(self, storage: _Storage, shape: tuple[int, ...]):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        stride, step = [], 1
        for n in reversed(self.shape):   # C-contiguous strides, in elements
            stride.insert(0, step)
            step *= n
        return (_REBUILD_TENSOR, (self.storage, 0, tuple(self.shape), tuple(stride), False,
                                  _EmptyOrderedDict()))


class _EmptyOrderedDict:
    """`collections.OrderedDict()`, the tensor's (empty) backward hooks."""

    def __reduce__(self):
        return (_ORDERED_DICT, ())


class _Pickler(pickle._Pickler):   # the Python implementation: its dispatch table is extensible
    dispatch = dict(pickle._Pickler.dispatch)

    def _save_global_name(self, obj: _Global):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("utf-8"))

    dispatch[_Global] = _save_global_name

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            kind = _Global("torch", _STORAGE_TYPES[obj.array.dtype])
            return ("storage", kind, obj.key, "cpu", int(obj.array.size))
        return None


def _prepare(tree, storages: list[_Storage]):
    """Replace numpy arrays by tensor stand-ins (recording their storages), dicts by OrderedDicts."""
    if isinstance(tree, np.ndarray) or isinstance(tree, np.generic):
        array = np.array(tree, order="C")   # (ascontiguousarray would make a scalar 1-D)
        if array.dtype not in _STORAGE_TYPES:
            raise TypeError(f"cannot write a {array.dtype} tensor")
        storage = _Storage(str(len(storages)), array.astype(array.dtype.newbyteorder("<")))
        storages.append(storage)
        return _Tensor(storage, array.shape)
    if isinstance(tree, dict):
        return collections.OrderedDict((k, _prepare(v, storages)) for k, v in tree.items())
    if isinstance(tree, (list, tuple)):
        return type(tree)(_prepare(v, storages) for v in tree)
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    raise TypeError(f"cannot write {type(tree).__name__} into a torch file")


def _write_aligned(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    """A stored (uncompressed) entry whose data starts at a multiple of _ALIGN, padded with an
    extra field as torch's writer does."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    header_end = archive.fp.tell() + 30 + len(name.encode("utf-8"))
    pad = (-(header_end + 4)) % _ALIGN
    info.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad   # 'FB' padding field
    archive.writestr(info, data)


def save(tree, path: str) -> None:
    """Write `tree` (dicts, lists, numbers, strings, numpy arrays) as a torch.save zip file."""
    storages: list[_Storage] = []
    prepared = _prepare(tree, storages)
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump(prepared)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        _write_aligned(archive, f"{ARCHIVE}/data.pkl", buffer.getvalue())
        _write_aligned(archive, f"{ARCHIVE}/byteorder", b"little")
        for storage in storages:
            _write_aligned(archive, f"{ARCHIVE}/data/{storage.key}", storage.array.tobytes())
        _write_aligned(archive, f"{ARCHIVE}/version", b"3\n")
