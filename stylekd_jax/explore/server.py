"""The explorer's HTTP server on 127.0.0.1: page, vendored runtime, models, JSON, teacher images.

Why a server at all: the browser needs the files over HTTP (WebAssembly and ES modules do not
load from file://), the latents per seed must be generate's (numpy's RandomState(seed).randn,
which JavaScript cannot reproduce: the server sends z), and the teacher runs here in JAX.
Nothing is fetched from the internet: every URL the page uses is one of these routes.

    /                       the page (page/index.html), /explore.js, /explore.css
    /vendor/NAME            onnxruntime-web's files copied by `npm ci` (page/vendor/)
    /models/NAME.onnx       the student's mapping and synthesis (models.py)
    /api/info               sizes, the student's w_avg, the SeFa directions, whether a teacher is shown
    /api/z?seed=S           {"seed": S, "z": [...]}: generate's z for the seed
    /api/teacher?seed=S&psi=P&strengths=a,b,..&mix=M&cutoff=C
                            the teacher's image (PNG) for the same settings (latents' formulas);
                            header X-Generation-Ms: its time in JAX (mapping + synthesis)

Responses carry the cross-origin isolation headers, so onnxruntime-web may use WebAssembly
threads (SharedArrayBuffer).
"""

import io
import json
import math
import os
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

from stylekd_jax import images, latents
from stylekd_jax.explore.models import MAPPING_FILE, SYNTHESIS_FILE
from stylekd_jax.generate import seed_latents

PAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page")
PAGE_FILES = {"/": "index.html", "/index.html": "index.html", "/explore.js": "explore.js",
              "/explore.css": "explore.css"}
VENDOR_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
SETUP_COMMAND = "npm ci --prefix stylekd_jax/explore/page"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
                 ".css": "text/css", ".wasm": "application/wasm", ".onnx": "application/octet-stream"}
MAX_SEED = 2 ** 32 - 1


def missing_vendor_files(page_dir: str | None = None) -> list[str]:
    """The onnxruntime-web files `npm ci` has not copied into page/vendor/ (yet)."""
    vendor = os.path.join(page_dir or PAGE_DIR, "vendor")
    return [f for f in VENDOR_FILES if not os.path.isfile(os.path.join(vendor, f))]


class BadRequest(ValueError):
    """A query the page should not send: answered 400 with the message."""


class Explorer:
    """What the routes serve: the student's files and facts, and the teacher (an `edit.Network`)."""

    def __init__(self, student, models_dir: str, directions: np.ndarray, direction_indices: list[int],
                 direction_source: str, teacher=None, page_dir: str = PAGE_DIR):
        self.student, self.teacher = student, teacher
        self.models_dir, self.page_dir = models_dir, page_dir
        self.directions = np.asarray(directions, np.float32)     # [k, w_dim]: the sliders'
        self.direction_indices, self.direction_source = direction_indices, direction_source
        self._jax = threading.Lock()   # one teacher image at a time

    def info(self) -> dict:
        cfg = self.student.cfg
        return {"resolution": cfg.resolution, "z_dim": cfg.z_dim, "w_dim": cfg.w_dim, "num_ws": cfg.num_ws,
                "w_avg": np.asarray(self.student.variables["buffers"]["mapping"]["w_avg"], np.float32).tolist(),
                "directions": self.directions.tolist(), "direction_indices": self.direction_indices,
                "direction_source": self.direction_source, "teacher": self.teacher is not None,
                "student_path": self.student.path,
                "teacher_path": self.teacher.path if self.teacher is not None else None}

    def z(self, seed: int) -> dict:
        z_dim = self.student.cfg.z_dim
        return {"seed": seed, "z": seed_latents([seed], z_dim)[0].tolist()}

    def ws(self, net, seed: int, psi: float, strengths: list[float], mix_seed: int, cutoff: int) -> np.ndarray:
        """The settings' ws [1, num_ws, w_dim] in `net`'s W (latents: truncate, mix, edit)."""
        ws = latents.seed_ws(net.map, net.variables, [seed], net.cfg.z_dim, psi)
        if cutoff > 0:
            ws = latents.mix(ws, latents.seed_ws(net.map, net.variables, [mix_seed], net.cfg.z_dim, psi), cutoff)
        for direction, strength in zip(self.directions, strengths):
            if strength:
                ws = latents.edit(ws, direction, strength)
        return ws

    def teacher_png(self, query: dict) -> tuple[bytes, float]:
        settings = parse_settings(query, len(self.directions), self.teacher.cfg.num_ws)
        with self._jax:
            start = time.perf_counter()
            image = self.teacher.render(self.ws(self.teacher, *settings), 1)
            ms = (time.perf_counter() - start) * 1000
        buffer = io.BytesIO()
        Image.fromarray(images.to_uint8(image)[0]).save(buffer, format="PNG")
        return buffer.getvalue(), ms


