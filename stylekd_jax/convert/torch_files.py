"""Read PyTorch checkpoint files without torch, without NVlabs code, and without running the file.

StyleGAN / StyleKD weights ship as zip `torch.save` archives, legacy (non-zip) `torch.save`
files and NVlabs network pickles. Unpickling them the usual way
imports torch and `torch_utils` and lets the file call any Python global. Here a custom
unpickler maps a fixed allow-list of globals to inert stand-ins instead: tensors become numpy
arrays, NVlabs networks become `PersistentObject`s whose `module_src` stays a string, and any
other global is refused with a `CheckpointError`.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
import zlib

import numpy as np

try:
    from numpy._core import multiarray as _np_multiarray, numeric as _np_numeric
except ImportError:  # numpy < 2
    from numpy.core import multiarray as _np_multiarray, numeric as _np_numeric

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch dtype name -> numpy type code of one stored element (bfloat16 is read as raw bits).
_ELEMENT_CODES = {
    'float32': 'f4', 'float64': 'f8', 'float16': 'f2', 'bfloat16': 'u2',
    'int64': 'i8', 'int32': 'i4', 'int16': 'i2', 'int8': 'i1', 'uint8': 'u1', 'bool': '?',
    'uint16': 'u2', 'uint32': 'u4', 'uint64': 'u8',
}
_STORAGE_DTYPES = {
    'FloatStorage': 'float32', 'DoubleStorage': 'float64', 'HalfStorage': 'float16',
    'BFloat16Storage': 'bfloat16', 'LongStorage': 'int64', 'IntStorage': 'int32',
    'ShortStorage': 'int16', 'CharStorage': 'int8', 'ByteStorage': 'uint8', 'BoolStorage': 'bool',
    'UntypedStorage': 'uint8',
}


class CheckpointError(ValueError):
    """One-line, user-facing error: says what is wrong with which file and what to do."""


class _Corrupt(Exception):
    """Internal: the content is inconsistent; reworded with the file name by load_torch_file."""


class _Refused(Exception):
    """Internal: the pickle names a global outside the allow-list (the argument names it)."""


class PersistentObject:
    """Stand-in for an NVlabs `persistence` network object (never runs its module_src)."""

    def __init__(self, class_name: str, module_src: str, state: dict):
        self.class_name = class_name
        self.module_src = module_src
        self.state = state

    def __repr__(self):
        return f'PersistentObject({self.class_name})'

    @property
    def init_kwargs(self) -> dict:
        """The constructor arguments (`_init_kwargs`); EasyDicts are already plain dicts."""
        return dict(self.state.get('_init_kwargs') or {})

    def attr(self, name, default=None):
        """A plain attribute from the pickled `__dict__` (conv_clamp, up, ...)."""
        return self.state.get(name, default)

    @property
    def modules(self) -> dict[str, PersistentObject]:
        """Direct submodules in registration order."""
        return {k: v for k, v in (self.state.get('_modules') or {}).items() if v is not None}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Like torch.nn.Module.state_dict(): parameters, persistent buffers, then submodules."""
        skip = self.state.get('_non_persistent_buffers_set') or set()
        out = {k: v for k, v in (self.state.get('_parameters') or {}).items() if v is not None}
        out.update((k, v) for k, v in (self.state.get('_buffers') or {}).items()
                   if v is not None and k not in skip)
        for prefix, child in self.modules.items():
            out.update((f'{prefix}.{k}', v) for k, v in child.state_dict().items())
        return out


class Namespace:
    """Safe stand-in for argparse.Namespace (attributes set from pickled state)."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)

    def __repr__(self):
        return 'Namespace(' + ', '.join(f'{k}={v!r}' for k, v in vars(self).items()) + ')'


class _Storage:
    """One torch storage: the dtype it was saved as and its bytes (None until a legacy file's
    data section is read)."""

    def __init__(self, dtype, order, numel, raw=None):
        if dtype not in _ELEMENT_CODES:
            raise _Corrupt(f'unsupported storage type {dtype!r}')
        self.dtype, self.order, self.numel = dtype, order, int(numel)
        self.itemsize = np.dtype(_ELEMENT_CODES[dtype]).itemsize
        self.raw = None
        if raw is not None:
            self.fill(raw)

    def fill(self, raw):
        """Attach the bytes, which must hold at least `numel` elements."""
        nbytes = self.numel * self.itemsize
        if len(raw) < nbytes:
            raise _Corrupt(f'storage holds {len(raw)} bytes, expected {nbytes}')
        self.raw = np.frombuffer(raw, np.uint8, count=nbytes)

    def view(self, offset, numel):
        """The sub-storage of a legacy storage view (offset and numel in elements)."""
        start = int(offset) * self.itemsize
        return _Storage(self.dtype, self.order, numel, self.raw[start:])

    def elements(self, dtype):
        """The bytes as a 1-D array of `dtype` elements in the file's byte order."""
        if dtype not in _ELEMENT_CODES:
            raise _Corrupt(f'unsupported tensor dtype {dtype!r}')
        return self.raw.view(np.dtype(self.order + _ELEMENT_CODES[dtype]))


