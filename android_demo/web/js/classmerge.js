// Merging class stores by shot identity, the Python runtime's merge.py (and the Java core's ClassMerge): merges are
// idempotent (a store merged into itself, or imported twice, changes nothing) and exact (sums accumulated in float64
// in Python's order and rounded to float32 once, so the bits are Python's). Classes are rows
// {label, sum: Float32Array, count, shots: [Float32Array], ids: [string|null]}; a class's residual is its count and
// sum not kept as shots (a bundle's base class keeps none). For each incoming class, in order:
//  - a label the destination lacks is appended as it is;
//  - else its shots that are not the same shot (equal ids, or equal float32 bits) as one the destination class holds,
//    nor as an earlier new one, are added, and its residual unless the destination's is the same one (equal count,
//    every component within 1e-4 per shot); adding nothing leaves the class exactly as it was;
//  - with renameConflicts a class that would add nothing to "label", "label (2)", ... (as far as they exist) is
//    skipped, else it comes in whole as a new class under the first free "label (k)", k >= 2.
import { MAX_COUNT, sameBits, validateLabel } from "./storecheck.js";

const RESIDUAL_TOL = 1e-4;

/** A copy of a row whose sum and lists are its own (shot vectors never change, so they are shared). */
export const copyRow = (r) => ({ label: r.label, sum: Float32Array.from(r.sum), count: r.count, shots: [...r.shots], ids: [...r.ids] });

const sameShot = (a, j, b, k) => (a.ids[j] !== null && a.ids[j] === b.ids[k]) || sameBits(a.shots[j], b.shots[k]);

function residual(r) {
  const res = Float64Array.from(r.sum);
  for (const s of r.shots) for (let i = 0; i < res.length; i++) res[i] -= s[i];
  return [r.count - r.shots.length, res];
}

/** What merging incoming class i into class d adds: {fresh: indices of i's new shots, residual: Float64Array|null}. */
export function plan(d, i) {
  const fresh = [];
  for (let k = 0; k < i.shots.length; k++) {
    const held = d.shots.some((_, j) => sameShot(d, j, i, k)) || fresh.some((j) => sameShot(i, j, i, k));
    if (!held) fresh.push(k);
  }
  const [ri, resI] = residual(i);
  let add = ri > 0;
  if (add) {
    const [rd, resD] = residual(d);
    add = !(rd === ri && resD.every((v, x) => Math.abs(v - resI[x]) <= RESIDUAL_TOL * ri));
  }
  return { fresh, residual: add ? resI : null, residualCount: ri };
}

const addsNothing = (p) => !p.fresh.length && !p.residual;

/** d += what the plan adds: float64 accumulation in a fixed order, one rounding to float32. */
function apply(d, i, p) {
  if (addsNothing(p)) return;
  const add = p.fresh.length + (p.residual ? p.residualCount : 0);
  if (d.count + add > MAX_COUNT) throw new Error(`cannot merge: class "${d.label}" would count more than 2^40 shots`);
  for (let x = 0; x < d.sum.length; x++) {
    let acc = d.sum[x];
    for (const k of p.fresh) acc += i.shots[k][x];
    if (p.residual) acc += p.residual[x];
    d.sum[x] = acc; // a Float32Array rounds the double once
  }
  d.count += add;
  for (const k of p.fresh) { d.shots.push(i.shots[k]); d.ids.push(i.ids[k]); }
}

/** Merges incoming rows into dest rows (both private copies), in place. */
export function mergeRows(dest, incoming, renameConflicts) {
  const find = (label) => dest.find((r) => r.label === label);
  for (const i of incoming) {
    const d = find(i.label);
    if (!d) dest.push(copyRow(i));
    else if (!renameConflicts) apply(d, i, plan(d, i));
    else {
      let skip = false;
      for (let k = 2, n = d; n && !skip; n = find(`${i.label} (${k++})`)) skip = addsNothing(plan(n, i));
      if (skip) continue;
      let k = 2;
      while (find(`${i.label} (${k})`)) k++;
      const name = `${i.label} (${k})`;
      try { validateLabel(name); } catch (err) { throw new Error(`cannot keep "${i.label}" apart as "${name}": ${err.message}`); }
      dest.push({ ...copyRow(i), label: name });
    }
  }
}

/** The one-line refusal for stores that cannot be merged (Python's words), or null. */
export function refusal(dest, incoming) {
  const head = (fp) => [...String(fp)].slice(0, 12).join(""); // Python's fp[:12] counts code points
  if (dest.fingerprint !== incoming.fingerprint || dest.dim !== incoming.dim) {
    return `cannot merge stores of different models: ${head(dest.fingerprint)} (${dest.dim}-d) and ${head(incoming.fingerprint)} (${incoming.dim}-d)`;
  }
  const settings = (name, a, b) => `cannot merge class stores with different settings: ${name} ${formatG(a)} and ${formatG(b)} `
    + "(a merge keeps the destination's settings)";
  if (dest.scale !== incoming.scale) return settings("scale", dest.scale, incoming.scale);
  if (dest.templatesPerClass !== incoming.templatesPerClass) return settings("templates_per_class", dest.templatesPerClass, incoming.templatesPerClass);
  return null;
}

/**
 * Python's format(x, "g"): 6 significant digits of the exact binary value, ties to even, trailing zeros dropped,
 * exponent form below 1e-4 and from 1e6 on. (toPrecision rounds ties up, so the digits are worked out exactly.)
 */
export function formatG(x) {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? "nan" : x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0" : "0";
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, Math.abs(x));
  const b = dv.getBigUint64(0), be = Number(b >> 52n);
  let num = (b & ((1n << 52n) - 1n)) + (be ? 1n << 52n : 0n), den = 1n; // |x| = num / den exactly
  const e2 = (be || 1) - 1075;
  if (e2 > 0) num <<= BigInt(e2); else den <<= BigInt(-e2);
  let e = Math.floor(Math.log10(Math.abs(x)));
  let q, r, d;
  for (;;) { // q = round(|x| / 10^(e - 5)) with 6 digits
    const p = 5 - e;
    [q, d] = p >= 0 ? [num * 10n ** BigInt(p), den] : [num, den * 10n ** BigInt(-p)];
    r = q % d; q /= d;
    if (q >= 1000000n) e++; else if (q < 100000n) e--; else break;
  }
  if (2n * r > d || (2n * r === d && q % 2n === 1n)) q++;
  if (q === 1000000n) { q = 100000n; e++; }
  const digits = q.toString().replace(/0+$/, "") || "0";
  const sign = x < 0 ? "-" : "";
  if (e < -4 || e >= 6) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
  }
  if (e < 0) return `${sign}0.${"0".repeat(-e - 1)}${digits}`;
  return sign + (digits.length > e + 1 ? `${digits.slice(0, e + 1)}.${digits.slice(e + 1)}` : digits + "0".repeat(e + 1 - digits.length));
}
