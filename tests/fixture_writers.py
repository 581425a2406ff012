"""Write real checkpoint files in the official container formats from the reference modules (test-only).

Why: the converter must read genuine NVlabs network pickles and rosinality / StyleKD / CAGAN `.pt`
training checkpoints, and tests cannot download any.  This module writes such files from the
`torch_reference` networks, mirroring the official containers (checked offline against pickles
made by the official stylegan2-ada-pytorch and stylegan3 training code and against StyleKD's
`model.py` state dicts):

* NVlabs pickle: `pickle.dump(dict(training_set_kwargs, G, D, G_ema, augment_pipe))` (a training
  snapshot; a TF-converted file from legacy.py is `dict(G, D, G_ema, training_set_kwargs=None,
  augment_pipe=None)` with every constructor kwarg spelled out), where every
  network and submodule is a persistent object, i.e. it unpickles through
  `torch_utils.persistence._reconstruct_persistent_obj(meta)` with
  `meta = dict(type='class', version=6, module_src, class_name, state)`, `state` being the module
  `__dict__` the real class would have (torch bookkeeping dicts, `_modules` with the real
  submodule order and class names, the plain attributes, `_init_args`, `_init_kwargs`).  As in the
  official snapshot code, all modules are in eval mode with `requires_grad=False`.  Tensors are
  pickled by torch itself (`_rebuild_tensor_v2` / `_rebuild_parameter` / `storage._load_from_bytes`).
  While pickling, fake `torch_utils.persistence` and `dnnlib.util` modules are put in
  `sys.modules` (and removed again), so no NVlabs code is needed.  `module_src` is a short
  placeholder string: nothing may ever execute it.
* stylegan3-repo StyleGAN3 pickle (`write_stylegan3_pickle`): the same container, classes of
  `training/networks_stylegan3.py` (Generator, MappingNetwork, SynthesisNetwork, SynthesisInput,
  SynthesisLayer, FullyConnectedLayer) written from `sg3_reference` modules, snapshot key order
  of the stylegan3 training loop `dict(G, D, G_ema, augment_pipe, training_set_kwargs)`.
* rosinality `.pt`: `torch.save({'g', 'd', 'g_ema', ['g_optim', 'd_optim', 'args', 'ada_aug_p'],
  ['latent_avg']})` with rosinality state-dict names (as `rosinality_generator_to_nvlabs` renames them).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import pickle
import re
import sys
import types
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

__all__ = [
    "write_nvlabs_pickle", "write_rosinality_pt", "write_stylegan3_pickle", "make_stylegan3_reference",
    "rename_nvlabs_to_rosinality_generator", "rename_nvlabs_to_rosinality_discriminator",
    "rename_rosinality_to_nvlabs_generator", "rename_rosinality_to_nvlabs_discriminator",
    "EasyDict",
]

PERSISTENCE_VERSION = 6
_FILTER_TAPS = [1, 3, 3, 1]

# Placeholder sources (the real files embed the full module source; readers must never run it).
ADA_MODULE_SRC = ("# training/networks.py of NVlabs/stylegan2-ada-pytorch -- placeholder written by "
                  "tests/fixture_writers.py; the real source text is omitted.\n")
SG3_SG2_MODULE_SRC = ('"""Network architectures from the paper\n"Analyzing and Improving the Image Quality of '
                      'StyleGAN".\n(training/networks_stylegan2.py of NVlabs/stylegan3 -- placeholder written by '
                      'tests/fixture_writers.py; the real source text is omitted.)"""\n')
SG3_MODULE_SRC = ('"""Generator architecture from the paper\n"Alias-Free Generative Adversarial Networks".\n'
                  '(training/networks_stylegan3.py of NVlabs/stylegan3 -- placeholder written by '
                  'tests/fixture_writers.py; the real source text is omitted.)"""\n')


# ----------------------------------------------------------------------------------------------
# Stand-ins for the NVlabs globals referenced by a network pickle


def _torch_reference():
    """Import the sibling torch_reference module whether or not tests/ is a package."""
    try:
        from . import torch_reference as tr
    except ImportError:
        import torch_reference as tr
    return tr


def _reconstruct_persistent_obj(meta):
    """Stand-in for torch_utils.persistence._reconstruct_persistent_obj (only its name is pickled)."""
    return meta


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict: a dict with attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        del self[name]


EasyDict.__module__ = "dnnlib.util"


class _Persistent:
    """Pickles exactly like an instance of an NVlabs @persistent_class."""

    __slots__ = ("meta",)

    def __init__(self, class_name, state, module_src):
        self.meta = dict(type="class", version=PERSISTENCE_VERSION, module_src=module_src,
                         class_name=class_name, state=state)

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,))


@contextlib.contextmanager
def _fake_nvlabs_modules():
    """Temporarily register fake `torch_utils(.persistence)` and `dnnlib(.util)` in sys.modules."""
    names = ["torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"]
    saved = {n: sys.modules.get(n) for n in names}
    tu, tp = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")
    dn, du = types.ModuleType("dnnlib"), types.ModuleType("dnnlib.util")
    tp._reconstruct_persistent_obj = _reconstruct_persistent_obj
    tu.persistence = tp
    du.EasyDict = EasyDict
    dn.util, dn.EasyDict = du, EasyDict
    sys.modules.update({"torch_utils": tu, "torch_utils.persistence": tp, "dnnlib": dn, "dnnlib.util": du})
    try:
        yield
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def _state(module, attrs, init_args, init_kwargs, children=None, parameters=None, buffers=None):
    """The `__dict__` an NVlabs module would pickle: torch bookkeeping, then plain attributes."""
    state = dict(nn.Module().__dict__)       # training, _parameters, ..., hook dicts, _modules
    state["training"] = False
    if parameters is None:
        parameters = {k: v for k, v in module._parameters.items() if v is not None}
    if buffers is None:
        buffers = {k: v for k, v in module._buffers.items() if v is not None}
    state["_parameters"] = {k: (None if v is None else nn.Parameter(v.detach().clone(), requires_grad=False))
                            for k, v in parameters.items()}
    state["_buffers"] = {k: (None if v is None else v.detach().clone()) for k, v in buffers.items()}
    state["_modules"] = dict(children or {})
    state.update(attrs)
    state["_init_args"] = tuple(init_args)
    state["_init_kwargs"] = init_kwargs
    return state


