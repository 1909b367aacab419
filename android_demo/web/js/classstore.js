// The class store and the imprinted cosine classifier (docs/formats.md, the Python runtime's
// ImprintedClassifier with one template per class): per class a float32 sum of unit embeddings and a
// count; weight = sum / |sum|; logits = scale * cosine; softmax over all classes (and "unknown" at the unknown
// threshold); unknown policy, by default the bundle's (bundleUnknownPolicy).
// With shot offsets (the bundle manifest's "shot_offsets") classify ranks by cosine + offset(shot count).
// The file's "shot_digests" (photo digests per class) are kept, renamed and removed with their class and written
// back. ClassStore.combine merges stores taught on different devices as the Python runtime's store_sync.combine.
import { readNpy, readZip, writeNpy, writeZip } from "./npz.js";

export const STORE_FORMAT = "imprinting-class-store";
// The unknown threshold of bundles that carry none (exported before thresholds were calibrated): the Python
// runtime's FALLBACK_MIN_COSINE (runtime/recognizer_options.py).
export const FALLBACK_MIN_COSINE = 0.4;
const f = Math.fround;

/**
 * The unknown policy a bundle carries, the Python runtime's bundle_unknown_policy: the manifest's
 * calibration.unknown_min_cosine (chosen at export for a stated false-accept rate) when it is a number in [-1, 1],
 * else FALLBACK_MIN_COSINE; no margin rule. `calibrated` says which. A "calibration" that is not an object is
 * refused, as Python refuses the manifest.
 */
export function bundleUnknownPolicy(manifest) {
  const cal = manifest.calibration;
  if (cal != null && (typeof cal !== "object" || Array.isArray(cal))) {
    throw new Error(`bundle manifest field 'calibration' must be an object, got ${JSON.stringify(cal)}`);
  }
  const t = cal == null ? undefined : cal.unknown_min_cosine;
  const calibrated = typeof t === "number" && t >= -1 && t <= 1;
  return { minCosine: calibrated ? t : FALLBACK_MIN_COSINE, minMargin: null, calibrated };
}

export function validateLabel(label) {
  if (typeof label !== "string") throw new Error(`a label must be a string, got ${typeof label}`);
  const s = label.trim();
  if (!s) throw new Error("a label must not be empty");
  const n = [...s].length; // code points, as Python counts them
  if (n > 100) throw new Error(`a label must be at most 100 characters, got ${n}`);
  if (/[\u0000-\u001f\u007f]/.test(s)) throw new Error(`a label must not contain control characters: ${JSON.stringify(s)}`);
  return s;
}

export function unit(e, dim) {
  if (e.length !== dim) throw new Error(`expected an embedding of length ${dim}, got ${e.length}`);
  let ss = 0;
  for (const v of e) ss = f(ss + f(v * v));
  const n = f(Math.sqrt(ss));
  if (!Number.isFinite(n)) throw new Error("an embedding holds NaN or infinity");
  if (n < 1e-6) throw new Error("an embedding is all zeros and cannot be imprinted or classified");
  return Float32Array.from(e, (v) => v / n);
}

/**
 * Shot-aware calibration, the Python runtime's ShotOffsets (imprinting/runtime/shot_offsets.py): the offset for a
 * class of c shots is np.interp(log(max(c, 1)), log(shots), offsets), linear in log(count) between the table's
 * points and clamped to the first/last offset outside, rounded to float32. Validated as in Python: at least one
 * entry, counts >= 1 and distinct, offsets finite and within [-1, 1].
 */
export class ShotOffsets {
  constructor(shots, offsets) {
    if (!shots.length || shots.length !== offsets.length) throw new Error("shot_offsets need as many offsets as shot counts, at least one");
    if (shots.some((n, i) => !Number.isInteger(n) || n < 1 || (i > 0 && n <= shots[i - 1]))) {
      throw new Error(`shot_offsets: shot counts must be >= 1 and strictly increasing, got ${shots.join(", ")}`);
    }
    if (!offsets.every((o) => typeof o === "number" && o >= -1 && o <= 1)) {
      throw new Error(`shot_offsets must be finite and within [-1, 1], got ${offsets.join(", ")}`);
    }
    Object.assign(this, { shots: [...shots], offsets: [...offsets], logShots: shots.map(Math.log) });
  }

