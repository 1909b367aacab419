// Unit tests of js/classstore.js, js/classmerge.js and js/storecheck.js in node (no browser, no golden vectors):
// merges by shot identity (idempotent, exact), shot ids through edits and files, and hostile stores refused with one
// line. The same cases as the Java core's MergeTest and StoreCheckTest.
//   node test/classstore.test.mjs      prints "web-unit: N passed, N failed"; exit 1 on a failure
import { ClassStore, validateLabel } from "../js/classstore.js";
import { formatG } from "../js/classmerge.js";
import { writeNpy, writeZip } from "../js/npz.js";

const results = [];
function check(name, fn) {
  try {
    fn();
    results.push(true);
    console.log(`ok - ${name}`);
  } catch (err) {
    results.push(false);
    console.log(`FAIL - ${name}: ${err.stack}`);
  }
}
function expect(cond, msg) { if (!cond) throw new Error(msg); }
const bits = (v) => Array.from(new Int32Array(Float32Array.from(v).buffer)).join();
const eq = (a, b, what) => expect(JSON.stringify(a) === JSON.stringify(b), `${what}: ${JSON.stringify(a)}, want ${JSON.stringify(b)}`);
function throwsLine(fn, part, what) {
  let err = null;
  try { fn(); } catch (e) { err = e; }
  expect(err, `${what}: accepted`);
  expect(err.message.includes(part), `${what}: "${err.message}" lacks "${part}"`);
  expect(!err.message.includes("\n"), `${what}: not one line: ${err.message}`);
}

/** The same classes bit for bit: labels, counts, float32 sums and shots, ids, settings. */
function identical(got, want, what) {
  eq(got.labels, want.labels, `${what}: labels`);
  eq(got.counts, want.counts, `${what}: counts`);
  for (const key of ["dim", "scale", "fingerprint", "templatesPerClass"]) expect(got[key] === want[key], `${what}: ${key}`);
  want.labels.forEach((l, k) => {
    expect(bits(got.sums[k]) === bits(want.sums[k]), `${what}: the sum of ${l}`);
    eq(got.ids[k], want.ids[k], `${what}: ids of ${l}`);
    expect(got.shots[k].map(bits).join(";") === want.shots[k].map(bits).join(";"), `${what}: shots of ${l}`);
  });
}

const unitRow = (...v) => { const n = Math.hypot(...v); return Float32Array.from(v, (x) => x / n); };
const P1 = unitRow(1, 0.1, 0), P2 = unitRow(0.9, 0.3, 0.1), P3 = unitRow(1, -0.2, 0.3), Q1 = unitRow(0, 1, 0.2);
const BASE = [40, 3, -1];

/** A store of hand-made rows {label, count, sum, shots, ids} (a residual is the count not kept as shots). */
function store(scale, templates, ...rows) {
  const s = new ClassStore(3, scale, "fp");
  s.templatesPerClass = templates;
  s.setRows(rows.map((r) => ({ label: r.label, count: r.count, sum: Float32Array.from(r.sum), shots: r.shots || [], ids: r.ids || [] })));
  return s;
}
function phone() {
  const s = store(10, 1, { label: "base", count: 50, sum: BASE });
  s.learn("cat", [P1, P2], ["p1", "p2"]);
  s.learn("dog", [Q1]);
  s.merge(store(10, 1, { label: "mixed", count: 4, sum: [1.5, 1.2, 0.3], shots: [P3], ids: ["p3"] }));
  return s;
}

check("merging a store into itself changes nothing", () => {
  const a = phone();
  identical(ClassStore.combine([a, a]), a, "combine");
  identical(ClassStore.combine([a, a], true), a, "combine renamed");
  const b = a.copy();
  b.merge(b);
  identical(b, a, "in place");
  const back = ClassStore.fromNpz(a.toNpz());
  identical(back, a, "after a file");
  identical(ClassStore.combine([a, back, a]), a, "three");
});

check("importing twice equals importing once", () => {
  const a = phone(), b = store(10, 1);
  b.learn("cat", [P2, P3], ["p2", "p4"]);
  b.learn("owl", [Q1], ["o1"]);
  for (const rename of [false, true]) {
    const once = ClassStore.combine([a, b], rename);
    identical(ClassStore.combine([a, b, b], rename), once, `twice (rename ${rename})`);
    identical(ClassStore.combine([once, once], rename), once, `self (rename ${rename})`);
  }
});