def _tensor(storage, offset, size, stride, dtype):
    """Copy a strided view of a storage into a native-order array (bfloat16 -> float32)."""
    if not isinstance(storage, _Storage):
        raise _Corrupt('a tensor without a storage')
    if storage.raw is None:
        return None  # first pass over a legacy file: only the storages' dtypes are wanted
    elements = storage.elements(dtype)
    size, stride, offset = tuple(map(int, size)), tuple(map(int, stride)), int(offset)
    if len(size) != len(stride) or min(size + stride + (offset,)) < 0:
        raise _Corrupt(f'bad tensor layout size={size} stride={stride} offset={offset}')
    if 0 in size:
        view = np.zeros(size, elements.dtype)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= len(elements):
            raise _Corrupt(f'a tensor reaches element {last} of a {len(elements)}-element storage')
        strides = tuple(s * elements.itemsize for s in stride)
        view = np.lib.stride_tricks.as_strided(elements[offset:], size, strides, writeable=False)
    array = np.array(view, dtype=elements.dtype.newbyteorder('='))
    if dtype == 'bfloat16':
        array = array.astype(np.uint32)
        array <<= 16
        array = array.view(np.float32)
    return array


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None,
                       metadata=None):
    """torch._utils._rebuild_tensor_v2: a tensor whose dtype is its storage's."""
    return _tensor(storage, offset, size, stride, getattr(storage, 'dtype', None))


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
    """torch._utils._rebuild_tensor_v3: an untyped storage read as `dtype`."""
    return _tensor(storage, offset, size, stride, dtype)


def _rebuild_parameter(data, requires_grad, hooks, state=None):
    """torch._utils._rebuild_parameter(_with_state): a Parameter is just its data."""
    return data


def _load_from_bytes(blob):
    """torch.storage._load_from_bytes: a storage pickled as a nested legacy torch.save blob."""
    return _read_legacy(io.BytesIO(blob))


def _reconstruct_persistent_obj(meta):
    """torch_utils.persistence._reconstruct_persistent_obj, without executing module_src."""
    if not isinstance(meta, dict) or meta.get('type') != 'class':
        raise _Corrupt('unexpected NVlabs persistent-object metadata')
    return PersistentObject(str(meta.get('class_name')), str(meta.get('module_src') or ''),
                            meta.get('state') or {})


def _encode(text, encoding='utf-8'):
    """_codecs.encode as protocol-2 pickles use it to store bytes (latin-1 only)."""
    if encoding not in ('latin1', 'latin-1'):
        raise _Corrupt(f'unexpected codec {encoding!r}')
    return text.encode('latin-1')


def _device(kind, index=None):
    """torch.device('cuda', 0) -> 'cuda:0'."""
    return str(kind) if index is None else f'{kind}:{index}'


# Every global a StyleGAN checkpoint may name, mapped to what stands in for it. Protocol-2
# pickles (torch.save's default) spell builtins '__builtin__' and store bytes via _codecs.encode.
_ALLOWED = {
    **{(module, kind.__name__): kind for module in ('builtins', '__builtin__')
       for kind in (set, frozenset, slice, bytearray)},
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('_codecs', 'encode'): _encode,
    ('argparse', 'Namespace'): Namespace,
    ('dnnlib.util', 'EasyDict'): dict,
    ('torch_utils.persistence', '_reconstruct_persistent_obj'): _reconstruct_persistent_obj,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch._utils', '_rebuild_tensor_v3'): _rebuild_tensor_v3,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
    ('torch.storage', '_load_from_bytes'): _load_from_bytes,
    ('torch.storage', 'UntypedStorage'): 'uint8',
    ('torch', 'Size'): tuple, ('torch', 'device'): _device,
    **{('torch', name): dtype for name, dtype in _STORAGE_DTYPES.items()},
    **{('torch', dtype): dtype for dtype in _ELEMENT_CODES},
    ('numpy', 'dtype'): np.dtype, ('numpy', 'ndarray'): np.ndarray,
    **{(f'numpy.{core}.multiarray', name): getattr(_np_multiarray, name)
       for core in ('core', '_core') for name in ('scalar', '_reconstruct')},
    **{(f'numpy.{core}.numeric', '_frombuffer'): _np_numeric._frombuffer
       for core in ('core', '_core')},
}


class _Unpickler(pickle.Unpickler):
    """Resolves globals only through the allow-list; storages through `persistent_load`."""

    def __init__(self, file, persistent_load=None):
        super().__init__(file)
        self._load_storage = persistent_load

    def find_class(self, module, name):
        try:
            return _ALLOWED[module, name]
        except KeyError:
            raise _Refused(f'{module}.{name}') from None

    def persistent_load(self, pid):
        if self._load_storage is None:
            raise _Corrupt('a storage reference outside a torch.save file')
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == 'storage'):
            raise _Corrupt(f'unexpected persistent id {str(pid)[:60]}')
        return self._load_storage(*pid[1:])


