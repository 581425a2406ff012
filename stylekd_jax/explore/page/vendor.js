// Copies the files the explorer page needs from the onnxruntime-web package into vendor/
// (run by `npm ci` as the postinstall step): the WebAssembly-only bundle, its module loader
// and the SIMD WebAssembly binary. vendor/ and node_modules/ are not committed.
const fs = require("fs");
const path = require("path");

const FILES = ["ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"];
const dist = path.join(__dirname, "node_modules", "onnxruntime-web", "dist");
const vendor = path.join(__dirname, "vendor");
fs.mkdirSync(vendor, { recursive: true });
for (const name of FILES) {
  fs.copyFileSync(path.join(dist, name), path.join(vendor, name));
}
console.log(`vendored ${FILES.join(", ")} into ${vendor}`);