def _number(query: dict, name: str, default, kind=float):
    text = query.get(name, [str(default)])[0]
    try:
        value = kind(text)
    except ValueError:
        raise BadRequest(f"{name}={text!r} is not a number") from None
    if not math.isfinite(value):
        raise BadRequest(f"{name}={text!r} is not finite")
    return value


def parse_settings(query: dict, num_directions: int, num_ws: int):
    """(seed, psi, strengths, mix_seed, cutoff) from a query string's values."""
    seed, mix_seed = _number(query, "seed", 0, int), _number(query, "mix", 0, int)
    cutoff = _number(query, "cutoff", 0, int)
    if not (0 <= seed <= MAX_SEED and 0 <= mix_seed <= MAX_SEED):
        raise BadRequest(f"seeds must be in [0, {MAX_SEED}]")
    if not 0 <= cutoff <= num_ws:
        raise BadRequest(f"cutoff must be in [0, {num_ws}]")
    try:
        strengths = [float(t) for t in query.get("strengths", [""])[0].split(",") if t]
    except ValueError:
        raise BadRequest("strengths must be numbers separated by commas") from None
    if len(strengths) > num_directions or not all(math.isfinite(s) for s in strengths):
        raise BadRequest(f"at most {num_directions} finite strengths")
    return seed, _number(query, "psi", 1.0), strengths, mix_seed, cutoff


def make_server(port: int, explorer: Explorer | None = None) -> ThreadingHTTPServer:
    """Bound to 127.0.0.1:port (0: a free port; the bound one is `server.server_address[1]`).
    It serves `server.explorer`, which may be set after binding."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):   # no line per request on the console
            pass

        def send(self, status: int, body: bytes, content_type: str, extra: dict | None = None):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def send_json(self, value, status: int = 200):
            self.send(status, json.dumps(value).encode(), "application/json")

        def send_file(self, path: str):
            with open(path, "rb") as f:
                body = f.read()
            self.send(200, body, CONTENT_TYPES.get(os.path.splitext(path)[1], "application/octet-stream"))

        def do_GET(self):
            explorer = self.server.explorer
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            route = url.path
            try:
                if route in PAGE_FILES:
                    self.send_file(os.path.join(explorer.page_dir, PAGE_FILES[route]))
                elif route.startswith("/vendor/") and route[len("/vendor/"):] in VENDOR_FILES:
                    self.send_file(os.path.join(explorer.page_dir, "vendor", route[len("/vendor/"):]))
                elif route in (f"/models/{MAPPING_FILE}", f"/models/{SYNTHESIS_FILE}"):
                    self.send_file(os.path.join(explorer.models_dir, route[len("/models/"):]))
                elif route == "/api/info":
                    self.send_json(explorer.info())
                elif route == "/api/z":
                    seed = _number(query, "seed", 0, int)
                    if not 0 <= seed <= MAX_SEED:
                        raise BadRequest(f"seed must be in [0, {MAX_SEED}]")
                    self.send_json(explorer.z(seed))
                elif route == "/api/teacher" and explorer.teacher is not None:
                    body, ms = explorer.teacher_png(query)
                    self.send(200, body, "image/png", {"X-Generation-Ms": f"{ms:.1f}"})
                else:
                    self.send_json({"error": f"no such page: {route}"}, 404)
            except BadRequest as e:
                self.send_json({"error": str(e)}, 400)
            except (BrokenPipeError, ConnectionResetError):
                pass   # the page went away mid-answer

    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    httpd.explorer = explorer
    return httpd
