"use strict";
// The explorer page. The student's mapping (z -> w) and synthesis (ws -> image) run here, in
// onnxruntime-web's WebAssembly backend; truncation, style mixing and the SeFa edits repeat
// stylekd_jax/latents.py, in float32 like numpy:
//   ws = w_avg + psi * (w - w_avg)                  every layer
//   layers [0, cutoff) from the mix seed's ws       (cutoff 0: no mixing)
//   ws = ws + strength_k * direction_k              every layer, directions in order
// A seed's z comes from the server (numpy's RandomState(seed).randn, as `generate`); the
// teacher's image, when shown, is rendered by the server for the same settings.

const f32 = Math.fround;
const MAX_SEED = 4294967295;
const page = { info: null, mapping: null, synthesis: null, w: new Map(), busy: false, again: false,
               renders: 0, mappingMs: 0, teacherUrl: null };
const $ = (id) => document.getElementById(id);

function seedOf(text) {
  const value = Math.floor(Number(text));
  return Number.isFinite(value) ? Math.min(Math.max(value, 0), MAX_SEED) : 0;
}

function settings() {
  return {
    seed: seedOf($("seed").value),
    psi: Number($("psi").value),
    strengths: page.info.directions.map((_, k) => Number($(`dir${k}`).value)),
    mix: seedOf($("mix-seed").value),
    cutoff: Number($("cutoff").value),
  };
}

async function fetchJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  return response.json();
}

// The student's w of a seed (mapping run here), cached per seed.
async function wOf(seed) {
  if (!page.w.has(seed)) {
    const { z } = await fetchJson(`api/z?seed=${seed}`);
    const start = performance.now();
    const out = await page.mapping.run({ z: new ort.Tensor("float32", Float32Array.from(z), [1, z.length]) });
    page.mappingMs += performance.now() - start;
    page.w.set(seed, Float32Array.from(out[page.mapping.outputNames[0]].data));
  }
  return page.w.get(seed);
}

function truncated(w, psi) {
  const avg = page.info.w_avg, p = f32(psi);
  return w.map((v, j) => f32(avg[j] + f32(p * f32(v - avg[j]))));
}

function buildWs(s, w, wMix) {
  const { num_ws: numWs, w_dim: wDim, directions } = page.info;
  const base = truncated(w, s.psi), mixed = truncated(wMix, s.psi);
  const ws = new Float32Array(numWs * wDim);
  for (let layer = 0; layer < numWs; layer++) {
    const source = layer < s.cutoff ? mixed : base;
    for (let j = 0; j < wDim; j++) {
      let v = source[j];
      for (let k = 0; k < directions.length; k++) {
        if (s.strengths[k]) v = f32(v + f32(f32(s.strengths[k]) * directions[k][j]));
      }
      ws[layer * wDim + j] = v;
    }
  }
  return ws;
}