  /** From the manifest form {"1": 0.07, "5": 0.02, ...} (keys in any order); an empty table is an error here. */
  static fromMapping(table) {
    const bad = (why) => new Error(`shot_offsets must map shot counts to numbers, got ${JSON.stringify(table)} (${why})`);
    const items = Object.entries(table).map(([k, v]) => {
      // Python's int(key) and float(value): integer strings; numbers, booleans and numeric strings.
      if (!/^\s*[+-]?\d+(_\d+)*\s*$/.test(k)) throw bad(`invalid shot count ${k}`);
      let o;
      if (typeof v === "number" || typeof v === "boolean") o = Number(v);
      else if (typeof v === "string" && /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/.test(v)) o = Number(v.trim());
      else throw bad(`invalid offset ${JSON.stringify(v)}`);
      return [Number(k.replace(/_/g, "")), o];
    });
    items.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    return new ShotOffsets(items.map((it) => it[0]), items.map((it) => it[1]));
  }

  /** The manifest's "shot_offsets": null for none (absent, null or empty, as Python's `if d.get(...)`), else the table. */
  static fromManifest(manifest) {
    const t = manifest.shot_offsets;
    if (!t || (typeof t === "object" && Object.keys(t).length === 0)) return null;
    if (typeof t !== "object" || Array.isArray(t)) throw new Error(`shot_offsets must map shot counts to numbers, got ${JSON.stringify(t)}`);
    return ShotOffsets.fromMapping(t);
  }

  /** The offset for a class of `count` shots (float32, as NumPy computes it). */
  offset(count) {
    const x = Math.log(Math.max(count, 1)), xs = this.logShots, ys = this.offsets, m = xs.length;
    if (m === 1 || x <= xs[0]) return f(ys[0]);
    if (x >= xs[m - 1]) return f(ys[m - 1]);
    let j = 0;
    while (xs[j + 1] <= x) j++;
    if (x === xs[j]) return f(ys[j]);
    return f(((ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j])) * (x - xs[j]) + ys[j]);
  }
}