def _read_exact(stream, n):
    """n bytes from the stream, checking the length before allocating."""
    here = stream.tell()
    if n < 0 or n > stream.seek(0, io.SEEK_END) - here:
        raise _Corrupt('storage data ends early')
    stream.seek(here)
    return stream.read(n)


def _read_legacy(stream):
    """A legacy torch.save blob. Its storage bytes follow the object pickle and their sizes
    depend on dtypes named inside it, so the object pickle is read twice."""
    if _Unpickler(stream).load() != _LEGACY_MAGIC:
        raise _Corrupt('bad legacy torch.save magic number')
    version = _Unpickler(stream).load()
    if version != _LEGACY_PROTOCOL:
        raise _Corrupt(f'legacy torch.save protocol {version!r}, expected {_LEGACY_PROTOCOL}')
    sys_info = _Unpickler(stream).load()
    little = not isinstance(sys_info, dict) or sys_info.get('little_endian', True)
    order = '<' if little else '>'
    storages = {}

    def load_storage(dtype, key, location, numel, view=None):
        root = storages.setdefault(key, _Storage(dtype, order, numel))
        if view is None or root.raw is None:
            return root
        _view_key, offset, view_numel = view
        return root.view(offset, view_numel)

    start = stream.tell()
    _Unpickler(stream, load_storage).load()
    for key in _Unpickler(stream).load():
        (count,) = struct.unpack(order + 'q', _read_exact(stream, 8))
        storages[key].fill(_read_exact(stream, count * storages[key].itemsize))
    stream.seek(start)
    return _Unpickler(stream, load_storage).load()


def _read_zip(file, name):
    """A zip torch.save archive: `<folder>/data.pkl` plus raw storages `<folder>/data/<key>`."""
    with zipfile.ZipFile(file) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.rsplit('/', 1)[-1] == 'data.pkl']
        if not pickles:
            raise CheckpointError(f'{name} is a zip archive without a data.pkl entry, so not a '
                                  'torch.save checkpoint; export it with torch.save')
        prefix = min(pickles, key=len)[:-len('data.pkl')]
        big = prefix + 'byteorder' in names and archive.read(prefix + 'byteorder').strip() == b'big'
        storages = {}

        def load_storage(dtype, key, location, numel):
            if key not in storages:
                raw = archive.read(f'{prefix}data/{key}')
                storages[key] = _Storage(dtype, '>' if big else '<', numel, raw)
            return storages[key]

        return _Unpickler(io.BytesIO(archive.read(prefix + 'data.pkl')), load_storage).load()


def _read_pickle(file):
    """A plain pickle (NVlabs network .pkl), or a legacy torch.save file if it starts with the
    legacy magic number."""
    first = _Unpickler(file).load()
    if type(first) is int and first == _LEGACY_MAGIC:
        file.seek(0)
        return _read_legacy(file)
    return first


_CORRUPT = (EOFError, pickle.UnpicklingError, zipfile.BadZipFile, struct.error, zlib.error,
            _Corrupt, ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError)


def load_torch_file(path) -> object:
    """Read a .pt/.pth/.pkl file. Returns the unpickled Python tree: dicts (OrderedDict ok),
    lists, tuples, numbers, strings, np.ndarray for every tensor, PersistentObject for NVlabs
    networks, Namespace for argparse.Namespace."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise CheckpointError(f'no such file: {name}')
    if os.path.isdir(name):
        raise CheckpointError(f'{name} is a directory, not a checkpoint file; '
                              'pass the .pt/.pkl file itself')
    try:
        file = open(name, 'rb')
    except OSError as error:
        raise CheckpointError(f'cannot read {name}: {error.strerror or error}') from None
    try:
        with file:
            head = file.read(4)
            if not head:
                raise CheckpointError(f'{name} is empty (0 bytes); re-download or re-export it')
            file.seek(0)
            if head == b'PK\x03\x04':
                return _read_zip(file, name)
            if head[0] == 0x80:
                return _read_pickle(file)
            raise CheckpointError(
                f'{name} is not a checkpoint this reader knows (starts with {head!r}): expected a '
                'zip torch.save archive, a legacy torch.save file or an NVlabs network pickle')
    except CheckpointError:
        raise
    except _Refused as refused:
        raise CheckpointError(
            f"refusing to load {name}: it references the Python global '{refused}', which is not "
            'part of a StyleGAN checkpoint (only tensors, dicts and NVlabs network objects are '
            'allowed)') from None
    except _CORRUPT as error:
        reason = ' '.join(str(error).split())[:200] or type(error).__name__
        raise CheckpointError(
            f'{name} is truncated or corrupt ({reason}); re-download or re-export it') from None
