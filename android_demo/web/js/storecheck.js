// The checks every reader makes before it trusts a class store (docs/formats.md; the Python runtime's invariants.py,
// the Java core's StoreCheck), each failing with one line: labels valid, NFC and stripped, unique; counts integers in
// [1, 2^40]; sums finite with |sum| <= count * (1 + 1e-3); kept shots finite unit rows (within 1e-3), at most count
// per class, no shot twice (the same id, or without ids the same bits), and where a class keeps all its shots their
// sum is its sum (within 1e-3 * count); shot ids 1..64 characters or null, one per shot; scale finite in (0, 1000];
// templates_per_class an integer in [1, 64]; metadata strict JSON (no NaN/Infinity) nested at most 256 deep.

export const MAX_COUNT = 2 ** 40;
export const MAX_ID_LENGTH = 64;
const NORM_TOL = 1e-3;
const MAX_DEPTH = 256;

// Python's str.strip() whitespace (str.isspace): not JavaScript's trim(), which also strips U+FEFF.
const SPACE = "[\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const STRIP = new RegExp(`^${SPACE}+|${SPACE}+$`, "g");
// Control, format (invisible), lone surrogate and private-use characters. Unassigned code points (Python's Cn) are
// not refused: which they are depends on the browser's Unicode version, and a store from a newer Python must load.
const HIDDEN = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}]/u;

/** A class label as the Python runtime's validate_label makes it: NFC, stripped, 1..100 characters, nothing hidden. */
export function validateLabel(label) {
  if (typeof label !== "string") throw new Error(`a label must be a string, got ${typeof label}`);
  const s = label.normalize("NFC").replace(STRIP, "");
  if (!s) throw new Error("a label must not be empty");
  const n = [...s].length; // code points, as Python counts them
  if (n > 100) throw new Error(`a label must be at most 100 characters, got ${n}`);
  if (HIDDEN.test(s)) throw new Error(`a label must not contain control or invisible characters: ${JSON.stringify(s)}`);
  return s;
}

/** A shot id: null (unknown) or a string of 1..64 characters. */
export function checkId(id) {
  if (id === null || id === undefined) return null;
  const n = typeof id === "string" ? [...id].length : 0;
  if (n < 1 || n > MAX_ID_LENGTH) throw new Error(`a shot id must be a string of 1..${MAX_ID_LENGTH} characters, got ${JSON.stringify(id)}`);
  return id;
}

/** Whether two float32 vectors hold the same bits (0 and -0 differ, as Python compares bytes). */
export function sameBits(a, b) {
  const x = new Int32Array(a.buffer, a.byteOffset, a.length), y = new Int32Array(b.buffer, b.byteOffset, b.length);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/**
 * The metadata JSON: {meta, integers} where integers is the set of top-level keys whose value is an integer literal
 * (Python's json gives int or float, and templates_per_class must be an int). Refuses NaN/Infinity (JSON.parse does)
 * and nesting deeper than 256.
 */
export function parseMeta(text) {
  let depth = 0, inString = false, top = null, key = null;
  const integers = new Set();
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') {
      inString = true;
      if (depth === 1 && top === "key") {
        const end = /^"((?:[^"\\]|\\.)*)"\s*:/.exec(text.slice(i));
        if (end) key = JSON.parse(`"${end[1]}"`);
      }
      continue;
    }
    if (c === "{" || c === "[") {
      if (++depth > MAX_DEPTH) throw new Error(`metadata nested more than ${MAX_DEPTH} levels deep`);
      top = depth === 1 ? "key" : top;
    } else if (c === "}" || c === "]") depth--;
    else if (depth === 1 && c === ",") top = "key";
    else if (depth === 1 && c === ":") {
      top = "value";
      const lit = /^:\s*(-?\d+)\s*[,}]/.exec(text.slice(i));
      if (lit && key !== null) integers.add(key);
      else if (key !== null) integers.delete(key);
    }
  }
  const meta = JSON.parse(text);
  if (meta === null || typeof meta !== "object" || Array.isArray(meta)) throw new Error("expected a JSON object");
  return { meta, integers };
}

const corrupt = (name, what) => new Error(`${name} is corrupt: ${what}`);

