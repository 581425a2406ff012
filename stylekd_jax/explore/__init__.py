"""A local web page to explore a distilled generator, the student running in the browser.

    python -m stylekd_jax.explore --student runs/NAME/student --teacher teacher/ [--port 8000]

One module per idea:
    models   the student as ONNX files for the browser (mapping z -> w, synthesis ws -> image),
             written and verified with the export package, cached by checkpoint contents
    server   the HTTP server on 127.0.0.1: the page, its vendored onnxruntime-web files, the
             models, seeds' z and the directions as JSON, the teacher's image rendered with JAX
    cli      the command line: checks, export, serve
    page/    the page (plain HTML/JS) and its npm set-up, which vendors onnxruntime-web's
             WebAssembly build into page/vendor/ (`npm ci --prefix stylekd_jax/explore/page`)
"""
