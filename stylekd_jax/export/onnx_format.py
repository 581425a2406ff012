"""ONNX export with jax2onnx, checked in ONNX Runtime.

The graph goes through `portable` first (see there), its FIR filters traced as depthwise
convolutions (`for_op_by_op_runtime`); the batch dimension stays symbolic ('batch'), so one
file serves any batch size. Weights are initializers (float32).
"""

import contextlib
import io
import logging
import os

import numpy as np

from stylekd_jax.export.portable import portable
from stylekd_jax.export.signature import for_op_by_op_runtime

OPSET = 21


def export(fn, specs, path: str) -> str:
    import onnx
    # jax2onnx prints tracebacks of optional plugins it cannot load (dm_pix, unused here) and
    # onnx_ir logs a warning per untyped shape constant: neither concerns this export.
    logging.getLogger("onnx_ir").setLevel(logging.ERROR)
    # Its plugin loader logs those tracebacks through a handler that bypasses the redirect.
    logging.getLogger("jax2onnx.plugins.plugin_system").setLevel(logging.ERROR)
    shapes = [tuple("batch" if d is None else d for d in s.shape) for s in specs]
    with contextlib.redirect_stderr(io.StringIO()):
        from jax2onnx import to_onnx
        model = to_onnx(portable(for_op_by_op_runtime(fn)), shapes, model_name="stylegan_generator",
                        opset=OPSET, input_names=[s.name for s in specs], output_names=["image"])
    onnx.save(model, path)
    return path


def session(path: str, threads: int | None = None):
    import onnxruntime as ort
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def run(path_or_session, inputs: list[np.ndarray]) -> np.ndarray:
    s = session(path_or_session) if isinstance(path_or_session, (str, os.PathLike)) else path_or_session
    feeds = {i.name: np.asarray(x) for i, x in zip(s.get_inputs(), inputs)}
    return s.run(None, feeds)[0]
