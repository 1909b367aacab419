// End-to-end test of the browser demo in Debian's chromium with a fake camera playing a y4m file.
//   node test/e2e.mjs --golden DIR --video FILE.y4m --out DIR [--chromium /usr/bin/chromium]
// DIR comes from android_demo/tools/make_golden.py (its bundle/ is served as the page's model). The video
// alternates two objects, each segment marked by a bright (A) or dark (B) square in the top-left corner,
// outside the centre crop the model sees. Prints "web-e2e: N passed, N failed"; exit 1 on a failure.
// The shot-aware calibration case of the golden vectors (golden.json "shot_offsets") is checked twice: in node
// against js/classstore.js directly, and in the page with its manifest swapped for one that has shot_offsets.
// The fleet case (golden.json "merge" "cases": merges by shot identity, idempotent): ClassStore.combine in node against
// Python's combine, bit for bit, and the page's "Merge .npz" (twice: the second adds nothing); the node-merged stores
// are written to --out for Python to read. The hostile stores (golden.json "hostile"): the same verdict as Python's
// read_store on each. The default unknown policy
// (golden.json "unknown"): the bundle's threshold or the fallback and the "unknown" alternative in the probabilities,
// in node against js/classstore.js and in the page (its own bundle has no threshold; then a manifest that has one).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import { ClassStore, FALLBACK_MIN_COSINE, ShotOffsets, bundleUnknownPolicy, evidenceTable } from "../js/classstore.js";
import { readNpy } from "../js/npz.js";
import { serve } from "./server.mjs";

const { values: args } = parseArgs({ options: {
  golden: { type: "string" }, video: { type: "string" }, out: { type: "string" },
  chromium: { type: "string", default: "/usr/bin/chromium" },
} });
const webRoot = join(dirname(fileURLToPath(import.meta.url)), "..");
const golden = JSON.parse(readFileSync(join(args.golden, "golden.json"), "utf8"));
const results = [];

async function check(name, fn) {
  try {
    await fn();
    results.push(true);
    console.log(`ok - ${name}`);
  } catch (err) {
    results.push(false);
    console.log(`FAIL - ${name}: ${err.message}`);
  }
}
function expect(cond, msg) { if (!cond) throw new Error(msg); }
const npy = (name) => readNpy(new Uint8Array(readFileSync(join(args.golden, name))), name).data;
const maxDiff = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
const unit = (e) => { const n = Math.hypot(...e); return e.map((v) => v / n); };
const rows = (name) => { const a = npy(name), d = golden.embedding_dim; return Array.from({ length: a.length / d }, (_, i) => Array.from(a.slice(i * d, (i + 1) * d))); };
const so = golden.shot_offsets;
const load = (name) => ClassStore.fromNpz(new Uint8Array(readFileSync(join(args.golden, name))), { name });
// Scores are cosine + offset: the page sums in double, NumPy in float32, so a few float32 ulps.
function samePredictions(got, want, what, tol = 2e-6) {
  expect(got.length === want.length, `${what}: ${got.length} answers, want ${want.length}`);
  want.forEach((w, i) => {
    const g = got[i];
    expect(JSON.stringify(g.labels) === JSON.stringify(w.labels), `${what} ${i}: labels ${JSON.stringify(g.labels)}, want ${JSON.stringify(w.labels)}`);
    const d = Math.max(maxDiff(g.cosines, w.cosines), maxDiff(g.probabilities, w.probabilities));
    expect(d <= tol, `${what} ${i}: scores/probabilities differ by ${d}`);
    expect(g.unknown === w.unknown && g.label === w.label, `${what} ${i}: unknown ${g.unknown} label ${g.label}, want ${w.unknown} ${w.label}`);
  });
}

