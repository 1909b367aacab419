// The page: the bundle's ONNX extractor in onnxruntime-web, the camera, "Add class" and live predictions.
// window.imprintDemo exposes the same steps to tests (embedding parity, exported store).
import * as ort from "../node_modules/onnxruntime-web/dist/ort.wasm.min.mjs";
import { ClassStore, ShotOffsets, bundleUnknownPolicy, validateLabel } from "./classstore.js";
import { sameBits } from "./storecheck.js";
import { loadBytes, saveBytes } from "./db.js";
import { preprocess } from "./preprocess.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const bundleUrl = new URL(params.get("bundle") || "bundle/", location.href);
ort.env.wasm.wasmPaths = new URL("../node_modules/onnxruntime-web/dist/", import.meta.url).href;
// One thread: threads need cross-origin isolation headers that a plain static server does not send.
ort.env.wasm.numThreads = 1;

const state = { manifest: null, shotOffsets: null, unknown: null, session: null, layout: "NCHW", store: null, capture: null, prediction: null, fps: 0, frames: 0 };

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").style.color = isError ? "#ff9b8f" : "";
}

async function loadModel() {
  const manifest = await (await fetch(new URL("manifest.json", bundleUrl))).json();
  if (manifest.format !== "imprinting-bundle" || manifest.format_version !== 1) throw new Error("not a version 1 imprinting bundle");
  const shotOffsets = ShotOffsets.fromManifest(manifest); // shot-aware calibration, or null
  const unknown = bundleUnknownPolicy(manifest); // the bundle's unknown threshold, or the fallback
  const order = ["int8", "fp32"];
  const entry = manifest.extractors.filter((e) => e.format === "onnx").sort((a, b) => order.indexOf(a.precision) - order.indexOf(b.precision))[0];
  if (!entry) throw new Error("the bundle has no ONNX extractor; export one with `imprint export`");
  const model = new Uint8Array(await (await fetch(new URL(entry.file, bundleUrl))).arrayBuffer());
  state.session = await ort.InferenceSession.create(model, { executionProviders: ["wasm"] });
  state.manifest = manifest;
  state.shotOffsets = shotOffsets;
  state.unknown = unknown;
  state.layout = entry.layout || "NCHW";
  state.entry = entry;
}

/** Model input (float32) -> raw embedding (Float32Array D). */
async function embedTensor(x) {
  const s = state.manifest.preprocess.input_size;
  const dims = state.layout === "NCHW" ? [1, 3, s, s] : [1, s, s, 3];
  const out = await state.session.run({ [state.session.inputNames[0]]: new ort.Tensor("float32", x, dims) });
  return out[state.session.outputNames[0]].data;
}

async function embedPixels(pixels, w, h, channels) {
  return embedTensor(preprocess(pixels, w, h, channels, state.manifest.preprocess, state.layout));
}

const storeKey = () => `classes:${state.manifest.fingerprint}`;

/**
 * A store read from .npz bytes (or a new empty one) for this bundle, calibrated by the bundle's shot offsets and
 * answering "unknown" below the bundle's threshold (as the Python runtime's Recognizer does by default).
 */
function openStore(bytes, name) {
  const m = state.manifest;
  const st = bytes ? ClassStore.fromNpz(bytes, { expectedFingerprint: m.fingerprint, expectedDim: m.embedding_dim, name })
    : new ClassStore(m.embedding_dim, m.scale, m.fingerprint);
  st.shotOffsets = state.shotOffsets;
  st.unknown = { minCosine: state.unknown.minCosine, minMargin: state.unknown.minMargin,
    minEvidenceByShots: state.unknown.minEvidenceByShots };
  return st;
}

async function loadStore() {
  state.store = openStore(await loadBytes(storeKey()));
}

async function saveStore() {
  await saveBytes(storeKey(), state.store.toNpz());
  renderClasses();
}

function renderClasses() {
  const ul = $("classes");
  ul.replaceChildren();
  state.store.labels.forEach((label, k) => {
    const li = document.createElement("li");
    const input = Object.assign(document.createElement("input"), { value: label, ariaLabel: `name of class ${label}` });
    const n = Object.assign(document.createElement("span"), { className: "n", textContent: `${state.store.counts[k]} shots` });
    const rename = Object.assign(document.createElement("button"), { className: "small rename", textContent: "Rename", type: "button" });
    const del = Object.assign(document.createElement("button"), { className: "small delete", textContent: "Delete", type: "button" });
    rename.onclick = () => edit(() => state.store.rename(label, input.value));
    del.onclick = () => edit(() => state.store.remove(label));
    li.append(input, n, rename, del);
    ul.append(li);
  });
  $("count").textContent = `(${state.store.labels.length})`;
}

async function edit(change) {
  try {
    change();
    await saveStore();
  } catch (err) {
    status(err.message, true);
  }
}

function startCapture() {
  const name = $("name").value;
  try {
    if (!name.trim()) throw new Error("name the class first");
    const label = validateLabel(name);
    const n = Math.max(1, Math.min(100, Number($("shots").value) || 10));
    state.capture = { label, n, shots: [] };
    $("progress").max = n;
    $("add").classList.add("capturing");
  } catch (err) {
    status(err.message, true);
  }
}

async function finishCapture() {
  const c = state.capture;
  state.capture = null;
  $("add").classList.remove("capturing");
  $("progress").value = 0;
  if (!c || !c.shots.length) return;
  await edit(() => state.store.learn(c.label, c.shots));
  status(`Learned "${c.label}" from ${c.shots.length} frames`);
}