check("exporting a subset and importing it back is the identity", () => {
  const a = phone(), part = a.copy();
  part.remove("dog");
  part.remove("base");
  identical(ClassStore.combine([a, part]), a, "merge");
  identical(ClassStore.combine([a, part], true), a, "merge renamed");
  const renamed = a.copy();
  renamed.rename("cat", "Katze");
  renamed.merge(part);
  eq(renamed.labels, ["base", "Katze", "dog", "mixed", "cat"], "labels");
  eq(renamed.ids[1], ["p1", "p2"], "Katze's ids");
});

check("new shots add exactly, in float64 rounded once", () => {
  const a = phone(), b = store(10, 1);
  expect(b.learn("cat", [unitRow(0.9, 0.3, 0.11), P3, P3], ["p2", "p4", "p4"]) === 2, "a repeated id was taught twice");
  b.learn("dog", [Q1, P1], [null, null]);
  b.learn("zebra", [P2]);
  const m = ClassStore.combine([a, b]);
  eq(m.labels, ["base", "cat", "dog", "mixed", "zebra"], "labels");
  eq(m.counts, [50, 3, 2, 4, 1], "counts");
  eq(m.ids[1], ["p1", "p2", "p4"], "cat's ids");
  const p4 = b.shots[0][1];
  expect(bits(m.sums[1]) === bits(a.sums[1].map((v, i) => v + p4[i])), "cat's sum is not float32(float64 sum)");
  eq(m.ids[2], [null, null], "dog's ids");
  identical(a, phone(), "the input afterwards");
});

check("residuals add only when they differ", () => {
  const a = phone(), b = store(10, 1, { label: "base", count: 50, sum: BASE });
  b.learn("base", [P1], ["b1"]);
  const m = ClassStore.combine([a, b]);
  eq([m.counts[0], m.ids[0]], [51, ["b1"]], "base");
  identical(ClassStore.combine([m, b]), m, "again");
  identical(ClassStore.combine([a, store(10, 1, { label: "base", count: 50, sum: [BASE[0] + 0.004, BASE[1], BASE[2]] })]), a, "near");
  const far = ClassStore.combine([a, store(10, 1, { label: "base", count: 50, sum: [BASE[0] + 0.006, BASE[1], BASE[2]] })]);
  expect(far.counts[0] === 100 && far.sums[0][0] === Math.fround(40 + Math.fround(40.006)), `far: ${far.counts[0]} ${far.sums[0][0]}`);
  expect(ClassStore.combine([a, store(10, 1, { label: "base", count: 30, sum: [20, 1, 0] })]).counts[0] === 80, "another count");
  identical(ClassStore.combine([a, store(10, 1, { label: "mixed", count: 4, sum: [1.5, 1.2, 0.3], shots: [P3], ids: ["p3"] })]), a, "mixed");
});

check("renamed conflicts come in apart or not at all", () => {
  const a = phone(), b = store(10, 1);
  b.learn("cat", [P3], ["p9"]);
  const m = ClassStore.combine([a, b], true);
  eq(m.labels, ["base", "cat", "dog", "mixed", "cat (2)"], "labels");
  eq([m.counts[1], m.counts[4], m.ids[4]], [2, 1, ["p9"]], "cat and cat (2)");
  identical(ClassStore.combine([m, b], true), m, "again");
  const c = store(10, 1);
  c.learn("cat", [P1, Q1], ["p1", "p7"]);
  const m3 = ClassStore.combine([m, c], true);
  eq([m3.labels[5], m3.counts[5]], ["cat (3)", 2], "cat (3)");
  m3.remove("cat (2)");
  eq(ClassStore.combine([m3, c], true).labels, ["base", "cat", "dog", "mixed", "cat (3)", "cat (2)"], "with a gap");
});

