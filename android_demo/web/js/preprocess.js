// The Python runtime's preprocessing (imprinting/runtime/preprocess.py), driven by the bundle manifest:
// take the centre box that resize-shorter-side-then-centre-crop keeps, resize it once to input_size
// (area averaging when shrinking, bilinear with OpenCV's half-pixel centres otherwise), scale to [0, 1],
// normalize with mean/std, lay out NCHW. Same algorithm as the Android core's Preprocessor.java.

export function centerBox(h, w, spec) {
  const s = spec.input_size, r = spec.resize_size;
  // Python's round() rounds half to even.
  const round = (x) => { const f = Math.floor(x); const d = x - f; return d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f; };
  let ch, cw;
  if (spec.resize_mode === "stretch") {
    ch = Math.max(1, round((h * s) / r)); cw = Math.max(1, round((w * s) / r));
  } else {
    ch = cw = Math.max(1, round((Math.min(h, w) * s) / r));
  }
  return [Math.floor((h - ch) / 2), Math.floor((w - cw) / 2), ch, cw];
}

function axis(src, dst, area) {
  const scale = src / dst, taps = [];
  for (let i = 0; i < dst; i++) {
    if (area && dst < src) {
      const lo = i * scale, hi = (i + 1) * scale, t = [];
      for (let j = Math.floor(lo); j < Math.min(src, Math.ceil(hi - 1e-9)); j++) t.push([j, (Math.min(hi, j + 1) - Math.max(lo, j)) / scale]);
      taps.push(t);
    } else {
      let fx = (i + 0.5) * scale - 0.5, j = Math.floor(fx), f = fx - j;
      if (j < 0) { j = 0; f = 0; }
      if (j >= src - 1) { j = src - 1; f = 0; }
      taps.push(f === 0 ? [[j, 1]] : [[j, 1 - f], [j + 1, f]]);
    }
  }
  return taps;
}

/** RGBA or RGB pixels (channels = 4 or 3) of a w x h image -> uint8 RGB crop (S * S * 3). */
export function cropRgb(pixels, w, h, channels, spec) {
  const [top, left, ch, cw] = centerBox(h, w, spec);
  const s = spec.input_size;
  const area = spec.interpolation === "area" && ch * cw > s * s;
  const ax = axis(cw, s, area), ay = axis(ch, s, area);
  const tmp = new Float32Array(ch * s * 3);
  for (let y = 0; y < ch; y++) {
    const row = (top + y) * w;
    for (let x = 0; x < s; x++) {
      let r = 0, g = 0, b = 0;
      for (const [j, wt] of ax[x]) {
        const p = (row + left + j) * channels;
        r += wt * pixels[p]; g += wt * pixels[p + 1]; b += wt * pixels[p + 2];
      }
      const o = (y * s + x) * 3;
      tmp[o] = r; tmp[o + 1] = g; tmp[o + 2] = b;
    }
  }
  const out = new Uint8Array(s * s * 3);
  for (let y = 0; y < s; y++) {
    for (let x = 0; x < s * 3; x++) {
      let v = 0;
      for (const [j, wt] of ay[y]) v += wt * tmp[j * s * 3 + x];
      out[y * s * 3 + x] = Math.min(255, Math.max(0, Math.round(v)));
    }
  }
  return out;
}

/** uint8 RGB crop -> Float32Array (3, S, S) or (S, S, 3), float32 arithmetic as NumPy does it. */
export function normalize(crop, spec, layout = "NCHW") {
  const n = spec.input_size * spec.input_size, out = new Float32Array(3 * n);
  const f = Math.fround;
  const a = spec.std.map((sd) => f(1 / f(255 * f(sd))));
  const b = spec.mean.map((m, c) => f(-f(m) / f(spec.std[c])));
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < 3; c++) out[layout === "NCHW" ? c * n + p : p * 3 + c] = f(f(crop[p * 3 + c] * a[c]) + b[c]);
  }
  return out;
}

export function preprocess(pixels, w, h, channels, spec, layout = "NCHW") {
  return normalize(cropRgb(pixels, w, h, channels, spec), spec, layout);
}