// Pure JavaScript, before the browser starts: the classifier of js/classstore.js against Python.
await check("shot offsets: table, validation and predictions match Python (node)", async () => {
  const manifest = JSON.parse(readFileSync(join(args.golden, so.manifest), "utf8"));
  const offsets = ShotOffsets.fromManifest(manifest);
  expect(offsets.shots.join() === "1,2,5,10,20", `shots ${offsets.shots}`);
  expect(ShotOffsets.fromManifest(JSON.parse(readFileSync(join(args.golden, "manifest.json"), "utf8"))) === null, "an empty table is not none");
  const d = maxDiff(so.offset_counts.map((c) => offsets.offset(c)), so.offset_values);
  expect(d <= 1e-7, `offsets differ from Python's by ${d}`);
  for (const t of so.invalid_tables) {
    let err = null;
    try { ShotOffsets.fromMapping(t); } catch (e) { err = e; }
    expect(err && err.message.includes("shot_offsets"), `accepted shot_offsets ${JSON.stringify(t)}`);
  }
  const queries = rows("queries.npy");
  const store = ClassStore.fromNpz(new Uint8Array(readFileSync(join(args.golden, so.store))));
  samePredictions(queries.map((q) => store.classify(q, so.top_k)), so.predictions_raw, "raw");
  store.shotOffsets = offsets;
  samePredictions(queries.map((q) => store.classify(q, so.top_k)), so.predictions, "calibrated");
  const mine = new ClassStore(golden.embedding_dim, golden.scale, golden.fingerprint);
  mine.shotOffsets = offsets;
  rows("so_shots.npy").forEach((e, i) => mine.learn(so.shot_labels[i], [e]));
  samePredictions(queries.map((q) => mine.classify(q, so.top_k)), so.predictions, "imprinted in JS");
  mine.unknown = { minCosine: golden.unknown_policy.min_cosine, minMargin: golden.unknown_policy.min_margin };
  samePredictions(queries.map((q) => mine.classify(q, so.top_k)), so.predictions_unknown, "unknown");
  mine.unknown = bundleUnknownPolicy(manifest); // what the page opens this bundle with: the fallback
  samePredictions(queries.map((q) => mine.classify(q, so.top_k)), so.predictions_bundle, "the bundle's unknown policy");
  mine.unknown = { minCosine: null, minMargin: null };
  mine.learn(so.extra_label, rows("so_extra.npy"));
  samePredictions(queries.map((q) => mine.classify(q, so.top_k)), so.predictions_grown, "grown");
});

const un = golden.unknown;
await check("unknown policy: the bundle's threshold or the fallback, probabilities with unknown, as Python (node)", async () => {
  expect(FALLBACK_MIN_COSINE === un.fallback_min_cosine, `fallback ${FALLBACK_MIN_COSINE}, Python's ${un.fallback_min_cosine}`);
  const plain = JSON.parse(readFileSync(join(args.golden, "manifest.json"), "utf8"));
  const withCalibration = (c) => {
    const m = { ...plain };
    delete m.calibration;
    if ("calibration" in c) m.calibration = c.calibration;
    return m;
  };
  for (const c of un.cases) {
    const u = bundleUnknownPolicy(withCalibration(c));
    expect(u.minCosine === c.min_cosine && u.minMargin === null, `calibration ${JSON.stringify(c.calibration)}: ${u.minCosine}, want ${c.min_cosine}`);
    // The bundle's own threshold when Python took the manifest's value, else the fallback.
    const own = c.calibration != null && c.calibration.unknown_min_cosine === c.min_cosine;
    expect(u.calibrated === own, `calibration ${JSON.stringify(c.calibration)}: calibrated ${u.calibrated}`);
  }
  for (const r of un.refused) {
    let err = null;
    try { bundleUnknownPolicy(withCalibration(r)); } catch (e) { err = e; }
    expect(err && err.message.includes("'calibration'"), `accepted calibration ${JSON.stringify(r.calibration)}`);
  }
  const queries = rows("queries.npy");
  const store = load("store.npz");
  store.unknown = bundleUnknownPolicy(JSON.parse(readFileSync(join(args.golden, un.manifest), "utf8")));
  samePredictions(queries.map((q) => store.classify(q, un.top_k)), un.predictions, "calibrated bundle");
  store.unknown = bundleUnknownPolicy(plain);
  samePredictions(queries.map((q) => store.classify(q, un.top_k)), un.predictions_plain, "plain bundle");
  const single = load(un.single_store);
  expect(single.classify(queries[3], 3).probabilities[0] === 1, "one class without a threshold should take it all");
  single.unknown = bundleUnknownPolicy(JSON.parse(readFileSync(join(args.golden, un.manifest), "utf8")));
  samePredictions(queries.map((q) => single.classify(q, un.top_k)), un.predictions_single, "single class");
});