check("refuses other settings with Python's line and leaves the destination as it was", () => {
  const a = phone(), before = a.copy();
  const b = store(12.5, 1), t = store(10, 2), o = new ClassStore(3, 10, "other-fingerprint-123456"), d = new ClassStore(4, 10, "fp");
  [b, t, o].forEach((s) => s.learn("cat", [P3]));
  d.learn("cat", [[1, 0, 0, 0]]);
  const cases = [
    [b, "cannot merge class stores with different settings: scale 10 and 12.5 (a merge keeps the destination's settings)"],
    [t, "cannot merge class stores with different settings: templates_per_class 1 and 2 (a merge keeps the destination's settings)"],
    [o, "cannot merge stores of different models: fp (3-d) and other-finger (3-d)"],
    [d, "cannot merge stores of different models: fp (3-d) and fp (4-d)"],
  ];
  for (const [s, msg] of cases) {
    let err = null;
    try { a.merge(s); } catch (e) { err = e; }
    expect(err && err.message === msg, `refused with ${err && err.message}, want ${msg}`);
    identical(a, before, "after a refusal");
  }
  throwsLine(() => ClassStore.combine([]), "nothing to merge", "no stores");
  for (const [x, want] of [[10, "10"], [16.473651885986328, "16.4737"], [1e-5, "1e-05"], [999999.5, "1e+06"], [10.03125, "10.0312"], [0.001953125, "0.00195312"]]) {
    expect(formatG(x) === want, `formatG(${x}) = ${formatG(x)}, want ${want}`);
  }
});

check("ids follow their shots through edits and files; labels as Python makes them", () => {
  const a = phone();
  expect(a.learn("cat", [Q1], ["p1"]) === 0, "a photo taught before was added");
  expect(a.learn("cat", [Q1, Q1], ["p5", "p5"]) === 1, "a repeat in one call was added");
  expect(a.learn("cat", [P1]) === 0, "the very bits of p1 were added");
  a.rename("cat", "Rot ß 赤");
  a.remove("dog");
  const back = ClassStore.fromNpz(a.toNpz());
  eq(back.ids[1], ["p1", "p2", "p5"], "ids");
  identical(back, a, "after a file");
  throwsLine(() => a.learn("cat", [Q1], [""]), "1..64", "an empty id");
  expect(validateLabel(" Cafe\u0301 ") === "Caf\u00e9", "not NFC");
  // U+FEFF is no whitespace to Python (trim() would strip it): an invisible character, refused.
  for (const bad of ["cat\u200b", "a\ue000", "a\ud800", "a\tb", "\ufeffa"]) throwsLine(() => validateLabel(bad), "control or invisible", JSON.stringify(bad));
  expect(validateLabel("\x1fa\x85") === "a", "Python strips \\x1f and \\x85");
  const long100 = "x".repeat(100), x = store(10, 1), y = store(10, 1);
  x.learn(long100, [P1]);
  y.learn(long100, [P2]);
  expect(ClassStore.combine([x, y]).counts[0] === 2, "long label");
  throwsLine(() => ClassStore.combine([x, y], true), `apart as "${long100} (2)": a label must be at most 100`, "a 104-character label");
});

// ----- hostile stores ----------------------------------------------------------------------------------------------
const META = { format: "imprinting-class-store", format_version: 1, labels: ["a", "b"], scale: 10, embedding_dim: 2, extractor_fingerprint: "fp", templates_per_class: 1 };
const SUMS = [1.6, 0.8, 0, 3], COUNTS = [2, 3], SHOTS = [1, 0, 0.6, 0.8, 0, 1], CLS = [0, 0, 1];
function npz(meta, { sums = SUMS, counts = COUNTS, shots = SHOTS, cls = CLS } = {}) {
  const text = typeof meta === "string" ? meta : JSON.stringify(meta);
  const m = new TextEncoder().encode(text);
  const e = { meta: writeNpy(m, [m.length]), sums: writeNpy(Float32Array.from(sums), [sums.length / 2, 2]),
    counts: writeNpy(BigInt64Array.from(counts, BigInt), [counts.length]) };
  if (shots) Object.assign(e, { shots: writeNpy(Float32Array.from(shots), [shots.length / 2, 2]), shot_class: writeNpy(BigInt64Array.from(cls, BigInt), [cls.length]) });
  return writeZip(e);
}
const refused = (why, bytes, part) => throwsLine(() => ClassStore.fromNpz(bytes, { name: "bad.npz" }), part, why);

check("a well-formed store loads with its ids; legacy and loose metadata as Python takes it", () => {
  const s = ClassStore.fromNpz(npz({ ...META, shot_ids: ["p1", null, "p3"] }));
  eq(s.ids, [["p1", null], ["p3"]], "ids");
  eq(ClassStore.fromNpz(npz({ ...META, shot_digests: { a: ["d1"] } })).ids[0], [null, null], "legacy");
  const loose = `{"format": "imprinting-class-store", "format_version": 1, "labels": ["a", "b"], "scale": 10, "embedding_dim": 2.0,
    "extractor_fingerprint": "fp", "shot_ids": ["x"], "shot_digests": {"zz": ["d"]}}`;
  expect(ClassStore.fromNpz(npz(loose, { shots: null })).counts[0] === 2, "loose");
});

