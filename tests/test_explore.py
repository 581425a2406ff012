"""`python -m stylekd_jax.explore`: the page in a real headless Chromium, the student in its
WebAssembly onnxruntime, compared pixel by pixel with the JAX generator.

Needs Debian's `chromium` and the page's npm set-up (`npm ci --prefix stylekd_jax/explore/page`);
`.ci/run` provides both, elsewhere the tests that need them skip and say so. The server runs
in-process on a free port with tiny 16 px networks (its ONNX export is the slow part, ~20 s).
"""

import contextlib
import io
import json
import re
import socket
import threading
import urllib.error
import urllib.request

import jax
import numpy as np
import pytest
from PIL import Image

from stylekd_jax import checkpoint, generate
from stylekd_jax.explore import cli, server
from stylekd_jax.networks import make_generator
from stylekd_jax.sefa import sefa_directions
from tests import chromium
from tests.test_edit import make_student

SEED, PSI = 4, 0.7
NO_ASSETS = (f"the explorer page's onnxruntime-web files are not set up; run {server.SETUP_COMMAND} "
             f"(CI: .ci/run does)")
needs_assets = pytest.mark.skipif(bool(server.missing_vendor_files()), reason=NO_ASSETS)
needs_chromium = pytest.mark.skipif(chromium.executable() is None,
                                    reason="no chromium on this machine (apt-get install -y chromium; CI: .ci/run does)")


def run_main(args) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            rc = cli.main([str(a) for a in args])
        except SystemExit as e:   # argparse's usage errors
            rc = e.code
    return rc, err.getvalue()


@pytest.fixture(scope="module")
def student(tiny_teacher, tmp_path_factory):
    """The tiny teacher's student, with a non-zero w_avg so that truncation moves every w."""
    path = make_student(tiny_teacher, str(tmp_path_factory.mktemp("student") / "student"))
    cfg, variables = checkpoint.load_generator(path)
    variables["buffers"]["mapping"]["w_avg"] = 0.3 * np.random.RandomState(0).randn(cfg.w_dim).astype(np.float32)
    checkpoint.save(path + "_wavg", {"g_ema": variables}, cfg)
    return path + "_wavg"


@pytest.fixture(scope="module")
def url(student, tiny_teacher, tmp_path_factory):
    """The explorer serving the student beside the teacher, on a free port."""
    if server.missing_vendor_files():
        pytest.skip(NO_ASSETS)
    args = cli.parser().parse_args(["--student", student, "--teacher", tiny_teacher, "--port", "0",
                                    "--cache-dir", str(tmp_path_factory.mktemp("onnx_cache"))])
    with contextlib.redirect_stdout(io.StringIO()):
        _, httpd = cli.prepare(args)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def jax_image(path: str, seed: int, psi: float, edits=(), mix=None) -> np.ndarray:
    """uint8 [H, W, 3] of the generator called directly: truncated w of the seed, layers
    [0, cutoff) from the mix seed, plus strength * direction on every layer."""
    cfg, variables = checkpoint.load_generator(path)
    model = make_generator(cfg)

    def ws_of(s):
        z = np.random.RandomState(s).randn(1, cfg.z_dim).astype(np.float32)
        return np.array(model.apply(variables, z, psi, method="map"))

    ws = ws_of(seed)
    if mix:
        ws[:, :mix[1]] = ws_of(mix[0])[:, :mix[1]]
    for direction, strength in edits:
        ws = ws + np.float32(strength) * direction
    img = np.asarray(jax.jit(lambda v, w: model.apply(v, w, "const", method="synthesize"))(variables, ws))
    return np.clip(img[0] * 127.5 + 128, 0, 255).astype(np.uint8)