/** The store's settings from its metadata: {dim, scale, fingerprint, templates}. */
export function checkSettings(meta, integers, name) {
  const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : NaN);
  const dim = num(meta.embedding_dim);
  if (!(dim >= 1) || !Number.isInteger(dim)) throw corrupt(name, `embedding_dim must be an integer >= 1, got ${meta.embedding_dim}`);
  const scale = num(meta.scale);
  if (!(scale > 0 && scale <= 1000)) throw corrupt(name, `scale must be a number in (0, 1000], got ${meta.scale}`);
  if (typeof meta.extractor_fingerprint !== "string") throw corrupt(name, "extractor_fingerprint must be a string");
  let templates = 1;
  if ("templates_per_class" in meta) {
    templates = meta.templates_per_class;
    if (!integers.has("templates_per_class") || !(templates >= 1 && templates <= 64)) {
      throw corrupt(name, `templates_per_class must be an integer in [1, 64], got ${JSON.stringify(templates)}`);
    }
  }
  if (!Array.isArray(meta.labels) || !meta.labels.every((l) => typeof l === "string")) throw corrupt(name, "labels must be a list of strings");
  for (const l of meta.labels) {
    let v;
    try { v = validateLabel(l); } catch (err) { throw corrupt(name, err.message); }
    if (v !== l) throw corrupt(name, `label ${JSON.stringify(l)} is not in normal form (NFC, no surrounding spaces)`);
  }
  const dup = meta.labels.find((l, i) => meta.labels.indexOf(l) !== i);
  if (dup !== undefined) throw corrupt(name, `label ${JSON.stringify(dup)} appears twice`);
  const d = meta.shot_digests; // stores before shot ids: checked as Python checks them, not used
  if (d !== undefined && !(d !== null && typeof d === "object" && !Array.isArray(d) && Object.values(d).every((v) => Array.isArray(v)
    && v.every((x) => typeof x === "string" && [...x].length >= 1 && [...x].length <= MAX_ID_LENGTH)))) {
    throw corrupt(name, "shot_digests must map labels to lists of digests");
  }
  return { dim, scale, fingerprint: meta.extractor_fingerprint, templates };
}

/** The ids of n shots: the file's "shot_ids" (null entries stay null: unknown), all null when absent. */
export function checkShotIds(meta, n, name) {
  const v = meta.shot_ids;
  if (v === undefined || v === null) return new Array(n).fill(null);
  if (!Array.isArray(v) || v.length !== n) throw corrupt(name, `shot_ids must list one id (1-64 characters) per shot, ${n} in all`);
  return v.map((x) => {
    try { return checkId(x); } catch (err) { throw corrupt(name, err.message); }
  });
}

/** Counts (BigInt64Array) as numbers, each in [1, 2^40]. */
export function checkCounts(counts, name) {
  return Array.from(counts, (c) => {
    if (c < 1n || c > BigInt(MAX_COUNT)) throw corrupt(name, `a class count is outside [1, 2^40]: ${c}`);
    return Number(c);
  });
}

/** The per-class invariants of sums, counts and kept shots: rows are {label, sum, count, shots, ids}. */
export function checkClasses(rows, name) {
  for (const r of rows) {
    const l = `class ${JSON.stringify(r.label)}`;
    let ss = 0;
    for (const v of r.sum) {
      if (!Number.isFinite(v)) throw corrupt(name, "sums hold NaN or infinity");
      ss += v * v;
    }
    if (Math.sqrt(ss) > r.count * (1 + NORM_TOL)) {
      throw corrupt(name, `${l} has a sum of length ${Math.sqrt(ss).toPrecision(4)} from ${r.count} unit shots`);
    }
    if (r.shots.length > r.count) throw corrupt(name, `${l} keeps ${r.shots.length} shots but counts ${r.count}`);
    const total = new Float64Array(r.sum.length);
    for (const s of r.shots) {
      let n = 0;
      s.forEach((v, i) => {
        if (!Number.isFinite(v)) throw corrupt(name, "shots hold NaN or infinity");
        n += v * v;
        total[i] += v;
      });
      if (Math.abs(Math.sqrt(n) - 1) > NORM_TOL) throw corrupt(name, `${l} keeps a shot of length ${Math.sqrt(n).toPrecision(4)}, not a unit row`);
    }
    const seen = new Set();
    r.ids.forEach((id, j) => {
      const twice = id !== null ? seen.has(id) : r.ids.some((o, i) => i < j && o === null && sameBits(r.shots[i], r.shots[j]));
      if (twice) throw corrupt(name, `${l} holds shot ${id === null ? `(without an id) ${j}` : id} twice`);
      if (id !== null) seen.add(id);
    });
    if (r.shots.length === r.count) {
      let gap = 0;
      total.forEach((t, i) => { gap += (t - r.sum[i]) ** 2; });
      if (Math.sqrt(gap) > NORM_TOL * r.count) throw corrupt(name, `${l} keeps all its shots but they do not add up to its sum`);
    }
  }
}