check("refuses broken counts, sums and shots", () => {
  refused("a count of 0", npz(META, { counts: [2, 0], shots: null }), "count is outside [1, 2^40]");
  refused("a count over 2^40", npz(META, { counts: [2, 2 ** 40 + 1], shots: null }), "count is outside");
  refused("a count of 2^63-1", npz(META, { counts: [2, 2n ** 63n - 1n], shots: null }), "count is outside");
  refused("an absurd sum", npz(META, { sums: [1.6, 0.8, 0, 3e38], shots: null }), "length");
  refused("an infinite sum", npz(META, { sums: [1.6, 0.8, 0, Infinity], shots: null }), "NaN or infinity");
  refused("a shot of length 1e30", npz(META, { shots: [1, 0, 0.6, 0.8, 0, 1e30] }), "not a unit row");
  refused("a shot not of unit length", npz(META, { shots: [1, 0, 0.6, 0.8, 0, 1.01] }), "not a unit row");
  refused("a NaN shot", npz(META, { shots: [1, 0, 0.6, 0.8, 0, NaN] }), "NaN or infinity");
  refused("more shots than its count", npz(META, { cls: [0, 0, 0] }), "keeps 3 shots");
  refused("all shots kept but another sum", npz(META, { sums: [1.5, 0.8, 0, 3] }), "do not add up");
  refused("a shot of no class", npz(META, { cls: [0, 0, 2] }), "does not exist");
  refused("the same shot twice without ids", npz(META, { sums: [2, 0, 0, 3], shots: [1, 0, 1, 0], cls: [0, 0] }), "twice");
});

check("refuses broken metadata", () => {
  const head = '{"format": "imprinting-class-store", "format_version": 1, "labels": ["a", "b"], "embedding_dim": 2, "extractor_fingerprint": "fp"';
  const cases = [
    ["a non-NFC label", { ...META, labels: ["Cafe\u0301", "b"] }, "normal form"],
    ["a label with spaces", { ...META, labels: [" a", "b"] }, "normal form"],
    ["an invisible label", { ...META, labels: ["a\u200b", "b"] }, "invisible"],
    ["duplicate labels", { ...META, labels: ["a", "a"] }, "appears twice"],
    ["an infinite scale", `${head}, "scale": Infinity}`, "unreadable metadata"],
    ["a NaN scale", `${head}, "scale": NaN}`, "unreadable metadata"],
    ["an overflowing scale", `${head}, "scale": 1e999}`, "scale"],
    ["a scale over 1000", { ...META, scale: 1000.5 }, "scale"],
    ["a scale of 0", { ...META, scale: 0 }, "scale"],
    ["a string scale", { ...META, scale: "10" }, "scale"],
    ["65 templates", { ...META, templates_per_class: 65 }, "templates_per_class"],
    ["1e30 templates", { ...META, templates_per_class: 1e30 }, "templates_per_class"],
    ["2.0 templates", `${head}, "scale": 10, "templates_per_class": 2.0}`, "templates_per_class"],
    ["shot ids of another length", { ...META, shot_ids: ["p1", "p2"] }, "shot_ids"],
    ["a shot id of 65 characters", { ...META, shot_ids: ["p1", null, "x".repeat(65)] }, "1..64"],
    ["an empty shot id", { ...META, shot_ids: ["p1", null, ""] }, "1..64"],
    ["a numeric shot id", { ...META, shot_ids: ["p1", null, 7] }, "1..64"],
    ["a shot twice", { ...META, shot_ids: ["p1", "p1", "p3"] }, "holds shot p1 twice"],
    ["a fingerprint that is not text", { ...META, extractor_fingerprint: 7 }, "extractor_fingerprint"],
    ["malformed shot digests", { ...META, shot_digests: { a: "d" } }, "shot_digests"],
    ["labels that are not strings", { ...META, labels: [1, 2] }, "labels"],
    ["metadata nested 100000 levels deep", `${head}, "scale": 10, "x": ${"[".repeat(100000)}${"]".repeat(100000)}}`, "nested more than"],
  ];
  for (const [why, meta, part] of cases) refused(why, npz(meta), part);
});

const failed = results.filter((r) => !r).length;
console.log(`web-unit: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
