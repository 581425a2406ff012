"""Export a generator to deployment formats, each verified in its own runtime.

    python -m stylekd_jax.export --checkpoint runs/NAME/student --format onnx,tflite,savedmodel,torch --out DIR

One module per idea:
    signature      the function that is exported (z or ws in, image out) and the reference images
    portable       a jaxpr rewrite that keeps the graph inside what jax2onnx converts
    onnx_format    ONNX via jax2onnx, run with onnxruntime
    tf_formats     SavedModel and TFLite via jax2tf, run with TF and the TFLite interpreter
    torch_formats  StyleKD/rosinality `.pt` and NVlabs state dicts, written without torch
                   (the container writer is `convert.torch_writer`)
    cli            the command line: parse, export, verify, report
"""