// Raw NHWC float output -> canvas pixels, as NVlabs: floor(clip(x * 127.5 + 128, 0, 255)).
function draw(tensor) {
  const [, height, width, channels] = tensor.dims;
  const canvas = $("student");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  const pixels = ctx.createImageData(width, height);
  const data = tensor.data;
  for (let i = 0; i < width * height; i++) {
    for (let c = 0; c < 3; c++) {
      const x = data[i * channels + (channels === 1 ? 0 : c)];
      pixels.data[i * 4 + c] = Math.floor(Math.min(Math.max(f32(f32(x * 127.5) + 128), 0), 255));
    }
    pixels.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(pixels, 0, 0);
}

async function renderStudent(s) {
  page.mappingMs = 0;
  const w = await wOf(s.seed);
  const wMix = s.cutoff > 0 ? await wOf(s.mix) : w;
  const ws = buildWs(s, w, wMix);
  const { num_ws: numWs, w_dim: wDim } = page.info;
  const start = performance.now();
  const out = await page.synthesis.run({ ws: new ort.Tensor("float32", ws, [1, numWs, wDim]) });
  const ms = performance.now() - start;
  draw(out[page.synthesis.outputNames[0]]);
  $("student-ms").textContent = `${ms.toFixed(1)} ms` +
    (page.mappingMs ? ` (+ ${page.mappingMs.toFixed(1)} ms mapping a new seed)` : "");
}

async function renderTeacher(s) {
  if (!page.info.teacher) return;
  const query = new URLSearchParams({ seed: s.seed, psi: s.psi, strengths: s.strengths.join(","),
                                      mix: s.mix, cutoff: s.cutoff });
  const response = await fetch(`api/teacher?${query}`);
  if (!response.ok) throw new Error(`teacher: ${response.status} ${await response.text()}`);
  const ms = response.headers.get("X-Generation-Ms");
  const url = URL.createObjectURL(await response.blob());
  const img = $("teacher");
  await new Promise((resolve, reject) => { img.onload = resolve; img.onerror = reject; img.src = url; });
  if (page.teacherUrl) URL.revokeObjectURL(page.teacherUrl);
  page.teacherUrl = url;
  $("teacher-ms").textContent = `${ms} ms`;
}

function showValues(s) {
  $("psi-value").textContent = s.psi.toFixed(2);
  $("cutoff-value").textContent = String(s.cutoff);
  s.strengths.forEach((v, k) => { $(`dir${k}-value`).textContent = v.toFixed(1); });
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
  if (isError) document.body.dataset.error = text;
  else delete document.body.dataset.error;
}

// Renders the current settings; input arriving meanwhile is rendered right after (latest only).
async function update() {
  if (page.busy) { page.again = true; return; }
  page.busy = true;
  document.body.dataset.busy = "1";
  try {
    do {
      page.again = false;
      const s = settings();
      showValues(s);
      await Promise.all([renderStudent(s), renderTeacher(s)]);
      page.renders += 1;
      document.body.dataset.settings = JSON.stringify(s);
      document.body.dataset.renders = String(page.renders);
    } while (page.again);
    setStatus("");
  } catch (e) {
    setStatus(`error: ${e.message || e}`, true);
  } finally {
    page.busy = false;
    document.body.dataset.busy = "0";
  }
}

function buildControls() {
  const info = page.info;
  const box = $("directions");
  info.directions.forEach((_, k) => {
    const label = document.createElement("label");
    label.innerHTML = `direction ${info.direction_indices[k]} <input id="dir${k}" type="range" min="-10" ` +
      `max="10" step="0.5" value="0"> <output id="dir${k}-value">0.0</output>`;
    box.appendChild(label);
  });
  $("cutoff").max = String(info.num_ws);
  $("teacher-figure").hidden = !info.teacher;
  $("about").textContent = `${info.resolution}x${info.resolution} student ${info.student_path}` +
    (info.teacher ? `, teacher ${info.teacher_path}` : "") +
    `; SeFa directions of the ${info.direction_source} (split/global as set on the command line); ` +
    `edits move every w by strength x unit direction, as in distillation.`;
}

// Called once the networks are loaded: from then on every change renders.
function listen() {
  const info = page.info;
  for (const input of document.querySelectorAll("#controls input")) input.addEventListener("input", update);
  $("random-seed").addEventListener("click", () => { $("seed").value = Math.floor(Math.random() * 100000); update(); });
  $("reset").addEventListener("click", () => {
    info.directions.forEach((_, k) => { $(`dir${k}`).value = "0"; });
    $("cutoff").value = "0";
    update();
  });
}

async function main() {
  ort.env.wasm.wasmPaths = new URL("vendor/", location.href).href;
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  page.info = await fetchJson("api/info");
  buildControls();
  const options = { executionProviders: ["wasm"] };
  page.mapping = await ort.InferenceSession.create("models/mapping.onnx", options);
  page.synthesis = await ort.InferenceSession.create("models/synthesis.onnx", options);
  document.body.dataset.threads = String(ort.env.wasm.numThreads);
  listen();
  await update();
}

main().catch((e) => setStatus(`error: ${e.message || e}`, true));
