// The class store and the imprinted cosine classifier (docs/formats.md, the Python runtime's
// ImprintedClassifier with one template per class): per class a float32 sum of unit embeddings and a
// count; weight = sum / |sum|; logits = scale * cosine; softmax over all classes (and "unknown" at the unknown
// threshold); unknown policy, by default the bundle's (bundleUnknownPolicy).
// With shot offsets (the bundle manifest's "shot_offsets") classify ranks by cosine + offset(shot count).
// Every shot taught is kept with its id (a photo's content digest, or null: unknown); ids read from a file
// ("shot_ids") go with their shots through rename, remove and merge and are written back. merge/combine merge stores
// taught on different devices by shot identity, as the Python runtime's store_sync.combine (classmerge.js); every
// store read is checked first (storecheck.js), as Python checks it.
import { copyRow, mergeRows, refusal } from "./classmerge.js";
import { readNpy, readZip, writeNpy, writeZip } from "./npz.js";
import { checkClasses, checkCounts, checkId, checkSettings, checkShotIds, parseMeta, sameBits, validateLabel } from "./storecheck.js";

export { validateLabel };

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
  const minEvidenceByShots = evidenceTable(cal == null ? undefined : cal.unknown_min_evidence_by_shots);
  return { minCosine: calibrated ? t : FALLBACK_MIN_COSINE, minMargin: null, calibrated, minEvidenceByShots };
}

/**
 * The manifest's calibration.unknown_min_evidence_by_shots as a ShotOffsets table, or null (the single threshold
 * rules) unless it is a non-empty object whose keys are shot counts written as plain decimals ("1".."999999999")
 * and whose values are numbers (not booleans) in [-1, 1]: the Python runtime's evidence_table. With a table, the
 * top-1 class of n shots summing to S is unknown when its cosine (without shot offset) is below
 * table(n) * n / |S| (its evidence, cosine * |S| / n, below the table's value; runtime/ranking.py).
 */