# ----------------------------------------------------------------------------------------------
# NVlabs network pickles (stylegan2-ada-pytorch `training/networks.py`, stylegan3
# `training/networks_stylegan2.py`)


def _infer_channel_base(channels_by_res):
    """(channel_base, channel_max) reproducing {res: C} via C = min(base // res, max)."""
    cmax = max(channels_by_res.values())
    below = sorted((r, c) for r, c in channels_by_res.items() if c < cmax)
    base = below[0][0] * below[0][1] if below else cmax * max(channels_by_res)
    if any(min(base // r, cmax) != c for r, c in channels_by_res.items()):
        raise ValueError(f"channels {channels_by_res} are not of the NVlabs form min(base // res, max); "
                         "write pruned networks as rosinality .pt files instead")
    return base, cmax


class _NVWriter:
    """Turns reference modules into persistent stand-ins.

    flavor: 'ada' (stylegan2-ada-pytorch training/networks.py) or 'sg3' (stylegan3 repo's
    training/networks_stylegan2.py).  style: 'trained' = constructor kwargs as the official
    train.py builds them; 'converted' = as legacy.py builds them when converting a TF pickle
    (ada only: every synthesis / mapping / epilogue kwarg spelled out, conv_clamp None).
    """

    def __init__(self, flavor, style="trained"):
        if flavor not in ("ada", "sg3"):
            raise ValueError(f"flavor must be 'ada' or 'sg3', got {flavor!r}")
        if style not in ("trained", "converted") or (style == "converted" and flavor != "ada"):
            raise ValueError(f"unsupported style {style!r} for flavor {flavor!r}")
        self.flavor, self.style = flavor, style
        self.sg3 = flavor == "sg3"
        self.converted = style == "converted"
        self.src = SG3_SG2_MODULE_SRC if self.sg3 else ADA_MODULE_SRC

    def obj(self, class_name, state):
        return _Persistent(class_name, state, self.src)

    # -- layers ---------------------------------------------------------------------------------
    def fc(self, m, init_kwargs):
        attrs = dict(in_features=m.in_features, out_features=m.out_features) if self.sg3 else {}
        attrs.update(activation=m.activation, weight_gain=m.lr_multiplier / np.sqrt(m.in_features),
                     bias_gain=m.lr_multiplier)
        return self.obj("FullyConnectedLayer", _state(m, attrs, (m.in_features, m.out_features), init_kwargs))

    def conv2d(self, m, init_kwargs):
        attrs = dict(in_channels=m.in_channels, out_channels=m.out_channels) if self.sg3 else {}
        attrs.update(activation=m.activation, up=1, down=m.down, conv_clamp=m.conv_clamp, padding=m.padding,
                     weight_gain=1 / np.sqrt(m.in_channels * m.kernel_size ** 2),
                     act_gain=np.sqrt(2) if m.activation == "lrelu" else 1)
        if m.bias is None:
            attrs["bias"] = None
        return self.obj("Conv2dLayer", _state(m, attrs, (m.in_channels, m.out_channels), init_kwargs))

    def synthesis_layer(self, m, layer_kwargs):
        attrs = dict(in_channels=m.in_channels, out_channels=m.out_channels, w_dim=m.w_dim) if self.sg3 else {}
        attrs.update(resolution=m.resolution, up=m.up, use_noise=True, activation="lrelu", conv_clamp=m.conv_clamp,
                     padding=m.padding, act_gain=np.sqrt(2))
        kw = dict(w_dim=m.w_dim, resolution=m.resolution)
        if m.up != 1:
            kw.update(up=m.up, resample_filter=list(_FILTER_TAPS))
        kw.update(conv_clamp=m.conv_clamp, channels_last=False, **layer_kwargs)
        affine = self.fc(m.affine, dict(bias_init=1))
        return self.obj("SynthesisLayer", _state(m, attrs, (m.in_channels, m.out_channels), kw, {"affine": affine}))

    def torgb(self, m):
        attrs = dict(in_channels=m.in_channels, out_channels=m.out_channels, w_dim=m.w_dim) if self.sg3 else {}
        attrs.update(conv_clamp=m.conv_clamp, weight_gain=1 / np.sqrt(m.in_channels * 1))
        kw = dict(w_dim=m.w_dim, conv_clamp=m.conv_clamp, channels_last=False)
        affine = self.fc(m.affine, dict(bias_init=1))
        return self.obj("ToRGBLayer", _state(m, attrs, (m.in_channels, m.out_channels), kw, {"affine": affine}))

    # -- generator --------------------------------------------------------------------------------
    def generator(self, G, num_fp16_res):
        syn, mp = G.synthesis_net, G.mapping_net
        res = G.resolution
        per_res = {4: G.channels[0]}
        per_res.update({r: G.channels[2 * k + 2] for k, r in enumerate(syn.block_resolutions[1:])})
        base, cmax = _infer_channel_base(per_res)
        from_base = [min(base // 2 ** i, cmax) for i in range(2, int(math.log2(res)) + 1) for _ in (0, 1)]
        if list(G.channels) != from_base or G.kernel_size != 3:
            raise ValueError("NVlabs pickles cannot express pruned or kernel-1 generators; use write_rosinality_pt")
        clamp = G.conv_clamp
        fp16_resolution = max(2 ** (int(math.log2(res)) + 1 - num_fp16_res), 8)

        if self.converted:          # legacy.convert_tf_generator
            mapping_kwargs = EasyDict(num_layers=mp.num_layers, embed_features=None, layer_features=None,
                                      activation="lrelu", lr_multiplier=mp.lr_multiplier, w_avg_beta=0.995)
            syn_kw = dict(channel_base=base, channel_max=cmax, num_fp16_res=num_fp16_res, conv_clamp=clamp,
                          architecture="skip", resample_filter=list(_FILTER_TAPS), use_noise=True, activation="lrelu")
            g_kwargs = dict(z_dim=G.z_dim, c_dim=G.c_dim, w_dim=G.w_dim, img_resolution=res,
                            img_channels=G.img_channels, mapping_kwargs=mapping_kwargs,
                            synthesis_kwargs=EasyDict(syn_kw))
        else:                       # train.py
            mapping_kwargs = EasyDict(num_layers=mp.num_layers)
            if mp.lr_multiplier != 0.01:
                mapping_kwargs.lr_multiplier = mp.lr_multiplier
            if self.sg3:
                syn_kw = dict(channel_base=base, channel_max=cmax, fused_modconv_default="inference_only")
                if num_fp16_res != 4:
                    syn_kw["num_fp16_res"] = num_fp16_res
                if clamp != 256:
                    syn_kw["conv_clamp"] = clamp
                g_kwargs = dict(z_dim=G.z_dim, w_dim=G.w_dim, mapping_kwargs=mapping_kwargs, **syn_kw)
            else:
                syn_kw = dict(channel_base=base, channel_max=cmax, num_fp16_res=num_fp16_res, conv_clamp=clamp)
                g_kwargs = dict(z_dim=G.z_dim, w_dim=G.w_dim, mapping_kwargs=mapping_kwargs,
                                synthesis_kwargs=EasyDict(syn_kw))
            g_kwargs.update(c_dim=G.c_dim, img_resolution=res, img_channels=G.img_channels)
        block_kwargs = {k: v for k, v in syn_kw.items() if k not in ("channel_base", "channel_max", "num_fp16_res")}
        layer_kwargs = {k: v for k, v in block_kwargs.items() if k in ("use_noise", "activation")}

        blocks = {}
        for r in syn.block_resolutions:
            b = getattr(syn, f"b{r}")
            use_fp16 = r >= fp16_resolution
            kids = {}
            if b.in_channels != 0:
                kids["conv0"] = self.synthesis_layer(b.conv0, layer_kwargs)
            kids["conv1"] = self.synthesis_layer(b.conv1, layer_kwargs)
            kids["torgb"] = self.torgb(b.torgb)
            attrs = dict(in_channels=b.in_channels, w_dim=b.w_dim, resolution=r, img_channels=b.img_channels,
                         is_last=b.is_last, architecture="skip", use_fp16=use_fp16, channels_last=False)
            if self.sg3:
                attrs["fused_modconv_default"] = syn_kw["fused_modconv_default"]
            attrs.update(num_conv=b.num_conv, num_torgb=b.num_torgb)
            kw = dict(w_dim=b.w_dim, resolution=r, img_channels=b.img_channels, is_last=b.is_last,
                      use_fp16=use_fp16, **block_kwargs)
            blocks[f"b{r}"] = self.obj("SynthesisBlock", _state(b, attrs, (b.in_channels, b.out_channels), kw, kids))

        attrs = dict(w_dim=syn.w_dim, img_resolution=res, img_resolution_log2=int(math.log2(res)),
                     img_channels=syn.img_channels)
        if self.sg3:
            attrs["num_fp16_res"] = num_fp16_res
        attrs.update(block_resolutions=list(syn.block_resolutions), num_ws=syn.num_ws)
        kw = dict(w_dim=syn.w_dim, img_resolution=res, img_channels=syn.img_channels, **syn_kw)
        synthesis = self.obj("SynthesisNetwork", _state(syn, attrs, (), kw, blocks))

        kids = {}
        if mp.c_dim > 0:
            kids["embed"] = self.fc(mp.embed, {})
        fc_kwargs = dict(activation="lrelu", lr_multiplier=mp.lr_multiplier)
        for i in range(mp.num_layers):
            kids[f"fc{i}"] = self.fc(getattr(mp, f"fc{i}"), dict(fc_kwargs))
        attrs = dict(z_dim=mp.z_dim, c_dim=mp.c_dim, w_dim=mp.w_dim, num_ws=mp.num_ws, num_layers=mp.num_layers,
                     w_avg_beta=0.998 if self.sg3 else 0.995)
        kw = dict(z_dim=mp.z_dim, c_dim=mp.c_dim, w_dim=mp.w_dim, num_ws=mp.num_ws, **mapping_kwargs)
        mapping = self.obj("MappingNetwork", _state(mp, attrs, (), kw, kids))

        attrs = dict(z_dim=G.z_dim, c_dim=G.c_dim, w_dim=G.w_dim, img_resolution=res, img_channels=G.img_channels,
                     num_ws=G.num_ws)
        return self.obj("Generator", _state(G, attrs, (), g_kwargs, {"synthesis": synthesis, "mapping": mapping}))

    # -- discriminator ------------------------------------------------------------------------------
    def discriminator(self, D, num_fp16_res):
        res = D.resolution
        base, cmax = D.channel_base, D.channel_max
        if any(min(base // r, cmax) != c for r, c in D.channels.items()):
            base, cmax = _infer_channel_base(D.channels)
        clamp = D.conv_clamp
        fp16_resolution = max(2 ** (int(math.log2(res)) + 1 - num_fp16_res), 8)
        if self.converted:          # legacy.convert_tf_discriminator
            block_kwargs = EasyDict(activation="lrelu", resample_filter=list(_FILTER_TAPS), freeze_layers=0)
            epilogue_kwargs = EasyDict(mbstd_group_size=D.mbstd_group_size, mbstd_num_channels=D.mbstd_num_channels,
                                       activation="lrelu")
            d_kwargs = dict(c_dim=0, img_resolution=res, img_channels=D.img_channels, architecture="resnet",
                            channel_base=base, channel_max=cmax, num_fp16_res=num_fp16_res, conv_clamp=clamp,
                            cmap_dim=None, block_kwargs=block_kwargs,
                            mapping_kwargs=EasyDict(num_layers=0, embed_features=None, layer_features=None,
                                                    activation="lrelu", lr_multiplier=0.1),
                            epilogue_kwargs=epilogue_kwargs)
        else:                       # train.py
            epilogue_kwargs = EasyDict(mbstd_group_size=D.mbstd_group_size)
            if D.mbstd_num_channels != 1:
                epilogue_kwargs.mbstd_num_channels = D.mbstd_num_channels
            block_kwargs = EasyDict(freeze_layers=0) if self.sg3 else EasyDict()
            d_kwargs = dict(block_kwargs=block_kwargs, mapping_kwargs=EasyDict(), epilogue_kwargs=epilogue_kwargs,
                            channel_base=base, channel_max=cmax)
            if not self.sg3 or num_fp16_res != 4:
                d_kwargs["num_fp16_res"] = num_fp16_res
            if not self.sg3 or clamp != 256:
                d_kwargs["conv_clamp"] = clamp
            d_kwargs.update(c_dim=0, img_resolution=res, img_channels=D.img_channels)
        common = dict(img_channels=D.img_channels, architecture="resnet", conv_clamp=clamp)

        kids = {}
        layer_idx = 0
        for r in D.block_resolutions:
            b = getattr(D, f"b{r}")
            use_fp16 = r >= fp16_resolution
            sub = {}
            if b.in_channels == 0:
                sub["fromrgb"] = self.conv2d(b.fromrgb, dict(kernel_size=1, activation="lrelu", trainable=True,
                                                             conv_clamp=clamp, channels_last=False))
            sub["conv0"] = self.conv2d(b.conv0, dict(kernel_size=3, activation="lrelu", trainable=True,
                                                     conv_clamp=clamp, channels_last=False))
            sub["conv1"] = self.conv2d(b.conv1, dict(kernel_size=3, activation="lrelu", down=2, trainable=True,
                                                     resample_filter=list(_FILTER_TAPS), conv_clamp=clamp,
                                                     channels_last=False))
            sub["skip"] = self.conv2d(b.skip, dict(kernel_size=1, bias=False, down=2, trainable=True,
                                                   resample_filter=list(_FILTER_TAPS), channels_last=False))
            attrs = dict(in_channels=b.in_channels, resolution=r, img_channels=b.img_channels,
                         first_layer_idx=layer_idx, architecture="resnet", use_fp16=use_fp16, channels_last=False,
                         num_layers=b.num_layers)
            kw = dict(resolution=r, first_layer_idx=layer_idx, use_fp16=use_fp16, **block_kwargs, **common)
            kids[f"b{r}"] = self.obj("DiscriminatorBlock", _state(
                b, attrs, (b.in_channels, b.tmp_channels, b.out_channels), kw, sub))
            layer_idx += b.num_layers

        e = D.b4
        sub = {}
        attrs = dict(in_channels=e.in_channels, cmap_dim=0, resolution=4, img_channels=e.img_channels,
                     architecture="resnet")
        if e.mbstd is not None:
            sub["mbstd"] = self.obj("MinibatchStdLayer", _state(
                e.mbstd, dict(group_size=e.mbstd.group_size, num_channels=e.mbstd.num_channels), (),
                dict(group_size=e.mbstd.group_size, num_channels=e.mbstd.num_channels)))
        else:
            attrs["mbstd"] = None       # NVlabs assigns None: a plain attribute, not a submodule
        sub["conv"] = self.conv2d(e.conv, dict(kernel_size=3, activation="lrelu", conv_clamp=clamp))
        sub["fc"] = self.fc(e.fc, dict(activation="lrelu"))
        sub["out"] = self.fc(e.out, {})
        kw = dict(cmap_dim=0, resolution=4, **epilogue_kwargs, **common)
        kids["b4"] = self.obj("DiscriminatorEpilogue", _state(e, attrs, (e.in_channels,), kw, sub))

        attrs = dict(c_dim=0, img_resolution=res, img_resolution_log2=int(math.log2(res)),
                     img_channels=D.img_channels, block_resolutions=list(D.block_resolutions))
        return self.obj("Discriminator", _state(D, attrs, (), d_kwargs, kids))


def _default_training_set_kwargs(resolution):
    return dict(class_name="training.dataset.ImageFolderDataset", path="/data/ffhq.zip", use_labels=False,
                max_size=70000, xflip=False, resolution=resolution)


def write_nvlabs_pickle(path, G, D, G_ema=None, flavor="ada", *, style=None, num_fp16_res=None):
    """Write an NVlabs network pickle from RefGenerator / RefDiscriminator modules.

    flavor: 'ada' = stylegan2-ada-pytorch (nested mapping_kwargs / synthesis_kwargs), 'sg3' = the
    stylegan3 repo's networks_stylegan2 (synthesis kwargs flat on the Generator).
    style: 'trained' (a training snapshot: dict(training_set_kwargs, G, D, G_ema, augment_pipe),
    kwargs as train.py passes them) or 'converted' (ada only: what legacy.py writes for a converted
    TF pickle: dict(G, D, G_ema, training_set_kwargs=None, augment_pipe=None), every kwarg spelled
    out incl. synthesis_kwargs.architecture).  Default: 'converted' for an ada generator without
    conv_clamp (as all TF-converted pickles are), else 'trained'.
    num_fp16_res (recorded only; weights stay fp32): default 4 with conv_clamp, 0 without.
    """
    G_ema = G if G_ema is None else G_ema
    if style is None:
        style = "converted" if flavor == "ada" and G_ema.conv_clamp is None else "trained"
    if num_fp16_res is None:
        num_fp16_res = 4 if G_ema.conv_clamp is not None else 0
    w = _NVWriter(flavor, style)
    nets = dict(G=w.generator(G, num_fp16_res), D=w.discriminator(D, num_fp16_res),
                G_ema=w.generator(G_ema, num_fp16_res))
    if style == "converted":
        snapshot = dict(nets, training_set_kwargs=None, augment_pipe=None)
    else:
        snapshot = dict(training_set_kwargs=_default_training_set_kwargs(G.resolution), **nets, augment_pipe=None)
    with _fake_nvlabs_modules(), open(path, "wb") as f:
        pickle.dump(snapshot, f, protocol=4)
    return path


# ----------------------------------------------------------------------------------------------
# StyleGAN3 (alias-free) network pickles (stylegan3 repo, `training/networks_stylegan3.py`)


def _sg3_reference():
    """Import the sibling sg3_reference module whether or not tests/ is a package."""
    try:
        from . import sg3_reference as sr
    except ImportError:
        import sg3_reference as sr
    return sr


_SG3_NET_KEYS = ("channel_base", "channel_max", "num_layers", "num_critical", "first_cutoff", "first_stopband",
                 "last_stopband_rel", "margin_size", "output_scale", "num_fp16_res")
_SG3_LAYER_KEYS = ("conv_kernel", "filter_size", "lrelu_upsampling", "use_radial_filters", "conv_clamp",
                   "magnitude_ema_beta")


def _sg3_generator_kwargs(cfg):
    """(Generator kwargs, mapping_kwargs) in the order train.py produces them.

    train.py builds G_kwargs = (class_name,) z_dim, w_dim, mapping_kwargs, channel_base, channel_max,
    magnitude_ema_beta, [R: conv_kernel=1, use_radial_filters=True], and the training loop adds
    c_dim, img_resolution, img_channels.  Any other hyperparameter that differs from the NVlabs
    class default (e.g. num_layers of a tiny test network, or --fp32's num_fp16_res / conv_clamp)
    is appended after the train.py ones, as a custom G_kwargs entry would be.
    """
    default = type(cfg)(img_resolution=cfg.img_resolution)      # the NVlabs class defaults
    mapping_kwargs = EasyDict(num_layers=cfg.mapping_layers)
    if cfg.mapping_lr != default.mapping_lr:
        mapping_kwargs.lr_multiplier = cfg.mapping_lr
    if cfg.w_avg_beta != default.w_avg_beta:
        mapping_kwargs.w_avg_beta = cfg.w_avg_beta
    kw = dict(z_dim=cfg.z_dim, w_dim=cfg.w_dim, mapping_kwargs=mapping_kwargs, channel_base=cfg.channel_base,
              channel_max=cfg.channel_max, magnitude_ema_beta=cfg.magnitude_ema_beta)
    if cfg.conv_kernel != default.conv_kernel:
        kw["conv_kernel"] = cfg.conv_kernel
    if cfg.use_radial_filters:
        kw["use_radial_filters"] = True
    for key in _SG3_NET_KEYS + _SG3_LAYER_KEYS:
        if key not in kw and getattr(cfg, key) != getattr(default, key):
            kw[key] = getattr(cfg, key)
    kw.update(c_dim=cfg.c_dim, img_resolution=cfg.img_resolution, img_channels=cfg.img_channels)
    return kw


class _SG3Writer:
    """Turns an sg3_reference.Generator into the persistent objects of networks_stylegan3, with
    the `__dict__` each NVlabs class builds in its __init__ (attribute order and Python / numpy
    types as there: sizes are numpy int arrays of shape [2], cutoffs numpy float64, use_fp16 a
    numpy bool, sampling rates and paddings Python ints; single-tap filters None buffers)."""

    def obj(self, class_name, state):
        return _Persistent(class_name, state, SG3_MODULE_SRC)

    def fc(self, m, init_args, init_kwargs):
        lr = m.lr_multiplier
        attrs = dict(in_features=m.in_features, out_features=m.out_features, activation=m.activation,
                     weight_gain=lr / np.sqrt(m.in_features), bias_gain=lr)
        return self.obj("FullyConnectedLayer", _state(m, attrs, init_args, init_kwargs))

    def synthesis_input(self, m):
        s = m.spec
        attrs = dict(w_dim=m.w_dim, channels=s.channels, size=np.broadcast_to(np.asarray(s.size), [2]),
                     sampling_rate=s.sampling_rate, bandwidth=s.bandwidth)
        kw = dict(w_dim=m.w_dim, channels=s.channels, size=s.size, sampling_rate=s.sampling_rate,
                  bandwidth=s.bandwidth)
        affine = self.fc(m.affine, (m.w_dim, 4), dict(weight_init=0, bias_init=[1, 0, 0, 0]))
        return self.obj("SynthesisInput", _state(m, attrs, (), kw, {"affine": affine}))

    def synthesis_layer(self, m, layer_kwargs):
        s = m.spec
        size2 = lambda v: np.broadcast_to(np.asarray(v), [2])  # noqa: E731
        ctor = dict(w_dim=m.w_dim, is_torgb=s.is_torgb, is_critically_sampled=s.is_critically_sampled,
                    use_fp16=s.use_fp16, in_channels=s.in_channels, out_channels=s.out_channels,
                    in_size=s.in_size, out_size=s.out_size, in_sampling_rate=s.in_sampling_rate,
                    out_sampling_rate=s.out_sampling_rate, in_cutoff=s.in_cutoff, out_cutoff=s.out_cutoff,
                    in_half_width=s.in_half_width, out_half_width=s.out_half_width)
        attrs = dict(w_dim=m.w_dim, is_torgb=s.is_torgb, is_critically_sampled=s.is_critically_sampled,
                     use_fp16=s.use_fp16, in_channels=s.in_channels, out_channels=s.out_channels,
                     in_size=size2(s.in_size), out_size=size2(s.out_size), in_sampling_rate=s.in_sampling_rate,
                     out_sampling_rate=s.out_sampling_rate, tmp_sampling_rate=s.tmp_sampling_rate,
                     in_cutoff=s.in_cutoff, out_cutoff=s.out_cutoff, in_half_width=s.in_half_width,
                     out_half_width=s.out_half_width, conv_kernel=s.conv_kernel, conv_clamp=m.conv_clamp,
                     magnitude_ema_beta=m.magnitude_ema_beta,
                     up_factor=s.up_factor, up_taps=s.up_taps, down_factor=s.down_factor, down_taps=s.down_taps,
                     down_radial=s.down_radial, padding=[int(p) for p in s.padding])
        affine = self.fc(m.affine, (m.w_dim, s.in_channels), dict(bias_init=1))
        return self.obj("SynthesisLayer", _state(m, attrs, (), dict(ctor, **layer_kwargs), {"affine": affine},
                                                 buffers=dict(m._buffers)))   # keeps the None filters

    def generator(self, G):
        cfg = G.cfg
        g_kwargs = _sg3_generator_kwargs(cfg)
        syn_kwargs = {k: v for k, v in g_kwargs.items() if k in _SG3_NET_KEYS + _SG3_LAYER_KEYS}
        layer_kwargs = {k: v for k, v in syn_kwargs.items() if k in _SG3_LAYER_KEYS}

        syn = G.synthesis
        kids = {"input": self.synthesis_input(syn.input)}
        for name in syn.layer_names:
            kids[name] = self.synthesis_layer(getattr(syn, name), layer_kwargs)
        attrs = dict(w_dim=cfg.w_dim, num_ws=cfg.num_ws, img_resolution=cfg.img_resolution,
                     img_channels=cfg.img_channels, num_layers=cfg.num_layers, num_critical=cfg.num_critical,
                     margin_size=cfg.margin_size, output_scale=cfg.output_scale, num_fp16_res=cfg.num_fp16_res,
                     layer_names=list(syn.layer_names))
        kw = dict(w_dim=cfg.w_dim, img_resolution=cfg.img_resolution, img_channels=cfg.img_channels, **syn_kwargs)
        synthesis = self.obj("SynthesisNetwork", _state(syn, attrs, (), kw, kids))

        mp = G.mapping
        kids = {}
        attrs = dict(z_dim=mp.z_dim, c_dim=mp.c_dim, w_dim=mp.w_dim, num_ws=mp.num_ws, num_layers=mp.num_layers,
                     w_avg_beta=mp.w_avg_beta)
        if mp.c_dim > 0:
            kids["embed"] = self.fc(mp.embed, (mp.c_dim, mp.w_dim), {})
        else:
            attrs["embed"] = None       # NVlabs assigns None: a plain attribute, not a submodule
        for i in range(mp.num_layers):
            fc = getattr(mp, f"fc{i}")
            kids[f"fc{i}"] = self.fc(fc, (fc.in_features, fc.out_features),
                                     dict(activation="lrelu", lr_multiplier=mp.lr_multiplier))
        kw = dict(z_dim=mp.z_dim, c_dim=mp.c_dim, w_dim=mp.w_dim, num_ws=mp.num_ws, **g_kwargs["mapping_kwargs"])
        mapping = self.obj("MappingNetwork", _state(mp, attrs, (), kw, kids))

        attrs = dict(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution,
                     img_channels=cfg.img_channels, num_ws=cfg.num_ws)
        return self.obj("Generator", _state(G, attrs, (), g_kwargs, {"synthesis": synthesis, "mapping": mapping}))


def make_stylegan3_reference(cfg="t", resolution=16, *, channel_base=None, channel_max=None, num_layers=6,
                             z_dim=32, w_dim=32, c_dim=0, seed=0, **overrides):
    """The randomized sg3_reference.Generator that write_stylegan3_pickle writes by default.

    Defaults give a tiny network: T: channel_base 1024, channel_max 32; R: 2048 / 64 (R doubles
    them, as train.py does); 6 layers (+ ToRGB).  `overrides` go to sg3_reference.config.
    """
    sr = _sg3_reference()
    r = str(cfg).lower().removeprefix("stylegan3-") == "r"
    base = (2048 if r else 1024) if channel_base is None else channel_base
    cmax = (64 if r else 32) if channel_max is None else channel_max
    return sr.make_generator(cfg, resolution, seed=seed, channel_base=base, channel_max=cmax, num_layers=num_layers,
                             z_dim=z_dim, w_dim=w_dim, c_dim=c_dim, **overrides)


def write_stylegan3_pickle(path, cfg="t", resolution=16, *, channel_base=None, channel_max=None, num_layers=6,
                           z_dim=32, w_dim=32, c_dim=0, seed=0, G=None, D=None):
    """Write a genuine stylegan3-repo training snapshot; returns `path` unchanged.

    The pickle is `dict(G, D, G_ema, augment_pipe=None, training_set_kwargs)` (the key order of
    the stylegan3 training loop; augment_pipe None as with --aug=noaug).  G_ema is `G` when
    given (an sg3_reference.Generator; the architecture arguments must then be left alone), else
    `make_stylegan3_reference(cfg, resolution, ..., seed=seed)`; build it that way yourself to
    run it.  The training-time G is a copy with slightly perturbed parameters (buffers equal, as
    the training loop copies them), so readers must pick G_ema.  D (default: a randomized
    torch_reference RefDiscriminator, the StyleGAN2 discriminator the stylegan3 repo trains with,
    channel_base / channel_max halved for R as train.py does) stays unconditional even for
    c_dim > 0, which is enough for the error tests.
    """
    if G is None:
        G = make_stylegan3_reference(cfg, resolution, channel_base=channel_base, channel_max=channel_max,
                                     num_layers=num_layers, z_dim=z_dim, w_dim=w_dim, c_dim=c_dim, seed=seed)
    elif (cfg, resolution, channel_base, channel_max, num_layers, z_dim, w_dim, c_dim) != \
            ("t", 16, None, None, 6, 32, 32, 0):
        raise ValueError("pass either G or architecture arguments, not both")
    G_ema = G
    G_train = copy.deepcopy(G_ema)
    gen = torch.Generator().manual_seed(int(seed) + 1)
    with torch.no_grad():
        for p in G_train.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.01)
    c = G_ema.cfg
    if D is None:
        radial_r = c.use_radial_filters and c.conv_kernel == 1
        d_base, d_max = (c.channel_base // 2, c.channel_max // 2) if radial_r else (c.channel_base, c.channel_max)
        D = _torch_reference().RefDiscriminator(c.img_resolution, channel_base=d_base, channel_max=d_max,
                                                conv_clamp=c.conv_clamp, img_channels=c.img_channels)
        D.randomize_(seed)
    w = _SG3Writer()
    training_set_kwargs = dict(class_name="training.dataset.ImageFolderDataset", path="/data/ffhqu-256x256.zip",
                               use_labels=c.c_dim > 0, max_size=70000, xflip=True,
                               resolution=c.img_resolution, random_seed=0)
    snapshot = dict(G=w.generator(G_train), D=_NVWriter("sg3").discriminator(D, c.num_fp16_res),
                    G_ema=w.generator(G_ema), augment_pipe=None, training_set_kwargs=training_set_kwargs)
    with _fake_nvlabs_modules(), open(path, "wb") as f:
        pickle.dump(snapshot, f, protocol=4)
    return path


# ----------------------------------------------------------------------------------------------
# rosinality / StyleKD / CAGAN naming


def _blur_kernel(gain=1.0):
    f = torch.tensor(_FILTER_TAPS, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum() * gain


def _gen_layout(sd):
    """(block resolutions, number of mapping layers) of an NVlabs generator state dict."""
    res = sorted({int(m.group(1)) for k in sd for m in [re.match(r"synthesis\.b(\d+)\.", k)] if m})
    nmap = len({m.group(1) for k in sd for m in [re.match(r"mapping\.fc(\d+)\.", k)] if m})
    return res, nmap


def rename_nvlabs_to_rosinality_generator(sd):
    """NVlabs generator state dict -> rosinality/StyleKD `g` / `g_ema` state dict (same tensors,
    rosinality shapes; blur `kernel` buffers added, `resample_filter`s and `mapping.w_avg` dropped:
    w_avg is written as the top-level `latent_avg`)."""
    if any(k.startswith("mapping.embed.") for k in sd):
        raise ValueError("conditional generators (mapping.embed) have no rosinality equivalent")
    res_list, nmap = _gen_layout(sd)
    out = OrderedDict()
    for i in range(nmap):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    out["input.input"] = sd["synthesis.b4.const"][None]

    def styled(dst, src, up):
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        if up:
            out[f"{dst}.conv.blur.kernel"] = _blur_kernel(4.0)
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = sd[f"{src}.bias"]

    def to_rgb(dst, src, up):
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1)
        if up:
            out[f"{dst}.upsample.kernel"] = _blur_kernel(4.0)
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]

    styled("conv1", "synthesis.b4.conv1", False)
    to_rgb("to_rgb1", "synthesis.b4.torgb", False)
    for k, r in enumerate(res_list[1:]):
        styled(f"convs.{2 * k}", f"synthesis.b{r}.conv0", True)
        styled(f"convs.{2 * k + 1}", f"synthesis.b{r}.conv1", False)
    for k, r in enumerate(res_list[1:]):
        to_rgb(f"to_rgbs.{k}", f"synthesis.b{r}.torgb", True)
    out["noises.noise_0"] = sd["synthesis.b4.conv1.noise_const"][None, None]
    for k, r in enumerate(res_list[1:]):
        out[f"noises.noise_{2 * k + 1}"] = sd[f"synthesis.b{r}.conv0.noise_const"][None, None]
        out[f"noises.noise_{2 * k + 2}"] = sd[f"synthesis.b{r}.conv1.noise_const"][None, None]
    return out


def rename_rosinality_to_nvlabs_generator(sd, latent_avg=None):
    """Inverse of rename_nvlabs_to_rosinality_generator, in NVlabs key order (resample_filter
    buffers recreated; mapping.w_avg = latent_avg, zeros when not given)."""
    nmap = len({m.group(1) for k in sd for m in [re.match(r"style\.(\d+)\.", k)] if m})
    nconv = len({m.group(1) for k in sd for m in [re.match(r"convs\.(\d+)\.", k)] if m})
    res_list = [2 ** i for i in range(2, 2 + nconv // 2 + 1)]
    f = _blur_kernel()
    out = OrderedDict()

    def layer(dst, src, noise_key):
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.noise_strength"] = sd[f"{src}.noise.weight"].reshape(())
        out[f"{dst}.bias"] = sd[f"{src}.activate.bias"]
        out[f"{dst}.resample_filter"] = f.clone()
        out[f"{dst}.noise_const"] = sd[noise_key][0, 0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]

    def torgb(dst, src):
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(-1)
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]

    for k, r in enumerate(res_list):
        p = f"synthesis.b{r}"
        if r == 4:
            out[f"{p}.const"] = sd["input.input"][0]
            out[f"{p}.resample_filter"] = f.clone()
            layer(f"{p}.conv1", "conv1", "noises.noise_0")
            torgb(f"{p}.torgb", "to_rgb1")
        else:
            j = k - 1
            out[f"{p}.resample_filter"] = f.clone()
            layer(f"{p}.conv0", f"convs.{2 * j}", f"noises.noise_{2 * j + 1}")
            layer(f"{p}.conv1", f"convs.{2 * j + 1}", f"noises.noise_{2 * j + 2}")
            torgb(f"{p}.torgb", f"to_rgbs.{j}")
    w_dim = sd["style.1.weight"].shape[0] if nmap else sd["conv1.conv.modulation.weight"].shape[1]
    out["mapping.w_avg"] = torch.zeros([w_dim]) if latent_avg is None else latent_avg.reshape(-1)
    for i in range(nmap):
        out[f"mapping.fc{i}.weight"] = sd[f"style.{i + 1}.weight"]
        out[f"mapping.fc{i}.bias"] = sd[f"style.{i + 1}.bias"]
    return out


def rename_nvlabs_to_rosinality_discriminator(sd):
    """NVlabs discriminator state dict -> rosinality `d` state dict (blur kernels added)."""
    res_list = sorted({int(m.group(1)) for k in sd for m in [re.match(r"b(\d+)\.conv0\.", k)] if m}, reverse=True)
    top = res_list[0]
    out = OrderedDict()
    out["convs.0.0.weight"] = sd[f"b{top}.fromrgb.weight"]
    out["convs.0.1.bias"] = sd[f"b{top}.fromrgb.bias"]
    for j, r in enumerate(res_list, start=1):
        out[f"convs.{j}.conv1.0.weight"] = sd[f"b{r}.conv0.weight"]
        out[f"convs.{j}.conv1.1.bias"] = sd[f"b{r}.conv0.bias"]
        out[f"convs.{j}.conv2.0.kernel"] = _blur_kernel()
        out[f"convs.{j}.conv2.1.weight"] = sd[f"b{r}.conv1.weight"]
        out[f"convs.{j}.conv2.2.bias"] = sd[f"b{r}.conv1.bias"]
        out[f"convs.{j}.skip.0.kernel"] = _blur_kernel()
        out[f"convs.{j}.skip.1.weight"] = sd[f"b{r}.skip.weight"]
    out["final_conv.0.weight"] = sd["b4.conv.weight"]
    out["final_conv.1.bias"] = sd["b4.conv.bias"]
    out["final_linear.0.weight"] = sd["b4.fc.weight"]
    out["final_linear.0.bias"] = sd["b4.fc.bias"]
    out["final_linear.1.weight"] = sd["b4.out.weight"]
    out["final_linear.1.bias"] = sd["b4.out.bias"]
    return out


def rename_rosinality_to_nvlabs_discriminator(sd):
    """Inverse of rename_nvlabs_to_rosinality_discriminator, in NVlabs key order."""
    nblocks = len({m.group(1) for k in sd for m in [re.match(r"convs\.(\d+)\.conv1\.", k)] if m})
    res_list = [2 ** (2 + nblocks - j) for j in range(nblocks)]
    f = _blur_kernel()
    out = OrderedDict()

    def conv(dst, w, b):
        out[f"{dst}.weight"] = w
        if b is not None:
            out[f"{dst}.bias"] = b
        out[f"{dst}.resample_filter"] = f.clone()

    for j, r in enumerate(res_list, start=1):
        out[f"b{r}.resample_filter"] = f.clone()
        if j == 1:
            conv(f"b{r}.fromrgb", sd["convs.0.0.weight"], sd["convs.0.1.bias"])
        conv(f"b{r}.conv0", sd[f"convs.{j}.conv1.0.weight"], sd[f"convs.{j}.conv1.1.bias"])
        conv(f"b{r}.conv1", sd[f"convs.{j}.conv2.1.weight"], sd[f"convs.{j}.conv2.2.bias"])
        conv(f"b{r}.skip", sd[f"convs.{j}.skip.1.weight"], None)
    conv("b4.conv", sd["final_conv.0.weight"], sd["final_conv.1.bias"])
    out["b4.fc.weight"], out["b4.fc.bias"] = sd["final_linear.0.weight"], sd["final_linear.0.bias"]
    out["b4.out.weight"], out["b4.out.bias"] = sd["final_linear.1.weight"], sd["final_linear.1.bias"]
    return out


def _adam_state_dict(named_tensors, lr, betas=(0.0, 0.99), seed=0):
    """A real torch.optim.Adam state dict after one step on copies of the given parameters."""
    gen = torch.Generator().manual_seed(seed)
    params = [nn.Parameter(t.detach().clone().float()) for t in named_tensors]
    opt = torch.optim.Adam(params, lr=lr, betas=betas, eps=1e-8)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 1e-2
    opt.step()
    return opt.state_dict()


def _as_state_dict(x):
    return x.state_dict() if hasattr(x, "state_dict") else x


def write_rosinality_pt(path, G, D, G_ema=None, latent_avg=False, with_optim_and_args=True):
    """Write a rosinality/StyleKD/CAGAN training checkpoint (.pt, torch zip format).

    G, D, G_ema: reference modules or NVlabs-named state dicts.  latent_avg: also store
    G_ema's mapping.w_avg as the top-level `latent_avg` (as TF-converted checkpoints do).
    with_optim_and_args: add g_optim / d_optim (real Adam state dicts), args (argparse.Namespace)
    and ada_aug_p, as rosinality's train.py does (StyleKD saves only g, d, g_ema).
    """
    g_nv, d_nv = _as_state_dict(G), _as_state_dict(D)
    ge_nv = g_nv if G_ema is None else _as_state_dict(G_ema)
    g = rename_nvlabs_to_rosinality_generator(g_nv)
    d = rename_nvlabs_to_rosinality_discriminator(d_nv)
    g_ema = rename_nvlabs_to_rosinality_generator(ge_nv)
    ckpt = {"g": _clone(g), "d": _clone(d), "g_ema": _clone(g_ema)}
    if with_optim_and_args:
        is_param = lambda k: not (k.startswith("noises.") or k.endswith(".kernel"))  # noqa: E731
        g_ratio, d_ratio = 4 / 5, 16 / 17
        ckpt["g_optim"] = _adam_state_dict([v for k, v in g.items() if is_param(k)], 0.002 * g_ratio,
                                           (0.0, 0.99 ** g_ratio), seed=1)
        ckpt["d_optim"] = _adam_state_dict([v for k, v in d.items() if is_param(k)], 0.002 * d_ratio,
                                           (0.0, 0.99 ** d_ratio), seed=2)
        size = 2 ** (len({k.split(".")[1] for k in g if k.startswith("convs.")}) // 2 + 2)
        w_dim = g["conv1.conv.modulation.weight"].shape[1]
        n_mlp = len({k.split(".")[1] for k in g if k.startswith("style.")})
        ckpt["args"] = argparse.Namespace(
            path="/data/ffhq_lmdb", iter=800000, batch=16, n_sample=64, size=size, r1=10.0, path_regularize=2.0,
            path_batch_shrink=2, d_reg_every=16, g_reg_every=4, mixing=0.9, ckpt=None, lr=0.002,
            channel_multiplier=2, wandb=False, local_rank=0, augment=False, augment_p=0.0, ada_target=0.6,
            ada_length=500000, ada_every=256, distributed=False, latent=w_dim, n_mlp=n_mlp, start_iter=0)
        ckpt["ada_aug_p"] = 0.0
    if latent_avg:
        ckpt["latent_avg"] = ge_nv["mapping.w_avg"].detach().clone()
    torch.save(ckpt, path)
    return path


def _clone(sd):
    return OrderedDict((k, v.detach().clone().contiguous()) for k, v in sd.items())