const us = un.by_shots;
await check("shot-aware unknown policy: tables, bars and decisions as Python, with and without shot offsets (node)", async () => {
  for (const t of us.tables) {
    const got = evidenceTable(t.table);
    if (t.parsed === null) { expect(got === null, `Python ignores the table ${JSON.stringify(t.table)}`); continue; }
    expect(got && got.shots.join() === t.parsed.shots.join() && got.offsets.join() === t.parsed.values.join(),
      `table ${JSON.stringify(t.table)}: ${got && got.offsets}`);
  }
  const m = JSON.parse(readFileSync(join(args.golden, us.manifest), "utf8"));
  const policy = bundleUnknownPolicy(m);
  expect(policy.minEvidenceByShots !== null, "the bundle's table was not read");
  const store = load(us.store);
  expect(store.labels.join() === us.labels.join(), `labels ${store.labels}`);
  us.labels.forEach((l, k) => {
    const bar = policy.minEvidenceByShots.offset(store.counts[k]) * store.counts[k] * store.invNorm(k);
    expect(Math.abs(bar - us.bars[k]) <= 1e-6, `bar of ${l}: ${bar}, want ${us.bars[k]}`);
  });
  store.unknown = policy;
  store.shotOffsets = ShotOffsets.fromManifest(m);
  const queries = rows(us.queries);
  samePredictions(queries.map((q) => store.classify(q, us.top_k)), us.predictions, "with shot offsets", 1e-5);
  queries.forEach((q, i) => {
    const t = store.classify(q, us.top_k).threshold;
    expect(Math.abs(t - us.thresholds[i]) <= 1e-6, `threshold ${i}: ${t}, want ${us.thresholds[i]}`);
  });
  store.shotOffsets = null;
  samePredictions(queries.map((q) => store.classify(q, us.top_k)), us.predictions_no_offsets, "without shot offsets", 1e-5);
});

const bits = (v) => Array.from(new Int32Array(Float32Array.from(v).buffer)).join();
/** The same classes bit for bit: labels, counts, float32 sums and shots, shot ids, the file's settings. */
function sameStore(got, want, what) {
  for (const key of ["labels", "counts"]) expect(got[key].join() === want[key].join(), `${what}: ${key} ${got[key]}, want ${want[key]}`);
  for (const key of ["dim", "scale", "fingerprint", "templatesPerClass"]) expect(got[key] === want[key], `${what}: ${key} ${got[key]}, want ${want[key]}`);
  want.labels.forEach((l, k) => {
    expect(bits(got.sums[k]) === bits(want.sums[k]), `${what}: the sum of ${l} differs by ${maxDiff(got.sums[k], want.sums[k])}`);
    expect(JSON.stringify(got.ids[k]) === JSON.stringify(want.ids[k]), `${what}: shot ids of ${l}`);
    expect(got.shots[k].map(bits).join(";") === want.shots[k].map(bits).join(";"), `${what}: shots of ${l}`);
  });
}