/** Whether two float32 vectors hold the same bits (Python compares stored shots by their bytes; 0 and -0 differ). */
function sameBits(a, b) {
  const x = new Int32Array(Float32Array.from(a).buffer), y = new Int32Array(Float32Array.from(b).buffer);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** The optional "shot_digests" of a store's metadata, checked as Python checks it: labels to lists of 1..64-char strings. */
function shotDigests(meta, name) {
  const d = meta.shot_digests;
  if (d === undefined) return new Map();
  const ok = d !== null && typeof d === "object" && !Array.isArray(d) && Object.values(d).every((v) => Array.isArray(v)
    && v.every((x) => typeof x === "string" && [...x].length >= 1 && [...x].length <= 64));
  if (!ok) throw new Error(`${name} is corrupt: shot_digests must map labels to lists of digests`);
  const stray = Object.keys(d).filter((l) => !meta.labels.includes(l));
  if (stray.length) throw new Error(`${name} is corrupt: shot digests for classes it does not hold: ${stray.slice(0, 3).join(", ")}`);
  return new Map(Object.entries(d).filter(([, v]) => v.length).map(([l, v]) => [l, [...new Set(v)].sort()]));
}

export class ClassStore {
  constructor(dim, scale, fingerprint) {
    if (!(dim >= 1) || !(scale > 0)) throw new Error(`bad store: embedding_dim ${dim}, scale ${scale}`);
    Object.assign(this, { dim, scale, fingerprint, templatesPerClass: 1, labels: [], sums: [], counts: [], shots: null });
    // label -> sorted content digests of the photos taught into it (the file's "shot_digests"); only non-empty.
    this.digests = new Map();
    // Never unknown until set, as the Python runtime's ImprintedClassifier; the page sets the bundle's policy.
    this.unknown = { minCosine: null, minMargin: null };
    // A ShotOffsets (from the bundle manifest) or null; a setting of the classifier, not part of the file.
    this.shotOffsets = null;
  }

  learn(label, embeddings) {
    label = validateLabel(label);
    const es = embeddings.map((e) => unit(e, this.dim));
    let k = this.labels.indexOf(label);
    if (k < 0) {
      k = this.labels.length;
      this.labels.push(label); this.sums.push(new Float32Array(this.dim)); this.counts.push(0);
      if (this.shots) this.shots.push([]);
    }
    for (const e of es) for (let i = 0; i < this.dim; i++) this.sums[k][i] += e[i];
    this.counts[k] += es.length;
    if (this.shots) this.shots[k].push(...es);
  }

  remove(label) {
    const k = this.require(label);
    for (const a of [this.labels, this.sums, this.counts, this.shots || []]) a.splice(k, 1);
    this.digests.delete(label);
  }

  rename(oldLabel, newLabel) {
    const n = validateLabel(newLabel);
    const k = this.require(oldLabel);
    if (n === oldLabel) return;
    if (this.labels.includes(n)) throw new Error(`cannot rename "${oldLabel}" to "${n}": that label exists already`);
    this.labels[k] = n;
    if (this.digests.has(oldLabel)) {
      this.digests.set(n, this.digests.get(oldLabel));
      this.digests.delete(oldLabel);
    }
  }

  /**
   * One store holding every class of `stores` (taught on different devices, say): the Python runtime's
   * store_sync.combine, with the same results. The same label in several stores becomes one class whose sums,
   * counts, stored shots and photo digests add up, as if taught with all those shots on one device; labels keep the
   * first store's order, new ones are appended. With renameConflicts a label an earlier store holds stays apart as
   * "label (2)", "label (3)", ... Each step adds two float32 sums in double and rounds once to float32, in Python's
   * order, so the sums are bit for bit Python's. As in Python, a shot whose float32 bits the merged class already
   * holds from an earlier store is stored once (count and sum still add); scale, fingerprint and templates per class
   * are the last store's, the unknown policy and shot offsets (page settings) the first's. Inputs are not changed.
   * Stores of another model (fingerprint or dimension) are refused with Python's one line naming both.
   */
  static combine(stores, renameConflicts = false) {
    if (!stores.length) throw new Error("nothing to merge: give at least one class store");
    const [first, last] = [stores[0], stores[stores.length - 1]];
    const head = (fp) => [...String(fp)].slice(0, 12).join(""); // Python's fp[:12] counts code points
    for (const s of stores) {
      if (s.fingerprint !== first.fingerprint || s.dim !== first.dim) {
        throw new Error(`cannot merge stores of different models: ${head(first.fingerprint)} (${first.dim}-d) and ${head(s.fingerprint)} (${s.dim}-d)`);
      }
    }
    const out = new ClassStore(first.dim, last.scale, last.fingerprint);
    Object.assign(out, { templatesPerClass: last.templatesPerClass, unknown: { ...first.unknown }, shotOffsets: first.shotOffsets });
    const rows = (s, labels = s.labels) => labels.map((label, k) => ({ label, sum: s.sums[k], count: s.counts[k],
      shots: s.shots ? s.shots[k] : null, digests: s.digests.get(s.labels[k]) || [] }));
    out.setRows(rows(first), !!first.shots);
    for (const s of stores.slice(1)) {
      let labels = s.labels;
      if (renameConflicts) {
        labels = [];
        for (const lab of s.labels) {
          let n = lab;
          for (let k = 2; out.labels.includes(n) || labels.includes(n); k++) n = `${lab} (${k})`;
          if (n !== lab) {
            try { validateLabel(n); } catch (err) { throw new Error(`cannot keep "${lab}" apart as "${n}": ${err.message}`); }
          }
          labels.push(n);
        }
      }
      out.absorb(rows(s, labels), !!s.shots);
    }
    return out;
  }

  /** Python's merge_stores(None, ours, this) for combine, in place: see combine. `ours` are rows as combine makes them. */
  absorb(ours, oursKeepShots) {
    const mine = new Map(this.labels.map((label, k) => [label, { sum: this.sums[k], count: this.counts[k],
      shots: this.shots ? this.shots[k] : [], digests: this.digests.get(label) || [] }]));
    const theirs = new Map(ours.map((r) => [r.label, r]));
    const labels = [...this.labels, ...ours.map((r) => r.label).filter((l) => !mine.has(l))];
    const keepShots = !!this.shots || oursKeepShots;
    const zeros = new Float32Array(this.dim);
    this.setRows(labels.map((label) => {
      const t = mine.get(label), o = theirs.get(label);
      const ts = t ? t.sum : zeros, os = o ? o.sum : zeros;
      const sum = new Float32Array(this.dim); // storing rounds the double sum to float32 once
      for (let i = 0; i < this.dim; i++) sum[i] = ts[i] + os[i];
      const tsh = (t && t.shots) || [];
      const shots = [...tsh, ...((o && o.shots) || []).filter((v) => !tsh.some((u) => sameBits(u, v)))];
      const digests = [...new Set([...(t ? t.digests : []), ...(o ? o.digests : [])])];
      return { label, sum, count: (t ? t.count : 0) + (o ? o.count : 0), shots, digests };
    }), keepShots);
  }

  /** Replaces the classes with these rows ({label, sum, count, shots, digests}); shots kept when keepShots. */
  setRows(rows, keepShots) {
    this.labels = rows.map((r) => r.label);
    this.sums = rows.map((r) => Float32Array.from(r.sum));
    this.counts = rows.map((r) => r.count);
    this.shots = keepShots ? rows.map((r) => [...(r.shots || [])]) : null;
    this.digests = new Map(rows.filter((r) => r.digests.length).map((r) => [r.label, [...r.digests].sort()]));
  }

  require(label) {
    const k = this.labels.indexOf(label);
    if (k < 0) throw new Error(`no class named "${label}"; classes: ${this.labels.slice(0, 10).join(", ")}`);
    return k;
  }

  cosines(embedding) {
    const e = unit(embedding, this.dim);
    return this.sums.map((s) => {
      let dot = 0, ss = 0;
      for (let i = 0; i < this.dim; i++) { dot += e[i] * s[i]; ss += s[i] * s[i]; }
      return dot / Math.max(Math.sqrt(ss), 1e-12);
    });
  }

  /**
   * {labels, cosines, probabilities, unknown, label} for the top k, best first. With shot offsets the ranked and
   * reported scores ("cosines") are cosine + offset(shot count); softmax and unknown policy see those, as in Python.
   * The top score is reported even when the answer is unknown. probabilities: the softmax of scale * score over all
   * classes and, when the unknown policy has a minCosine, "unknown" scored at it (Python's
   * Classification.categories), so a single class is not certain against nothing.
   */
  classify(embedding, topK = 3) {
    if (!this.labels.length) throw new Error("the classifier has no classes yet: add one first");
    const so = this.shotOffsets;
    const cos = this.cosines(embedding).map((c, k) => (so ? c + so.offset(this.counts[k]) : c));
    const order = cos.map((_, i) => i).sort((a, b) => cos[b] - cos[a]);
    const best = cos[order[0]];
    const margin = cos.length > 1 ? best - cos[order[1]] : Infinity;
    const u = this.unknown;
    const total = cos.reduce((t, c) => t + Math.exp((c - best) * this.scale), 0)
      + (u.minCosine != null ? Math.exp((u.minCosine - best) * this.scale) : 0);
    const top = order.slice(0, topK);
    const unknown = (u.minCosine != null && best < u.minCosine) || (u.minMargin != null && margin < u.minMargin);
    const labels = top.map((i) => this.labels[i]);
    return {
      labels, cosines: top.map((i) => cos[i]), probabilities: top.map((i) => Math.exp((cos[i] - best) * this.scale) / total),
      unknown, label: unknown ? null : labels[0],
    };
  }

  toNpz() {
    const meta = {
      format: STORE_FORMAT, format_version: 1, labels: this.labels, scale: this.scale, embedding_dim: this.dim,
      extractor_fingerprint: this.fingerprint, templates_per_class: this.templatesPerClass,
    };
    const digests = this.labels.filter((l) => this.digests.has(l)).map((l) => [l, this.digests.get(l)]);
    if (digests.length) meta.shot_digests = Object.fromEntries(digests);
    const k = this.labels.length, sums = new Float32Array(k * this.dim);
    this.sums.forEach((s, i) => sums.set(s, i * this.dim));
    const metaBytes = new TextEncoder().encode(JSON.stringify(meta));
    const entries = {
      meta: writeNpy(metaBytes, [metaBytes.length]),
      sums: writeNpy(sums, [k, this.dim]),
      counts: writeNpy(BigInt64Array.from(this.counts, (c) => BigInt(c)), [k]),
    };
    if (this.shots) {
      const flat = this.shots.flat();
      const shots = new Float32Array(flat.length * this.dim);
      flat.forEach((s, i) => shots.set(s, i * this.dim));
      entries.shots = writeNpy(shots, [flat.length, this.dim]);
      entries.shot_class = writeNpy(BigInt64Array.from(this.shots.flatMap((per, k2) => per.map(() => BigInt(k2)))), [flat.length]);
    }
    return writeZip(entries);
  }

  /** Read a store; refuses another extractor's store naming both fingerprints, as the Python runtime does. */
  static fromNpz(bytes, { expectedFingerprint = null, expectedDim = null, name = "class store" } = {}) {
    const z = readZip(bytes, name);
    for (const need of ["meta", "sums", "counts"]) if (!z[need]) throw new Error(`${name} is corrupt: missing ${need}`);
    const meta = JSON.parse(new TextDecoder().decode(readNpy(z.meta, "meta").data));
    if (meta.format !== STORE_FORMAT) throw new Error(`${name} is not an imprinting class store`);
    if (meta.format_version !== 1) throw new Error(`${name} has format version ${meta.format_version}; this page reads version 1`);
    const sums = readNpy(z.sums, "sums"), counts = readNpy(z.counts, "counts");
    const k = meta.labels.length, dim = meta.embedding_dim;
    if (sums.dtype !== "<f4" || sums.shape.join() !== `${k},${dim}`) throw new Error(`${name} is corrupt: sums of shape (${sums.shape}) for ${k} labels of dim ${dim}`);
    if (counts.dtype !== "<i8" || counts.shape.join() !== `${k}`) throw new Error(`${name} is corrupt: counts of shape (${counts.shape})`);
    if (expectedFingerprint && meta.extractor_fingerprint !== expectedFingerprint) {
      throw new Error(`${name} was made with extractor ${meta.extractor_fingerprint.slice(0, 16)} but this model is ${expectedFingerprint.slice(0, 16)}; re-teach the classes with this model`);
    }
    if (expectedDim && dim !== expectedDim) throw new Error(`${name} holds ${dim}-d embeddings but this model makes ${expectedDim}-d ones`);
    const st = new ClassStore(dim, meta.scale, meta.extractor_fingerprint);
    meta.labels.forEach(validateLabel);
    st.templatesPerClass = meta.templates_per_class || 1;
    st.labels = [...meta.labels];
    st.sums = st.labels.map((_, i) => sums.data.slice(i * dim, (i + 1) * dim));
    st.counts = Array.from(counts.data, Number);
    if (st.counts.some((c) => c < 1)) throw new Error(`${name} is corrupt: a class has a count below 1`);
    st.digests = shotDigests(meta, name);
    if (z.shots && z.shot_class) {
      const shots = readNpy(z.shots, "shots"), cls = readNpy(z.shot_class, "shot_class");
      st.shots = st.labels.map(() => []);
      Array.from(cls.data, Number).forEach((c, i) => st.shots[c].push(shots.data.slice(i * dim, (i + 1) * dim)));
    }
    return st;
  }
}