export function evidenceTable(value) {
  if (value == null || typeof value !== "object" || Array.isArray(value) || !Object.keys(value).length) return null;
  const ok = Object.entries(value).every(([k, v]) => /^[1-9][0-9]{0,8}$/.test(k) && typeof v === "number" && v >= -1 && v <= 1);
  return ok ? ShotOffsets.fromMapping(value) : null;
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

export class ClassStore {
  constructor(dim, scale, fingerprint) {
    if (!(Number.isInteger(dim) && dim >= 1) || !(scale > 0 && scale <= 1000)) throw new Error(`bad store: embedding_dim ${dim}, scale ${scale}`);
    // Per class (parallel arrays): label, float32 sum, count, kept shots (unit Float32Arrays) and their ids.
    Object.assign(this, { dim, scale, fingerprint, templatesPerClass: 1, labels: [], sums: [], counts: [], shots: [], ids: [] });
    // Never unknown until set, as the Python runtime's ImprintedClassifier; the page sets the bundle's policy.
    this.unknown = { minCosine: null, minMargin: null };
    // A ShotOffsets (from the bundle manifest) or null; a setting of the classifier, not part of the file.
    this.shotOffsets = null;
  }

  /**
   * Imprints a class or adds shots to it; ids (optional, one per embedding) are the photos' content digests, null
   * where unknown. A shot that is the same shot as one the class holds (the same id, or the same float32 bits),
   * including one added earlier in this call, is skipped, as the Python runtime's ClassSet.learn skips a repeat.
   * Returns how many shots were added.
   */
  learn(label, embeddings, ids = null) {
    label = validateLabel(label);
    const es = embeddings.map((e) => unit(e, this.dim));
    if (!es.length) throw new Error("got no embeddings (an empty batch)");
    if (ids !== null && ids.length !== es.length) throw new Error(`got ${ids.length} ids for ${es.length} shots`);
    const batch = { shots: es, ids: es.map((_, i) => (ids === null ? null : checkId(ids[i]))) };
    let k = this.labels.indexOf(label);
    const row = k < 0 ? { sum: new Float32Array(this.dim), count: 0, shots: [], ids: [] }
      : { sum: this.sums[k], count: this.counts[k], shots: this.shots[k], ids: this.ids[k] };
    let added = 0;
    batch.shots.forEach((e, i) => {
      const held = row.shots.some((s, j) => (row.ids[j] !== null && row.ids[j] === batch.ids[i]) || sameBits(s, e));
      if (held) return;
      for (let x = 0; x < this.dim; x++) row.sum[x] += e[x];
      row.count++;
      row.shots.push(e);
      row.ids.push(batch.ids[i]);
      added++;
    });
    if (k < 0 && added) {
      k = this.labels.length;
      this.labels.push(label); this.sums.push(row.sum); this.counts.push(row.count); this.shots.push(row.shots); this.ids.push(row.ids);
    } else if (k >= 0) this.counts[k] = row.count;
    return added;
  }

  remove(label) {
    const k = this.require(label);
    for (const a of [this.labels, this.sums, this.counts, this.shots, this.ids]) a.splice(k, 1);
  }

  rename(oldLabel, newLabel) {
    const n = validateLabel(newLabel);
    const k = this.require(oldLabel);
    if (n === oldLabel) return;
    if (this.labels.includes(n)) throw new Error(`cannot rename "${oldLabel}" to "${n}": that label exists already`);
    this.labels[k] = n;
  }

  /** The classes as rows {label, sum, count, shots, ids} (copies). */
  rows() {
    return this.labels.map((label, k) => copyRow({ label, sum: this.sums[k], count: this.counts[k], shots: this.shots[k], ids: this.ids[k] }));
  }

  setRows(rows) {
    this.labels = rows.map((r) => r.label);
    this.sums = rows.map((r) => r.sum);
    this.counts = rows.map((r) => r.count);
    this.shots = rows.map((r) => r.shots);
    this.ids = rows.map((r) => r.ids);
  }

  /** A copy of the classes and every setting. */
  copy() {
    const c = new ClassStore(this.dim, this.scale, this.fingerprint);
    Object.assign(c, { templatesPerClass: this.templatesPerClass, unknown: { ...this.unknown }, shotOffsets: this.shotOffsets });
    c.setRows(this.rows());
    return c;
  }

  /**
   * Merges another store (another device's export) into this one by shot identity (classmerge.js): what this store
   * holds already is not counted again, so merging the same store twice equals merging it once. This store's settings
   * never change; a store of another model, scale or templates_per_class is refused with Python's one line and
   * nothing changes. The incoming store is not changed.
   */
  merge(incoming, renameConflicts = false) {
    const why = refusal(this, incoming);
    if (why) throw new Error(why);
    const rows = this.rows();
    mergeRows(rows, incoming.rows(), renameConflicts);
    this.setRows(rows);
  }

  /**
   * One store holding every class of `stores`, the Python runtime's store_sync.combine: a copy of the first with each
   * later one merged in (merge). Settings (and the page's unknown policy and shot offsets) are the first store's.
   */
  static combine(stores, renameConflicts = false) {
    if (!stores.length) throw new Error("nothing to merge: give at least one class store");
    const out = stores[0].copy();
    for (const s of stores.slice(1)) out.merge(s, renameConflicts);
    return out;
  }

  require(label) {
    const k = this.labels.indexOf(label);
    if (k < 0) throw new Error(`no class named "${label}"; classes: ${this.labels.slice(0, 10).join(", ")}`);
    return k;
  }

  /** 1 / |sum| of class k in float32, as the Python runtime keeps it (the shot-aware unknown bar uses it). */
  invNorm(k) {
    const s = this.sums[k];
    let ss = 0;
    for (let i = 0; i < this.dim; i++) ss = f(ss + f(s[i] * s[i]));
    return f(1 / Math.max(f(Math.sqrt(ss)), 1e-12));
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
    const raw = this.cosines(embedding);
    const cos = raw.map((c, k) => (so ? c + so.offset(this.counts[k]) : c));
    const order = cos.map((_, i) => i).sort((a, b) => cos[b] - cos[a]);
    const best = cos[order[0]];
    const margin = cos.length > 1 ? best - cos[order[1]] : Infinity;
    const u = this.unknown;
    let threshold = u.minCosine;
    let unknown = (u.minCosine != null && best < u.minCosine) || (u.minMargin != null && margin < u.minMargin);
    if (u.minEvidenceByShots) {
      // The shot-aware table: the top class's raw cosine against its bar (in score space for the softmax).
      const k0 = order[0], c0 = raw[k0], n = this.counts[k0];
      const bar = u.minEvidenceByShots.offset(n) * n * this.invNorm(k0);
      threshold = bar + (best - c0);
      unknown = c0 < bar || (u.minMargin != null && margin < u.minMargin);
    }
    const total = cos.reduce((t, c) => t + Math.exp((c - best) * this.scale), 0)
      + (threshold != null ? Math.exp((threshold - best) * this.scale) : 0);
    const top = order.slice(0, topK);
    const labels = top.map((i) => this.labels[i]);
    return {
      labels, cosines: top.map((i) => cos[i]), probabilities: top.map((i) => Math.exp((cos[i] - best) * this.scale) / total),
      unknown, label: unknown ? null : labels[0], threshold,
    };
  }

  /** The store file: every class with its kept shots, their classes and ids ("shot_ids", null where unknown). */
  toNpz() {
    const meta = {
      format: STORE_FORMAT, format_version: 1, labels: this.labels, scale: this.scale, embedding_dim: this.dim,
      extractor_fingerprint: this.fingerprint, templates_per_class: this.templatesPerClass, shot_ids: this.ids.flat(),
    };
    const k = this.labels.length, sums = new Float32Array(k * this.dim);
    this.sums.forEach((s, i) => sums.set(s, i * this.dim));
    const metaBytes = new TextEncoder().encode(JSON.stringify(meta));
    const flat = this.shots.flat();
    const shots = new Float32Array(flat.length * this.dim);
    flat.forEach((s, i) => shots.set(s, i * this.dim));
    return writeZip({
      meta: writeNpy(metaBytes, [metaBytes.length]),
      sums: writeNpy(sums, [k, this.dim]),
      counts: writeNpy(BigInt64Array.from(this.counts, (c) => BigInt(c)), [k]),
      shots: writeNpy(shots, [flat.length, this.dim]),
      shot_class: writeNpy(BigInt64Array.from(this.shots.flatMap((per, c) => per.map(() => BigInt(c)))), [flat.length]),
    });
  }

  /**
   * Read a store, checked as the Python runtime checks it (storecheck.js); refuses another extractor's store naming
   * both fingerprints. Every problem is one line.
   */
  static fromNpz(bytes, { expectedFingerprint = null, expectedDim = null, name = "class store" } = {}) {
    const z = readZip(bytes, name);
    for (const need of ["meta", "sums", "counts"]) if (!z[need]) throw new Error(`${name} is corrupt: missing ${need}`);
    const metaArr = readNpy(z.meta, "meta");
    if (metaArr.dtype !== "|u1") throw new Error(`${name} is corrupt: meta must be uint8 JSON`);
    let parsed;
    try {
      parsed = parseMeta(new TextDecoder("utf-8", { fatal: true }).decode(metaArr.data));
    } catch (err) {
      throw new Error(`${name} is corrupt: unreadable metadata (${err.message})`);
    }
    const { meta, integers } = parsed;
    if (meta.format !== STORE_FORMAT) throw new Error(`${name} is not an imprinting class store`);
    if (meta.format_version !== 1) throw new Error(`${name} has format version ${meta.format_version}; this page reads version 1`);
    const { dim, scale, fingerprint, templates } = checkSettings(meta, integers, name);
    const sums = readNpy(z.sums, "sums"), counts = readNpy(z.counts, "counts");
    const k = meta.labels.length;
    if (sums.dtype !== "<f4" || sums.shape.join() !== `${k},${dim}`) throw new Error(`${name} is corrupt: sums of shape (${sums.shape}) for ${k} labels of dim ${dim}`);
    if (counts.dtype !== "<i8" || counts.shape.join() !== `${k}`) throw new Error(`${name} is corrupt: counts of shape (${counts.shape})`);
    const cnt = checkCounts(counts.data, name);
    const rows = meta.labels.map((label, i) => ({ label, sum: sums.data.slice(i * dim, (i + 1) * dim), count: cnt[i], shots: [], ids: [] }));
    if (!z.shots !== !z.shot_class) throw new Error(`${name} is corrupt: shots and shot_class must come together`);
    if (z.shots) {
      const shots = readNpy(z.shots, "shots"), cls = readNpy(z.shot_class, "shot_class");
      const n = cls.shape[0];
      if (shots.dtype !== "<f4" || cls.dtype !== "<i8" || cls.shape.length !== 1 || shots.shape.join() !== `${n},${dim}`) {
        throw new Error(`${name} is corrupt: shots of shape (${shots.shape}) do not match`);
      }
      const ids = checkShotIds(meta, n, name);
      cls.data.forEach((c, i) => {
        if (c < 0n || c >= BigInt(k)) throw new Error(`${name} is corrupt: a shot names a class that does not exist`);
        rows[Number(c)].shots.push(shots.data.slice(i * dim, (i + 1) * dim));
        rows[Number(c)].ids.push(ids[i]);
      });
    }
    checkClasses(rows, name);
    if (expectedFingerprint && fingerprint !== expectedFingerprint) {
      throw new Error(`${name} was made with extractor ${fingerprint.slice(0, 16)} but this model is ${expectedFingerprint.slice(0, 16)}; re-teach the classes with this model`);
    }
    if (expectedDim && dim !== expectedDim) throw new Error(`${name} holds ${dim}-d embeddings but this model makes ${expectedDim}-d ones`);
    const st = new ClassStore(dim, scale, fingerprint);
    st.templatesPerClass = templates;
    st.setRows(rows);
    return st;
  }
}
