"""load_torch_file reads files that real torch writes in each official format, and refuses
anything else with a one-line CheckpointError. torch is used here only to write the files."""
import argparse
import collections
import os
import pickle
import sys
import types
import zipfile

import numpy as np
import pytest
import torch

from stylekd_jax.convert.torch_files import (CheckpointError, Namespace, PersistentObject,
                                             load_torch_file)


def _expected(tensor):
    """What the reader should return for a torch tensor (bfloat16 widens to float32)."""
    tensor = tensor.detach()
    return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()


def _assert_same(array, tensor):
    expected = _expected(tensor)
    assert isinstance(array, np.ndarray)
    assert array.dtype == expected.dtype and array.shape == expected.shape
    np.testing.assert_array_equal(array, expected)


def _checkpoint():
    """A rosinality/StyleKD-like checkpoint with awkward tensors."""
    gen = torch.Generator().manual_seed(0)
    big = torch.arange(24, dtype=torch.float32)
    weights = collections.OrderedDict(
        f32=torch.randn(3, 4, generator=gen), f16=torch.randn(2, 3, generator=gen).half(),
        bf16=torch.randn(5, generator=gen).bfloat16(), f64=torch.randn(2, generator=gen).double(),
        i64=torch.arange(6).reshape(2, 3), i32=torch.arange(4, dtype=torch.int32),
        i16=torch.tensor([-3, 7], dtype=torch.int16), i8=torch.tensor([-1, 2], dtype=torch.int8),
        u8=torch.tensor([0, 255], dtype=torch.uint8), flag=torch.tensor([True, False]),
        u16=torch.tensor([1, 60000], dtype=torch.uint16))  # saved via _rebuild_tensor_v3
    return {
        'g_ema': weights,
        'transposed': torch.randn(3, 5, generator=gen).t(),
        'big': big,
        'window': big[5:17].view(3, 4)[:, 1:3],  # offset and strides into a shared storage
        'step': torch.tensor(7), 'loss': torch.tensor(0.25),
        'args': argparse.Namespace(size=256, lr=0.002, name='ffhq', channels=[1, 2]),
        'misc': [1, 2.5, 'a', (3, None)],
    }


def _check_checkpoint(loaded, original):
    assert list(loaded['g_ema']) == list(original['g_ema'])
    for name, tensor in original['g_ema'].items():
        _assert_same(loaded['g_ema'][name], tensor)
    for name in ('transposed', 'big', 'window', 'step', 'loss'):
        _assert_same(loaded[name], original[name])
    assert loaded['step'].shape == () and loaded['loss'].shape == ()
    assert loaded['g_ema']['bf16'].dtype == np.float32
    args = loaded['args']
    assert isinstance(args, Namespace) and vars(args) == vars(original['args'])
    assert loaded['misc'] == original['misc']


def test_zip_torch_save(tmp_path):
    original = _checkpoint()
    path = tmp_path / 'ckpt.pkl'  # the format is found from the content, not the name
    torch.save(original, path)
    _check_checkpoint(load_torch_file(path), original)


def test_zip_big_endian_byteorder(tmp_path):
    tensor = torch.randn(3, 2, generator=torch.Generator().manual_seed(1))
    torch.save(tensor, tmp_path / 'little.pt')
    with zipfile.ZipFile(tmp_path / 'little.pt') as src, \
            zipfile.ZipFile(tmp_path / 'big.pt', 'w') as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith('/byteorder'):
                data = b'big'
            elif name.endswith('/data/0'):
                data = np.frombuffer(data, '<f4').astype('>f4').tobytes()
            dst.writestr(name, data)
    loaded = load_torch_file(tmp_path / 'big.pt')
    assert loaded.dtype.isnative
    _assert_same(loaded, tensor)


def test_legacy_torch_save(tmp_path):
    original = _checkpoint()
    original.update(array=np.arange(6.0).reshape(2, 3), blob=b'\x00\xffxy',
                    tags={'a', 'b'}, device=torch.device('cuda', 0), size=torch.Size([2, 3]))
    path = tmp_path / 'legacy.pt'
    torch.save(original, path, _use_new_zipfile_serialization=False)
    loaded = load_torch_file(path)
    _check_checkpoint(loaded, original)
    np.testing.assert_array_equal(loaded['array'], original['array'])
    assert loaded['blob'] == b'\x00\xffxy' and loaded['tags'] == {'a', 'b'}
    assert loaded['device'] == 'cuda:0' and loaded['size'] == (2, 3)


# --- NVlabs network pickles ---------------------------------------------------------------

class _Layer(torch.nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(cout, cin))
        self.bias = torch.nn.Parameter(torch.zeros(cout))
        self.register_buffer('noise_const', torch.randn(2, 2))
        self.register_buffer('scratch', torch.zeros(1), persistent=False)
        self.conv_clamp = 256


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc0 = _Layer(3, 4)
        self.fc1 = _Layer(4, 2)
        self.register_buffer('w_avg', torch.randn(3).half())


