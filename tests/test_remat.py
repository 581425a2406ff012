"""config.remat: recomputing block activations in the backward pass changes memory, not numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stylekd_jax.architecture import DiscriminatorConfig, GeneratorConfig, StyleGAN3Config
from stylekd_jax.networks import Discriminator, make_generator
from stylekd_jax.networks.generator import init_generator

SG2 = GeneratorConfig.teacher(32, channel_base=512, channel_max=32, z_dim=16, w_dim=16,
                              mapping_features=(16, 16))
SG3 = StyleGAN3Config.teacher(16, "t", channel_base=256, channel_max=16, z_dim=8, w_dim=8,
                              mapping_features=(8, 8), num_layers=4)


def synthesis_grads(cfg, variables, ws, remat: bool):
    """d/dparams of a fixed projection of the synthesised images (random noise, same key)."""
    model = make_generator(cfg, remat=remat)
    target = jax.random.normal(jax.random.PRNGKey(3), model.apply(variables, ws, "random", method="synthesize",
                                                                   rngs={"noise": jax.random.PRNGKey(2)}).shape)

    def loss(params):
        img = model.apply({**variables, "params": params}, ws, "random", method="synthesize",
                          rngs={"noise": jax.random.PRNGKey(2)})
        return jnp.sum(img * target)
    return jax.jit(jax.value_and_grad(loss))(variables["params"])


@pytest.mark.parametrize("cfg", [SG2, SG3], ids=["stylegan2", "stylegan3"])
def test_remat_generator_gives_the_same_images_and_gradients(cfg):
    variables = init_generator(cfg, jax.random.PRNGKey(0))
    ws = jax.random.normal(jax.random.PRNGKey(1), (4, cfg.num_ws, cfg.w_dim))
    value, grads = synthesis_grads(cfg, variables, ws, remat=False)
    value_r, grads_r = synthesis_grads(cfg, variables, ws, remat=True)
    np.testing.assert_allclose(value_r, value, rtol=1e-6)
    for g, g_r in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads_r)):
        np.testing.assert_allclose(g_r, g, rtol=1e-5, atol=1e-6 * float(np.abs(g).max()))


def test_remat_discriminator_keeps_gradients_and_recomputes_its_blocks():
    """The lowered program runs each block's convolutions again in the backward pass. (XLA:CPU
    removes that recomputation when it compiles, so CPU memory numbers cannot show the saving;
    benchmarks/accelerator.sh measures it on a device.)"""
    cfg = DiscriminatorConfig(resolution=32, channels=((32, 32), (16, 32), (8, 32), (4, 32)))
    img = jax.random.normal(jax.random.PRNGKey(0), (8, 32, 32, 3))
    params = Discriminator(cfg).init(jax.random.PRNGKey(1), img)

    def grad_fn(remat):
        model = Discriminator(cfg, remat=remat)
        return jax.jit(jax.grad(lambda p, x: jnp.sum(model.apply(p, x) ** 2)))

    grads, grads_r = grad_fn(False)(params, img), grad_fn(True)(params, img)
    for g, g_r in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads_r)):
        np.testing.assert_allclose(g_r, g, rtol=1e-5, atol=1e-6 * float(np.abs(g).max()))
    convs = {remat: grad_fn(remat).lower(params, img).as_text().count("stablehlo.convolution")
             for remat in (False, True)}
    assert convs[True] > convs[False], convs   # forward convolutions again, before their gradients


def test_remat_stylegan3_updates_the_magnitude_emas_as_without():
    """The training forward of StyleGAN3 also writes each layer's input-magnitude EMA."""
    variables = init_generator(SG3, jax.random.PRNGKey(0))
    ws = jax.random.normal(jax.random.PRNGKey(1), (4, SG3.num_ws, SG3.w_dim))
    out = {}
    for remat in (False, True):
        model = make_generator(SG3, remat=remat)

        def loss(params):
            (img, _), mutated = model.apply({**variables, "params": params}, ws, "random", True, True,
                                            method="synthesize", mutable=["buffers"])
            return jnp.sum(img ** 2), mutated["buffers"]
        out[remat] = jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])
    for a, b in zip(jax.tree_util.tree_leaves(out[False]), jax.tree_util.tree_leaves(out[True])):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * float(np.abs(a).max()))