/** The top label, or "unknown" with the nearest class: either way the top score (cosine) stays visible. */
function showPrediction(p) {
  state.prediction = p;
  $("label").textContent = p ? (p.label ?? "unknown") : "—";
  $("score").textContent = !p ? "" : p.unknown ? `${p.cosines[0].toFixed(2)} < ${(p.threshold ?? state.unknown.minCosine).toFixed(2)} (${p.labels[0]})`
    : p.cosines[0].toFixed(2);
  $("topk").replaceChildren(...(p ? p.labels.map((l, i) => Object.assign(document.createElement("li"),
    { textContent: `${l}  ${(100 * p.probabilities[i]).toFixed(0)}%` })) : []));
}

async function loop(canvas, ctx) {
  const video = $("video");
  let last = performance.now();
  for (;;) {
    await new Promise((r) => requestAnimationFrame(r));
    if (video.readyState < 2 || !video.videoWidth) continue;
    const w = video.videoWidth, h = video.videoHeight;
    if (canvas.width !== w || canvas.height !== h) Object.assign(canvas, { width: w, height: h });
    ctx.drawImage(video, 0, 0, w, h);
    const e = await embedPixels(ctx.getImageData(0, 0, w, h).data, w, h, 4);
    const c = state.capture;
    // A frame the camera repeated (the loop can outrun it) is the same shot: the store would count it once.
    if (c && !c.shots.some((s) => sameBits(s, e))) {
      c.shots.push(e);
      $("progress").value = c.shots.length;
      if (c.shots.length >= c.n) await finishCapture();
    }
    showPrediction(state.store.labels.length ? state.store.classify(e, 3) : null);
    const now = performance.now();
    state.fps = 0.9 * state.fps + 0.1 * (1000 / Math.max(1, now - last));
    last = now;
    state.frames++;
    $("fps").textContent = `${state.fps.toFixed(0)} FPS`;
  }
}

function wireUi() {
  const add = $("add");
  add.addEventListener("pointerdown", startCapture);
  for (const ev of ["pointerup", "pointerleave", "pointercancel"]) add.addEventListener(ev, () => { if (state.capture) finishCapture(); });
  $("export").onclick = () => {
    const url = URL.createObjectURL(new Blob([state.store.toNpz()], { type: "application/octet-stream" }));
    Object.assign($("download"), { href: url }).click();
  };
  $("import").onchange = async (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    try {
      state.store = openStore(new Uint8Array(await file.arrayBuffer()), file.name);
      await saveStore();
      status(`Imported ${state.store.labels.length} classes from ${file.name}`);
    } catch (err) {
      status(err.message, true);
    }
  };
  // Another device's store (same model): the same label becomes one class holding each shot once (merging the same
  // store again adds nothing), new labels are added.
  $("merge").onchange = async (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    try {
      const incoming = openStore(new Uint8Array(await file.arrayBuffer()), file.name);
      const before = state.store.labels.length, shots = state.store.counts.reduce((a, b) => a + b, 0);
      state.store = ClassStore.combine([state.store, incoming]);
      await saveStore();
      const added = state.store.counts.reduce((a, b) => a + b, 0) - shots;
      status(added ? `Merged ${incoming.labels.length} classes from ${file.name}: ${state.store.labels.length - before} new, ${added} shots added`
        : `Merged ${file.name}: nothing new (every shot is here already)`);
    } catch (err) {
      status(err.message, true);
    }
  };
}

const b64 = (bytes) => btoa(Array.from(bytes, (c) => String.fromCharCode(c)).join(""));

async function main() {
  wireUi();
  await loadModel();
  await loadStore();
  renderClasses();
  const u = state.unknown;
  status(`${state.manifest.name}: ${state.entry.file}, ${state.manifest.embedding_dim}-d${state.shotOffsets ? ", shot-calibrated" : ""}, `
    + (u.minEvidenceByShots ? `unknown below evidence ${u.minEvidenceByShots.shots.map((n, i) => `${u.minEvidenceByShots.offsets[i].toFixed(2)} at ${n} shot${n > 1 ? "s" : ""}`).join(", ")}`
      : `unknown below ${u.minCosine.toFixed(2)}${u.calibrated ? "" : " (default: the bundle carries no threshold)"}`));
  $("add").disabled = false;
  const canvas = document.createElement("canvas");
  try {
    $("video").srcObject = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
    loop(canvas, canvas.getContext("2d", { willReadFrequently: true }));
  } catch (err) {
    status(`No camera: ${err.message}`, true);
  }
}

const ready = main().catch((err) => { status(err.message, true); throw err; });
window.imprintDemo = {
  ready,
  state: () => ({ labels: [...state.store.labels], counts: [...state.store.counts], prediction: state.prediction, frames: state.frames,
    capturing: !!state.capture, unknown: { ...state.store.unknown } }),
  embedRgb: async (b64rgb, w, h) => Array.from(await embedPixels(Uint8Array.from(atob(b64rgb), (c) => c.charCodeAt(0)), w, h, 3)),
  preprocessRgb: (b64rgb, w, h) => Array.from(preprocess(Uint8Array.from(atob(b64rgb), (c) => c.charCodeAt(0)), w, h, 3, state.manifest.preprocess, state.layout)),
  exportNpz: () => b64(state.store.toNpz()),
  classify: (embedding, topK) => state.store.classify(embedding, topK),
};