@pytest.fixture
def nvlabs_modules(monkeypatch):
    """Fake `torch_utils.persistence` and `dnnlib.util` so pickle can name their globals."""
    def _reconstruct_persistent_obj(meta):
        raise AssertionError('only the reader unpickles these files')

    class EasyDict(dict):
        pass

    _reconstruct_persistent_obj.__module__ = 'torch_utils.persistence'
    _reconstruct_persistent_obj.__qualname__ = '_reconstruct_persistent_obj'
    EasyDict.__module__, EasyDict.__qualname__ = 'dnnlib.util', 'EasyDict'
    for name, attrs in {'torch_utils': {}, 'dnnlib': {},
                        'torch_utils.persistence': {'_reconstruct_persistent_obj':
                                                    _reconstruct_persistent_obj},
                        'dnnlib.util': {'EasyDict': EasyDict}}.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    return _reconstruct_persistent_obj, EasyDict


def _persistent(module, reconstruct, easydict, module_src):
    """Wrap a torch module the way NVlabs `persistence` pickles it."""
    class Persistent:
        def __reduce__(self):
            state = dict(module.__dict__)
            state['_modules'] = collections.OrderedDict(
                (name, _persistent(child, reconstruct, easydict, module_src))
                for name, child in module._modules.items())
            state['_init_kwargs'] = easydict(width=4, mapping_kwargs=easydict(num_layers=2))
            state['gain'] = np.float64(0.5)
            meta = dict(type='class', version=6, module_src=module_src,
                        class_name=type(module).__name__, state=state)
            return reconstruct, (meta,)
    return Persistent()


def test_nvlabs_network_pickle(tmp_path, nvlabs_modules):
    reconstruct, easydict = nvlabs_modules
    torch.manual_seed(0)
    net = _Net()
    marker = tmp_path / 'module_src_ran'
    module_src = f'import os\nos.system("touch {marker}")\n'
    path = tmp_path / 'network-snapshot.pkl'
    with open(path, 'wb') as f:
        pickle.dump(dict(G=_persistent(net, reconstruct, easydict, module_src), D=None,
                         training_set_kwargs=easydict(resolution=16)), f)

    loaded = load_torch_file(path)
    G = loaded['G']
    assert isinstance(G, PersistentObject) and G.class_name == '_Net'
    assert G.module_src == module_src and not marker.exists()
    assert G.init_kwargs == {'width': 4, 'mapping_kwargs': {'num_layers': 2}}
    assert type(G.init_kwargs['mapping_kwargs']) is dict
    assert type(G.attr('gain')) is np.float64 and G.attr('gain') == 0.5
    assert G.attr('missing', 'x') == 'x'
    assert list(G.modules) == ['fc0', 'fc1'] and G.modules['fc0'].attr('conv_clamp') == 256
    expected = net.state_dict()
    state = G.state_dict()
    assert list(state) == list(expected)  # 'scratch' is non-persistent and left out
    for name, tensor in expected.items():
        _assert_same(state[name], tensor)
    assert loaded['D'] is None and loaded['training_set_kwargs'] == {'resolution': 16}


# --- errors -------------------------------------------------------------------------------

def _error(path):
    with pytest.raises(CheckpointError) as info:
        load_torch_file(path)
    message = str(info.value)
    assert str(path) in message and '\n' not in message
    return message


def test_missing_directory_and_empty(tmp_path):
    assert 'no such file' in _error(tmp_path / 'nope.pt')
    assert 'directory' in _error(tmp_path)
    (tmp_path / 'empty.pt').write_bytes(b'')
    assert 'empty' in _error(tmp_path / 'empty.pt')


def test_unknown_format(tmp_path):
    path = tmp_path / 'noise.bin'
    path.write_bytes(b'\x13' + np.random.default_rng(0).bytes(999))
    assert 'expected a zip torch.save archive' in _error(path)


@pytest.mark.parametrize('kind', ['zip', 'legacy', 'pickle'])
def test_truncated(tmp_path, kind):
    path = tmp_path / 'whole'
    if kind == 'pickle':
        with open(path, 'wb') as f:
            pickle.dump({'w': torch.randn(64, 64), 'b': torch.randn(64)}, f)
    else:
        torch.save({'w': torch.randn(64, 64)}, path,
                   _use_new_zipfile_serialization=kind == 'zip')
    data = path.read_bytes()
    cut = tmp_path / f'{kind}.pt'
    for size in (len(data) // 2, len(data) - 5):
        cut.write_bytes(data[:size])
        assert 'truncated or corrupt' in _error(cut)


def test_refuses_foreign_globals(tmp_path):
    marker = tmp_path / 'pwned'

    class Exploit:
        def __reduce__(self):
            return os.system, (f'touch {marker}',)

    path = tmp_path / 'model.pkl'
    path.write_bytes(pickle.dumps({'G': Exploit()}))
    message = _error(path)
    assert f"'{os.system.__module__}.system'" in message and 'refusing' in message
    assert not marker.exists()
