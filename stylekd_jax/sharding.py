"""Device mesh and shardings: the batch splits over 'data'; large params may split over 'model'.

Everything is `jax.jit` with explicit in/out shardings (the current form of pjit). With
`mesh.model = 1` (the default) parameters and optimizer state are replicated and the step is
plain data parallelism; a larger 'model' axis shards every big array along its largest
divisible dimension (FSDP-style), which XLA turns into all-gathers where the math needs them.
"""

import collections
import itertools
import math
from typing import Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

# Arrays smaller than this stay replicated even on a 'model' axis: splitting them saves
# nothing and costs a collective.
MIN_SHARDED_SIZE = 2 ** 18


def device_description() -> str:
    """e.g. '8 x TPU v5 lite (tpu), jax 0.10.2', for logs, reports and benchmarks."""
    d = jax.devices()[0]
    return f"{len(jax.devices())} x {d.device_kind} ({d.platform}), jax {jax.__version__}"


def make_mesh(data: int = -1, model: int = 1) -> Mesh:
    """A ('data', 'model') mesh over all devices (data=-1), or over the first data x model."""
    n = jax.device_count()
    if model < 1 or n % model:
        raise ValueError(f"config.mesh.model={model} must divide the {n} devices")
    data = n // model if data == -1 else data
    if data < 1 or data * model > n:
        raise ValueError(f"config.mesh.data x mesh.model = {data} x {model} does not fit the "
                         f"{n} devices (use mesh.data=-1 for 'all the rest')")
    if data * model < n and jax.process_count() > 1:
        raise ValueError(f"a multi-process run must use all {n} devices; set config.mesh.data=-1")
    return jax.make_mesh((data, model), ("data", "model"), axis_types=(AxisType.Auto, AxisType.Auto),
                         devices=jax.devices()[: data * model])


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis over 'data'."""
    return NamedSharding(mesh, P("data"))


def param_sharding(mesh: Mesh, tree):
    """Per-leaf shardings for params / optimizer state (replicated unless 'model' > 1)."""
    model = mesh.shape["model"]

    def spec(x):
        shape = np.shape(x)
        if model == 1 or math.prod(shape) < MIN_SHARDED_SIZE:
            return replicated(mesh)
        dims = sorted(range(len(shape)), key=lambda d: -shape[d])
        for d in dims:
            if shape[d] % model == 0:
                axes = [None] * len(shape)
                axes[d] = "model"
                return NamedSharding(mesh, P(*axes))
        return replicated(mesh)
    return jax.tree_util.tree_map(spec, tree)


def global_batch(mesh: Mesh, local_batch: np.ndarray) -> jax.Array:
    """This process's slice of the batch -> one global array sharded over 'data'."""
    return jax.make_array_from_process_local_data(batch_sharding(mesh), local_batch)


def prefetch_to_mesh(batches: Iterator[np.ndarray], mesh: Mesh, size: int = 2) -> Iterator[jax.Array]:
    """Global batch arrays `size` steps ahead, so host-to-device copies overlap the running step."""
    queue: collections.deque = collections.deque()

    def enqueue(n: int) -> None:
        for local in itertools.islice(batches, n):
            queue.append(global_batch(mesh, local))

    enqueue(size)
    while queue:
        yield queue.popleft()
        enqueue(1)


_barriers = itertools.count()   # every process passes the same barriers in the same order


def wait_for_all_processes(name: str, timeout_s: int = 3600) -> None:
    """Block until every process gets here (no-op with one process).

    A barrier on the coordination service, not a device collective: CPU collectives (gloo)
    give up when peers reach their first collective more than 30 s apart, which one process
    compiling or writing files longer than another easily causes.
    """
    if jax.process_count() > 1:
        ocp.multihost.sync_global_processes(f"{name} #{next(_barriers)}", timeout=timeout_s,
                                            barrier_sync_fn=ocp.multihost.get_barrier_sync_fn())
