package org.imprinting.core;

/**
 * Separable resize of uint8 RGB images, close to OpenCV's: area averaging when shrinking (INTER_AREA,
 * fractional pixel overlaps) and bilinear with OpenCV's half-pixel centres otherwise (INTER_LINEAR).
 * OpenCV uses fixed-point weights for uint8, so results may differ by one grey level: tests compare with a
 * loose tolerance wherever resampling happens.
 */
final class Resampler {
    private Resampler() {
    }

    /** Per output pixel: first source index, number of taps, and the taps' weights (flattened). */
    static final class Axis {
        final int[] start;
        final int[] count;
        final float[][] weights;

        Axis(int n) {
            start = new int[n];
            count = new int[n];
            weights = new float[n][];
        }
    }

    static Axis area(int src, int dst) {
        Axis a = new Axis(dst);
        double scale = (double) src / dst;
        for (int i = 0; i < dst; i++) {
            double lo = i * scale;
            double hi = (i + 1) * scale;
            int j0 = (int) Math.floor(lo);
            int j1 = Math.min(src, (int) Math.ceil(hi - 1e-9));
            float[] w = new float[j1 - j0];
            for (int j = j0; j < j1; j++) {
                w[j - j0] = (float) ((Math.min(hi, j + 1) - Math.max(lo, j)) / scale);
            }
            a.start[i] = j0;
            a.count[i] = w.length;
            a.weights[i] = w;
        }
        return a;
    }

    static Axis linear(int src, int dst) {
        Axis a = new Axis(dst);
        double scale = (double) src / dst;
        for (int i = 0; i < dst; i++) {
            double fx = (i + 0.5) * scale - 0.5;
            int j = (int) Math.floor(fx);
            double f = fx - j;
            if (j < 0) {
                j = 0;
                f = 0;
            }
            if (j >= src - 1) {
                j = src - 1;
                f = 0;
            }
            a.start[i] = j;
            if (f == 0) {
                a.count[i] = 1;
                a.weights[i] = new float[] {1f};
            } else {
                a.count[i] = 2;
                a.weights[i] = new float[] {(float) (1 - f), (float) f};
            }
        }
        return a;
    }

    /** RGB uint8 (h, w, 3) to (outH, outW, 3); `shrinkArea` picks area averaging on shrinking axes. */
    static byte[] resize(byte[] src, int w, int h, int outW, int outH, boolean useArea) {
        if (w == outW && h == outH) {
            return src.clone();
        }
        Axis ax = useArea && outW < w ? area(w, outW) : linear(w, outW);
        Axis ay = useArea && outH < h ? area(h, outH) : linear(h, outH);
        // Horizontal pass into floats, vertical pass with rounding: one rounding step, as OpenCV does.
        float[] tmp = new float[h * outW * 3];
        for (int y = 0; y < h; y++) {
            int row = y * w * 3;
            for (int x = 0; x < outW; x++) {
                float r = 0;
                float g = 0;
                float b = 0;
                float[] wt = ax.weights[x];
                int p = row + ax.start[x] * 3;
                for (int k = 0; k < wt.length; k++, p += 3) {
                    r += wt[k] * (src[p] & 0xff);
                    g += wt[k] * (src[p + 1] & 0xff);
                    b += wt[k] * (src[p + 2] & 0xff);
                }
                int o = (y * outW + x) * 3;
                tmp[o] = r;
                tmp[o + 1] = g;
                tmp[o + 2] = b;
            }
        }
        byte[] out = new byte[outH * outW * 3];
        for (int y = 0; y < outH; y++) {
            float[] wt = ay.weights[y];
            for (int x = 0; x < outW * 3; x++) {
                float v = 0;
                int p = ay.start[y] * outW * 3 + x;
                for (int k = 0; k < wt.length; k++, p += outW * 3) {
                    v += wt[k] * tmp[p];
                }
                int q = Math.round(v);
                out[y * outW * 3 + x] = (byte) (q < 0 ? 0 : (q > 255 ? 255 : q));
            }
        }
        return out;
    }
}