await check("merges stores by shot identity as Python does, bit for bit, the golden cases and random ones (node)", async () => {
  const m = golden.merge;
  for (const c of m.cases) {
    const inputs = c.inputs.map(load);
    const got = ClassStore.combine(inputs, c.rename);
    sameStore(got, load(c.store), c.name);
    samePredictions(rows("queries.npy").map((q) => got.classify(q, m.top_k)), c.predictions, c.name);
    sameStore(inputs[0], load(c.inputs[0]), `${c.name}: the first input afterwards`);
    sameStore(ClassStore.fromNpz(got.toNpz()), got, `${c.name} after a round trip`);
    writeFileSync(join(args.out, `web_${c.name}.npz`), got.toNpz());
  }
  expect(m.fuzz.length >= 40, `${m.fuzz.length} random merges`);
  for (const c of m.fuzz) sameStore(ClassStore.combine(c.inputs.map(load), c.rename), load(c.store), c.store);
  for (const r of m.refused) {
    let err = null;
    try { ClassStore.combine([load(m.stores[0]), load(r.store)]); } catch (e) { err = e; }
    expect(err && err.message === r.error, `${r.store}: refused with ${err && err.message}, want ${r.error}`);
  }
});

await check("accepts and refuses the golden hostile stores as Python does (node)", async () => {
  expect(golden.hostile.length >= 40, `${golden.hostile.length} hostile stores`);
  for (const c of golden.hostile) {
    let verdict = null;
    try { load(c.store); } catch (e) { verdict = e.message; }
    expect(c.accepted === (verdict === null), `${c.name}: Python says ${c.error}, JavaScript ${verdict}`);
    expect(verdict === null || !verdict.includes("\n"), `${c.name}: not one line: ${verdict}`);
  }
});

const server = await serve(webRoot, golden.bundle);
const url = `http://127.0.0.1:${server.address().port}/index.html?bundle=/bundle/`;
const profile = mkdtempSync(join(tmpdir(), "imprint-chromium-"));
const launch = () => chromium.launchPersistentContext(profile, {
  executablePath: args.chromium,
  headless: true,
  viewport: { width: 1000, height: 700 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    `--use-file-for-fake-video-capture=${args.video}`,
  ],
});
let context = await launch();
let page = await context.newPage();
const logs = [];
page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));