def canvas_pixels(browser) -> np.ndarray:
    data = browser.evaluate("(() => { const c = document.getElementById('student'); "
                            "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); })()")
    side = int(round((len(data) // 4) ** 0.5))
    return np.asarray(data, np.uint8).reshape(side, side, 4)[..., :3]


def teacher_pixels(browser) -> np.ndarray:
    data = browser.evaluate("(() => { const img = document.getElementById('teacher'); "
                            "const c = document.createElement('canvas'); c.width = img.naturalWidth; "
                            "c.height = img.naturalHeight; const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0); "
                            "return Array.from(ctx.getImageData(0, 0, c.width, c.height).data); })()")
    side = int(round((len(data) // 4) ** 0.5))
    return np.asarray(data, np.uint8).reshape(side, side, 4)[..., :3]


def rendered(browser, predicate: str) -> dict:
    """Waits until the page is idle with settings satisfying the JS predicate on `s`."""
    text = browser.wait_for("(() => { const b = document.body.dataset; if (b.error) return 'error: ' + b.error; "
                            f"if (b.busy !== '0' || !b.settings) return null; const s = JSON.parse(b.settings); "
                            f"return ({predicate}) ? b.settings : null; }})()")
    assert not text.startswith("error"), text
    return json.loads(text)


def max_diff(a, b) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


@needs_chromium
@needs_assets
def test_page_runs_the_student_in_chromium(url, student, tiny_teacher, tmp_path):
    # generate's image of the seed, the reference for the page's first picture
    with contextlib.redirect_stdout(io.StringIO()):
        assert generate.main(["--checkpoint", student, "--seeds", str(SEED), "--trunc", str(PSI),
                              "--outdir", str(tmp_path / "gen")]) == 0
    want = np.asarray(Image.open(tmp_path / "gen" / f"seed{SEED:04d}.png"))
    t_cfg, t_vars = checkpoint.load_generator(tiny_teacher)
    directions = sefa_directions(t_cfg, t_vars, "split", num_blocks=2)   # the teacher's, 16 px: 2 blocks

    browser = chromium.Browser(f"{url}?x=1", timeout=120)
    try:
        browser.evaluate(f"document.getElementById('seed').value = '{SEED}'; "
                         "document.getElementById('seed').dispatchEvent(new Event('input'))")
        first = rendered(browser, f"s.seed === {SEED}")
        assert first["psi"] == PSI and first["strengths"] == [0] * 5 and first["cutoff"] == 0
        before = canvas_pixels(browser)
        assert max_diff(before, want) <= 2
        assert re.fullmatch(r"\d+\.\d ms.*", browser.evaluate("document.getElementById('student-ms').textContent"))

        # Move direction 1's slider with the keyboard: 4 steps of 0.5 -> strength 2.
        browser.evaluate("document.getElementById('dir1').focus()")
        browser.press("ArrowRight", 39, times=4)
        edited = rendered(browser, "s.strengths[1] === 2")
        after = canvas_pixels(browser)
        assert max_diff(after, before) > 2, "the slider did not change the picture"
        assert max_diff(after, jax_image(student, SEED, PSI, [(directions[1], 2.0)])) <= 2
        assert max_diff(teacher_pixels(browser), jax_image(tiny_teacher, SEED, PSI, [(directions[1], 2.0)])) <= 2
        assert edited["strengths"] == [0, 2, 0, 0, 0]

        # Style mixing: ws [0, 3) from mix seed 1, with the edit still on.
        browser.evaluate("document.getElementById('cutoff').focus()")
        browser.press("ArrowRight", 39, times=3)
        rendered(browser, "s.cutoff === 3")
        mixed = jax_image(student, SEED, PSI, [(directions[1], 2.0)], mix=(1, 3))
        assert max_diff(canvas_pixels(browser), mixed) <= 2
        assert re.fullmatch(r"\d+\.\d ms", browser.evaluate("document.getElementById('teacher-ms').textContent"))
        shot = tmp_path / "explore.png"
        browser.screenshot(str(shot))
        assert Image.open(shot).size[0] > 500
    finally:
        browser.close()


@needs_assets
def test_api(url, tiny_teacher):
    def get(path):
        try:
            with urllib.request.urlopen(url + path, timeout=60) as r:
                return r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers

    status, body, _ = get("api/z?seed=7")
    assert status == 200
    np.testing.assert_array_equal(np.float32(json.loads(body)["z"]),
                                  np.random.RandomState(7).randn(16).astype(np.float32))
    info = json.loads(get("api/info")[1])
    t_cfg, t_vars = checkpoint.load_generator(tiny_teacher)
    np.testing.assert_allclose(info["directions"], sefa_directions(t_cfg, t_vars, "split", num_blocks=2)[:5])
    assert info["direction_source"] == "teacher" and info["num_ws"] == 6
    status, body, headers = get("api/teacher?seed=2&psi=0.5&strengths=0,1&mix=3&cutoff=2")
    assert status == 200 and body[:4] == b"\x89PNG" and float(headers["X-Generation-Ms"]) > 0
    for bad in ("api/teacher?seed=-1", "api/teacher?psi=nan", "api/teacher?cutoff=7", "api/z?seed=x",
                "api/teacher?strengths=1,2,3,4,5,6"):
        status, body, _ = get(bad)
        assert status == 400 and json.loads(body)["error"], bad
    assert get("vendor/../explore.py")[0] == 404 and get("models/other.onnx")[0] == 404
    assert get("vendor/ort-wasm-simd-threaded.wasm")[0] == 200


def test_missing_assets_name_the_setup_command(student, tmp_path, monkeypatch):
    monkeypatch.setattr(server, "PAGE_DIR", str(tmp_path))
    rc, err = run_main(["--student", student, "--port", "0"])
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and server.SETUP_COMMAND in err


@needs_assets
def test_bad_input_is_one_line(student, tiny_teacher, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for args, message in ((["--port", str(port)], f"port {port} on 127.0.0.1 is in use"),
                              (["--directions", "sefa:0-10"], "has 10 SeFa directions"),
                              (["--teacher", str(tmp_path / "none")], "--teacher: ")):
            rc, err = run_main(["--student", student, *args])
            assert rc == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    rc, err = run_main(["--student", student, "--port", "70000"])
    assert rc == 2 and "port number" in err
