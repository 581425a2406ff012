"""Serve a page to explore a student in the browser, its teacher rendered beside it.

    python -m stylekd_jax.explore --student runs/NAME/student [--teacher teacher/] [--port 8000]

Set-up once (vendors onnxruntime-web's WebAssembly build into the page; npm is needed only
here, the page then loads nothing from the internet):

    npm ci --prefix stylekd_jax/explore/page

The student is exported to ONNX (mapping z -> w and synthesis ws -> image, verified in
onnxruntime, cached) and runs in the browser with onnxruntime-web; the page has a seed box, a
truncation slider, sliders for five SeFa directions (the teacher's, as distillation uses; the
student's own without a teacher) and a style-mixing control (seed and cutoff), and shows each
image's generation time. With --teacher, the server renders the teacher in JAX for the same
settings beside the student. Serves on 127.0.0.1 only; Ctrl-C stops.
"""

import argparse
import errno
import os
import sys

from stylekd_jax import cli, latents
from stylekd_jax.edit import EditError, Network
from stylekd_jax.explore import server
from stylekd_jax.explore.models import student_models
from stylekd_jax.export.signature import ExportError
from stylekd_jax.sefa import MODES, training_directions

DEFAULT_CACHE = os.path.join("~", ".cache", "stylekd_jax", "explore")


class ExploreError(ValueError):
    """One line for the user."""


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in [0, 65535] (0: any free port), got {text!r}")
    return value


def parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog="python -m stylekd_jax.explore", description=__doc__.split("\n\n")[0])
    p.add_argument("--student", required=True, help="student checkpoint (runs in the browser)")
    p.add_argument("--teacher", default=None, help="teacher checkpoint (rendered on this machine, beside the student)")
    p.add_argument("--port", type=_port, default=8000, help="port on 127.0.0.1 (default 8000; 0: any free port)")
    p.add_argument("--directions", default="sefa:0-4", help="the sliders' SeFa directions (default sefa:0-4)")
    p.add_argument("--sefa-mode", choices=MODES, default="split", help="split (default, as training) or global")
    p.add_argument("--cache-dir", default=DEFAULT_CACHE,
                   help=f"where the exported ONNX files are kept (default {DEFAULT_CACHE})")
    return p


def prepare(args):
    """Check, load and export everything; returns (Explorer, bound server)."""
    missing = server.missing_vendor_files()
    if missing:
        raise ExploreError(f"the page's onnxruntime-web files are not set up ({', '.join(missing)} missing in "
                           f"{os.path.join(server.PAGE_DIR, 'vendor')}); run once: {server.SETUP_COMMAND}")
    try:
        student = Network("student", args.student)
        teacher = Network("teacher", args.teacher) if args.teacher else None
    except EditError as e:
        raise ExploreError(str(e)) from None
    if teacher is not None:
        t, s = teacher.cfg, student.cfg
        if (t.num_ws, t.w_dim, t.z_dim) != (s.num_ws, s.w_dim, s.z_dim):
            raise ExploreError(f"the student takes other latents than the teacher (num_ws, w_dim, z_dim: teacher "
                               f"{(t.num_ws, t.w_dim, t.z_dim)}, student {(s.num_ws, s.w_dim, s.z_dim)})")
    source = teacher or student
    directions = training_directions(source.cfg, source.variables, args.sefa_mode)
    try:
        chosen = latents.parse_direction_spec(args.directions, len(directions))
    except ValueError as e:
        raise ExploreError(str(e).replace("the teacher", f"the {source.role}")) from None
    try:   # bind before the export, so a busy port is reported at once
        httpd = server.make_server(args.port)
    except OSError as e:
        why = "is in use" if e.errno == errno.EADDRINUSE else f"cannot be opened ({e.strerror})"
        raise ExploreError(f"port {args.port} on 127.0.0.1 {why}; pass --port N (0: any free port)") from None
    try:
        models_dir = student_models(student.cfg, student.variables, args.student, args.cache_dir)
        explorer = server.Explorer(student, models_dir, directions[chosen], chosen, source.role, teacher)
        if teacher is not None:   # compile now, not on the first request
            explorer.teacher_png({})
    except BaseException:
        httpd.server_close()
        raise
    httpd.explorer = explorer
    return explorer, httpd


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        explorer, httpd = prepare(args)
    except (ExploreError, ExportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    shown = "student (in the browser)" + (" beside the teacher (JAX, here)" if explorer.teacher else "")
    print(f"explorer: {shown} at http://127.0.0.1:{httpd.server_address[1]}/  (Ctrl-C stops)", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        httpd.server_close()
    return 0
