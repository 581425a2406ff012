"""SavedModel and TFLite exports through jax2tf, checked in TensorFlow and the TFLite interpreter.

SavedModel (TF Serving): signature 'serving_default', inputs named as the signature's
(z, psi or ws), output 'image'; the batch dimension is symbolic (jax2tf shape polymorphism),
the graph one XlaCallModule op.

TFLite: the TFLite converter lowers that op to builtin ops, which needs static shapes, so a
TFLite file has a fixed batch size (`--batch`, default 1). Precisions: float32; float16
(weights stored as float16, computed in float32 on CPU); int8 (dynamic-range quantisation:
int8 weights, activations quantised on the fly). XNNPACK runs it on CPU.

TFLite runs a graph op by op, so its files trace the generator with the FIR filters as
depthwise convolutions (`for_op_by_op_runtime`); the SavedModel keeps the XLA form.
"""

import os
import warnings

import numpy as np

from stylekd_jax.export.signature import for_op_by_op_runtime

PRECISIONS = ("float32", "float16", "int8")


def _tf():
    """TensorFlow, imported on first use (the package works without it) with its C++ info
    logs off, so that they do not bury the export's progress lines."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    return tf


def _tf_function(fn, specs, batch: int | None):
    tf = _tf()
    from jax.experimental import jax2tf
    polymorphic = [None if batch is not None or not s.shape or s.shape[0] is not None
                   else "(b, " + ", ".join("_" for _ in s.shape[1:]) + ")" for s in specs]
    converted = jax2tf.convert(fn, polymorphic_shapes=polymorphic, with_gradient=False)
    signature = [tf.TensorSpec([batch if d is None else d for d in s.shape], s.dtype, name=s.name)
                 for s in specs]
    return tf.function(lambda *args: {"image": converted(*args)}, autograph=False,
                       input_signature=signature)


def export_savedmodel(fn, specs, path: str) -> str:
    tf = _tf()
    module = tf.Module()
    module.generate = _tf_function(fn, specs, None)
    tf.saved_model.save(module, path,
                        signatures={"serving_default": module.generate.get_concrete_function()})
    return path


def run_savedmodel(path: str, specs, inputs: list[np.ndarray]) -> np.ndarray:
    tf = _tf()
    serve = tf.saved_model.load(path).signatures["serving_default"]
    out = serve(**{s.name: tf.constant(x) for s, x in zip(specs, inputs)})
    return out["image"].numpy()


def export_tflite(fn, specs, path: str, precision: str = "float32", batch: int = 1) -> str:
    tf = _tf()
    function = _tf_function(for_op_by_op_runtime(fn), specs, batch)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()],
                                                                function)
    if precision in ("float16", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "float16":
        converter.target_spec.supported_types = [tf.float16]
    with open(path, "wb") as f:
        f.write(converter.convert())
    return path


def interpreter(path: str, threads: int | None = None):
    """A TFLite interpreter with its default delegate (XNNPACK on CPU), tensors allocated."""
    tf = _tf()
    with warnings.catch_warnings():   # "tf.lite.Interpreter is deprecated": it still ships in TF 2.21
        warnings.simplefilter("ignore")
        it = tf.lite.Interpreter(model_path=path, num_threads=threads)
    it.allocate_tensors()
    return it


def tflite_batch(it) -> int:
    return int(it.get_input_details()[0]["shape"][0])


def run_tflite(path_or_interpreter, specs, inputs: list[np.ndarray]) -> np.ndarray:
    """Run on `inputs` (any batch: split into the file's fixed batch size)."""
    it = interpreter(path_or_interpreter) if isinstance(path_or_interpreter, str) else path_or_interpreter
    details = it.get_input_details()
    # Inputs are named after the signature (possibly with a 'serving_default_' prefix and ':0').
    order = [next(d for d in details if d["name"].split(":")[0].endswith(s.name)) for s in specs]
    output = it.get_output_details()[0]["index"]
    batch = tflite_batch(it) if specs[0].shape else 1
    n = len(inputs[0])
    outs = []
    for start in range(0, n, batch):
        for detail, spec, x in zip(order, specs, inputs):
            part = x[start: start + batch] if spec.shape else x
            if spec.shape and len(part) < batch:
                raise ValueError(f"{n} inputs do not split into batches of {batch}")
            it.set_tensor(detail["index"], np.asarray(part, detail["dtype"]))
        it.invoke()
        outs.append(it.get_tensor(output).copy())
    return np.concatenate(outs)