// Which object the fake camera shows now: the corner marker's brightness (the page itself never looks there).
const segment = () => page.evaluate(() => {
  const v = document.getElementById("video");
  const c = Object.assign(document.createElement("canvas"), { width: v.videoWidth, height: v.videoHeight });
  const ctx = c.getContext("2d");
  ctx.drawImage(v, 0, 0);
  const p = ctx.getImageData(Math.floor(v.videoWidth * 0.04), Math.floor(v.videoHeight * 0.05), 1, 1).data;
  return p[0] > 128 ? "A" : "B";
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Waits until the video has just switched to segment `want`, so that a whole segment lies ahead. */
async function waitForStartOf(want) {
  let prev = await segment();
  for (let t = 0; t < 400; t++) {
    await sleep(25);
    const now = await segment();
    if (now === want && prev !== want) return;
    prev = now;
  }
  throw new Error(`the video never switched to segment ${want}`);
}
const state = () => page.evaluate(() => window.imprintDemo.state());

async function teach(label, seg) {
  await page.fill("#name", label);
  await page.fill("#shots", "5");
  await waitForStartOf(seg);
  await page.locator("#add").hover();
  await page.mouse.down();
  // Capturing ends by itself after 5 frames; the class then exists (polling for "capturing" could miss it).
  await page.waitForFunction((l) => { const s = window.imprintDemo.state(); return !s.capturing && s.labels.includes(l); },
    label, { timeout: 10000 });
  await page.mouse.up();
}

try {
  await check("page loads the bundle and the camera", async () => {
    await page.goto(url);
    await page.evaluate(() => window.imprintDemo.ready);
    await page.waitForFunction(() => window.imprintDemo.state().frames > 3, null, { timeout: 15000 });
    const text = await page.textContent("#status");
    expect(text.includes(golden.extractor), `status says ${text}`);
    // The test bundle carries no unknown threshold: the page uses the fallback, and says so.
    const u = (await state()).unknown;
    expect(u.minCosine === un.fallback_min_cosine && u.minMargin === null, `unknown policy ${JSON.stringify(u)}`);
    expect(text.includes(`unknown below ${un.fallback_min_cosine.toFixed(2)} (default`), `status says ${text}`);
  });

  await check("preprocessing and embedding match Python on the golden frames", async () => {
    const out = {};
    for (const f of golden.frames) {
      const rgb = readFileSync(join(args.golden, `frame_${f.name}.rgb`)).toString("base64");
      const x = await page.evaluate(([b, w, h]) => window.imprintDemo.preprocessRgb(b, w, h), [rgb, f.width, f.height]);
      const e = await page.evaluate(([b, w, h]) => window.imprintDemo.embedRgb(b, w, h), [rgb, f.width, f.height]);
      out[f.name] = e;
      const level = 1 / 255 / 0.5;
      const dx = maxDiff(x, npy(`input_${f.name}.npy`));
      const de = maxDiff(unit(e), npy(`embedding_${f.name}.npy`));
      // Exact frames: the same float32 tensor, so only the runtimes' kernels differ. Resampled ones: a grey level.
      expect(f.resampled ? dx <= 1.01 * level : dx <= 1e-6, `${f.name}: input differs by ${dx}`);
      expect(f.resampled ? de <= 0.02 : de <= 1e-5, `${f.name}: embedding differs by ${de}`);
    }
    writeFileSync(join(args.out, "web_embeddings.json"), JSON.stringify(out));
  });

  await check("teaches two classes from the camera", async () => {
    await teach("stripes", "A");
    await teach("checks", "B");
    const s = await state();
    expect(JSON.stringify(s.labels) === '["stripes","checks"]', `classes ${JSON.stringify(s.labels)}`);
    expect(s.counts.every((c) => c === 5), `counts ${s.counts}`);
  });

  await check("predicts the object in view", async () => {
    for (const [seg, label] of [["A", "stripes"], ["B", "checks"], ["A", "stripes"]]) {
      await waitForStartOf(seg);
      await sleep(500);
      for (let i = 0; i < 3; i++) {
        const p = (await state()).prediction;
        expect(p && p.label === label, `segment ${seg}: predicted ${JSON.stringify(p)}`);
        await sleep(150);
      }
    }
    expect((await page.textContent("#fps")).includes("FPS"), "no FPS shown");
    await page.screenshot({ path: join(args.out, "screenshot.png") });
  });

  await check("exports the store as .npz", async () => {
    writeFileSync(join(args.out, "web_store.npz"), Buffer.from(await page.evaluate(() => window.imprintDemo.exportNpz()), "base64"));
    const download = page.waitForEvent("download");
    await page.click("#export");
    await (await download).saveAs(join(args.out, "web_download.npz"));
  });

  await check("classes persist across a restart", async () => {
    await context.close();
    context = await launch();
    page = await context.newPage();
    await page.goto(url);
    await page.evaluate(() => window.imprintDemo.ready);
    const s = await state();
    expect(JSON.stringify(s.labels) === '["stripes","checks"]', `after restart: ${JSON.stringify(s.labels)}`);
  });

  await check("renames and deletes classes from the list", async () => {
    await page.locator("#classes li").nth(1).locator("input").fill("Karo ß");
    await page.locator("#classes li").nth(1).locator("button.rename").click();
    await page.locator("#classes li").nth(0).locator("button.delete").click();
    await page.waitForFunction(() => window.imprintDemo.state().labels.join() === "Karo ß", null, { timeout: 3000 });
    await page.locator("#classes li").nth(0).locator("input").fill("   ");
    await page.locator("#classes li").nth(0).locator("button.rename").click();
    expect((await page.textContent("#status")).includes("must not be empty"), "an empty name was not refused");
  });

  await check("imports a store written by Python", async () => {
    await page.setInputFiles("#import", join(args.golden, "store.npz"));
    await page.waitForFunction(() => window.imprintDemo.state().labels.join() === "red,green,blue", null, { timeout: 3000 });
  });

  await check("merges a store from another device into the page's classes", async () => {
    const want = ClassStore.combine([load("store.npz"), load("merge_b.npz")]);
    await page.setInputFiles("#merge", join(args.golden, "merge_b.npz"));
    await page.waitForFunction((l) => window.imprintDemo.state().labels.join() === l, want.labels.join(), { timeout: 3000 });
    const got = ClassStore.fromNpz(new Uint8Array(Buffer.from(await page.evaluate(() => window.imprintDemo.exportNpz()), "base64")));
    sameStore(got, want, "page");
    // The same store again adds nothing (the status says so once the merge is done).
    await page.setInputFiles("#merge", []);
    await page.setInputFiles("#merge", join(args.golden, "merge_b.npz"));
    await page.waitForFunction(() => document.getElementById("status").textContent.includes("nothing new"), null, { timeout: 3000 });
    const again = ClassStore.fromNpz(new Uint8Array(Buffer.from(await page.evaluate(() => window.imprintDemo.exportNpz()), "base64")));
    sameStore(again, want, "page, merged twice");
    await page.setInputFiles("#merge", join(args.golden, "merge_other_model.npz"));
    await page.waitForFunction(() => document.getElementById("status").textContent.includes("was made with extractor"), null, { timeout: 3000 });
    expect((await state()).labels.join() === want.labels.join(), "a store of another model changed the classes");
  });

  await check("applies the bundle's shot offsets as Python does", async () => {
    // The same bundle, its manifest swapped for the one with a shot_offsets table.
    await page.route("**/bundle/manifest.json", (r) => r.fulfill({ path: join(args.golden, so.manifest), contentType: "application/json" }));
    await page.goto(url);
    await page.evaluate(() => window.imprintDemo.ready);
    const text = await page.textContent("#status");
    expect(text.includes("shot-calibrated"), `status says ${text}`);
    await page.setInputFiles("#import", join(args.golden, so.store));
    await page.waitForFunction(() => window.imprintDemo.state().labels.join() === "red,green,blue,yellow", null, { timeout: 3000 });
    const got = await page.evaluate(([qs, k]) => qs.map((q) => window.imprintDemo.classify(q, k)), [rows("queries.npy"), so.top_k]);
    // The page also applies the bundle's unknown policy (here the fallback), as Python's Recognizer does.
    samePredictions(got, so.predictions_bundle, "page");
  });

  await check("applies the bundle's unknown threshold as Python does", async () => {
    await page.unroute("**/bundle/manifest.json");
    await page.route("**/bundle/manifest.json", (r) => r.fulfill({ path: join(args.golden, un.manifest), contentType: "application/json" }));
    await page.goto(url);
    await page.evaluate(() => window.imprintDemo.ready);
    const t = un.cases[0].min_cosine;
    const text = await page.textContent("#status");
    expect(text.includes(`unknown below ${t.toFixed(2)}`) && !text.includes("(default"), `status says ${text}`);
    await page.setInputFiles("#import", join(args.golden, "store.npz"));
    await page.waitForFunction(() => window.imprintDemo.state().labels.join() === "red,green,blue", null, { timeout: 3000 });
    expect((await state()).unknown.minCosine === t, `the imported store's threshold is ${(await state()).unknown.minCosine}`);
    const got = await page.evaluate(([qs, k]) => qs.map((q) => window.imprintDemo.classify(q, k)), [rows("queries.npy"), un.top_k]);
    samePredictions(got, un.predictions, "page");
  });
} finally {
  await context.close();
  server.close();
  rmSync(profile, { recursive: true, force: true });
}
const failed = results.filter((r) => !r).length;
if (failed) console.log(logs.slice(-20).join("\n"));
console.log(`web-e2e: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
