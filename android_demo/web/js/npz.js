// .npy/.npz reading and writing for the class store (docs/formats.md): little-endian float32, int64 and
// uint8 arrays in a zip. Reading parses the zip's central directory (Zip64 too: np.savez forces it);
// writing makes stored (uncompressed) entries, as np.savez does, so the Python runtime's read_store accepts it.

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Parse one .npy file: {dtype, shape, data} with data a Float32Array, BigInt64Array or Uint8Array. */
export function readNpy(bytes, name = "array") {
  if (bytes[0] !== 0x93 || String.fromCharCode(...bytes.subarray(1, 6)) !== "NUMPY") throw new Error(`${name} is not a .npy array`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  const [len, off] = major === 1 ? [dv.getUint16(8, true), 10] : [dv.getUint32(8, true), 12];
  const header = new TextDecoder("latin1").decode(bytes.subarray(off, off + len));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || shapeText === undefined) throw new Error(`${name}: unreadable .npy header`);
  if (/'fortran_order'\s*:\s*True/.test(header)) throw new Error(`${name}: Fortran-order arrays are not supported`);
  const shape = shapeText.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  const n = shape.reduce((a, b) => a * b, 1);
  // Copy so that the typed array is aligned whatever the entry's offset in the zip.
  const raw = bytes.slice(off + len);
  const kinds = { "<f4": [Float32Array, 4], "<i8": [BigInt64Array, 8], "|u1": [Uint8Array, 1] };
  if (!kinds[descr]) throw new Error(`${name}: unsupported dtype ${descr} (a class store holds <f4, <i8 and |u1)`);
  const [T, size] = kinds[descr];
  if (raw.length < n * size) throw new Error(`${name} is truncated`);
  return { dtype: descr, shape, data: new T(raw.buffer, 0, n) };
}

/** One .npy file from a typed array; the header is padded so that the data starts at a multiple of 64. */
export function writeNpy(data, shape) {
  const descr = data instanceof Float32Array ? "<f4" : data instanceof BigInt64Array ? "<i8" : "|u1";
  const shapeText = shape.length === 1 ? `${shape[0]},` : shape.join(", ");
  let dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shapeText}), }`;
  dict += " ".repeat((64 - ((10 + dict.length + 1) % 64)) % 64) + "\n";
  const out = new Uint8Array(10 + dict.length + data.byteLength);
  out.set([0x93, 78, 85, 77, 80, 89, 1, 0, dict.length & 0xff, dict.length >> 8]);
  out.set(new TextEncoder().encode(dict), 10);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 10 + dict.length);
  return out;
}

/** {name without .npy: bytes} from a zip (stored entries; deflated ones need DecompressionStream). */
export function readZip(bytes, name = "archive") {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let eocd = -1;
  for (let p = bytes.length - 22; p >= Math.max(0, bytes.length - 65557); p--) {
    if (dv.getUint32(p, true) === 0x06054b50) { eocd = p; break; }
  }
  if (eocd < 0) throw new Error(`${name} is truncated or corrupt (not a zip archive)`);
  let count = dv.getUint16(eocd + 10, true);
  let cd = dv.getUint32(eocd + 16, true);
  if (cd === 0xffffffff || count === 0xffff) {
    const z64 = Number(dv.getBigUint64(eocd - 20 + 8, true));
    count = Number(dv.getBigUint64(z64 + 32, true));
    cd = Number(dv.getBigUint64(z64 + 48, true));
  }
  const out = {};
  let p = cd;
  for (let e = 0; e < count; e++) {
    if (dv.getUint32(p, true) !== 0x02014b50) throw new Error(`${name} is truncated or corrupt (central directory)`);
    const method = dv.getUint16(p + 10, true);
    const crc = dv.getUint32(p + 16, true);
    let usize = dv.getUint32(p + 24, true);
    const [nlen, xlen, clen] = [dv.getUint16(p + 28, true), dv.getUint16(p + 30, true), dv.getUint16(p + 32, true)];
    let local = dv.getUint32(p + 42, true);
    const entry = new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nlen));
    // Zip64 extra field: the 0xffffffff fields follow in the order usize, csize, local offset.
    for (let x = p + 46 + nlen; x + 4 <= p + 46 + nlen + xlen; x += 4 + dv.getUint16(x + 2, true)) {
      if (dv.getUint16(x, true) !== 1) continue;
      let q = x + 4;
      const csize32 = dv.getUint32(p + 20, true);
      if (usize === 0xffffffff) { usize = Number(dv.getBigUint64(q, true)); q += 8; }
      if (csize32 === 0xffffffff) q += 8;
      if (local === 0xffffffff) local = Number(dv.getBigUint64(q, true));
    }
    if (method !== 0) throw new Error(`${name}: entry ${entry} is compressed; save stores with np.savez, not savez_compressed`);
    const start = local + 30 + dv.getUint16(local + 26, true) + dv.getUint16(local + 28, true);
    const data = bytes.slice(start, start + usize);
    if (data.length !== usize || crc32(data) !== crc) throw new Error(`${name} is truncated or corrupt (${entry} fails its CRC check)`);
    out[entry.replace(/\.npy$/, "")] = data;
    p += 46 + nlen + xlen + clen;
  }
  return out;
}

/** A zip of stored entries from {name: bytes}; names get ".npy". */
export function writeZip(entries) {
  const enc = new TextEncoder();
  const parts = [];
  const central = [];
  let offset = 0;
  for (const [key, data] of Object.entries(entries)) {
    const name = enc.encode(`${key}.npy`);
    const crc = crc32(data);
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true);
    local.setUint16(4, 20, true);
    local.setUint16(8, 0, true); // stored
    local.setUint32(14, crc, true);
    local.setUint32(18, data.length, true);
    local.setUint32(22, data.length, true);
    local.setUint16(26, name.length, true);
    parts.push(new Uint8Array(local.buffer), name, data);
    const c = new DataView(new ArrayBuffer(46));
    c.setUint32(0, 0x02014b50, true);
    c.setUint16(4, 20, true);
    c.setUint16(6, 20, true);
    c.setUint32(16, crc, true);
    c.setUint32(20, data.length, true);
    c.setUint32(24, data.length, true);
    c.setUint16(28, name.length, true);
    c.setUint32(42, offset, true);
    central.push(new Uint8Array(c.buffer), name);
    offset += 30 + name.length + data.length;
  }
  const cdSize = central.reduce((a, b) => a + b.length, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, Object.keys(entries).length, true);
  end.setUint16(10, Object.keys(entries).length, true);
  end.setUint32(12, cdSize, true);
  end.setUint32(16, offset, true);
  const all = [...parts, ...central, new Uint8Array(end.buffer)];
  const out = new Uint8Array(all.reduce((a, b) => a + b.length, 0));
  let p = 0;
  for (const a of all) { out.set(a, p); p += a.length; }
  return out;
}
