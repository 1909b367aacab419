package org.imprinting.core;

import java.nio.ByteBuffer;

/**
 * The Python runtime's preprocessing (imprinting/runtime/preprocess.py) for camera frames and bitmaps:
 * take the centre box that resize-shorter-side-then-centre-crop would keep, resize it once to
 * input_size x input_size, scale to [0, 1], normalize with the manifest's mean/std, lay out as NCHW or NHWC.
 * Colour order is always RGB. Not thread-safe only in the sense that callers own the output arrays.
 */
public final class Preprocessor {
    private final PreprocessSpec spec;
    private final boolean nchw;
    private final float[] a = new float[3];
    private final float[] b = new float[3];

    public Preprocessor(PreprocessSpec spec, String layout) {
        if (!"NCHW".equals(layout) && !"NHWC".equals(layout)) {
            throw new IllegalArgumentException("layout must be 'NCHW' or 'NHWC', got '" + layout + "'");
        }
        this.spec = spec;
        this.nchw = "NCHW".equals(layout);
        for (int c = 0; c < 3; c++) {
            // One affine map per channel, in float32 like NumPy: (x / 255 - mean) / std == x * a + b.
            a[c] = 1.0f / (255.0f * spec.std[c]);
            b[c] = -spec.mean[c] / spec.std[c];
        }
    }

    public PreprocessSpec spec() {
        return spec;
    }

    /** Floats in one model input: 3 * S * S. */
    public int inputLength() {
        return 3 * spec.inputSize * spec.inputSize;
    }

    /** RGB bytes (h, w, 3) to the model input, float32 (3 * S * S). */
    public float[] fromRgb(byte[] rgb, int w, int h) {
        checkSize(w, h, rgb.length, 3);
        int[] box = spec.centerBox(h, w);
        byte[] region = new byte[box[2] * box[3] * 3];
        for (int y = 0; y < box[2]; y++) {
            System.arraycopy(rgb, ((box[0] + y) * w + box[1]) * 3, region, y * box[3] * 3, box[3] * 3);
        }
        return normalize(resizeBox(region, box), null);
    }

    /** Packed ARGB pixels (Android Bitmap.getPixels, BufferedImage.getRGB) to the model input. */
    public float[] fromArgb(int[] argb, int w, int h) {
        checkSize(w, h, argb.length, 1);
        int[] box = spec.centerBox(h, w);
        byte[] region = new byte[box[2] * box[3] * 3];
        int o = 0;
        for (int y = 0; y < box[2]; y++) {
            int p = (box[0] + y) * w + box[1];
            for (int x = 0; x < box[3]; x++, p++) {
                int c = argb[p];
                region[o++] = (byte) (c >> 16);
                region[o++] = (byte) (c >> 8);
                region[o++] = (byte) c;
            }
        }
        return normalize(resizeBox(region, box), null);
    }

    /** An NV21 frame (the old Camera API's default) to the model input; rotation is clockwise degrees. */
    public float[] fromNv21(byte[] nv21, int w, int h, int rotation, float[] out) {
        if (nv21.length < w * h * 3 / 2) {
            throw new IllegalArgumentException("an NV21 frame of " + w + "x" + h + " needs " + (w * h * 3 / 2)
                    + " bytes, got " + nv21.length);
        }
        ByteBuffer y = ByteBuffer.wrap(nv21, 0, w * h).slice();
        ByteBuffer v = ByteBuffer.wrap(nv21, w * h, nv21.length - w * h).slice();
        ByteBuffer u = ByteBuffer.wrap(nv21, w * h + 1, nv21.length - w * h - 1).slice();
        return fromYuv420(y, u, v, w, w, 2, w, h, rotation, out);
    }

    /**
     * A Camera2 YUV_420_888 image (its three planes with their strides) to the model input. Full-range
     * BT.601 (JFIF), which is what Android cameras deliver. rotation: clockwise degrees to turn the
     * crop upright (the sensor orientation); out may be null or a reused array of inputLength().
     */
    public float[] fromYuv420(ByteBuffer yPlane, ByteBuffer uPlane, ByteBuffer vPlane, int yRowStride,
                              int uvRowStride, int uvPixelStride, int w, int h, int rotation, float[] out) {
        int[] box = spec.centerBox(h, w);
        byte[] region = new byte[box[2] * box[3] * 3];
        int o = 0;
        for (int yy = box[0]; yy < box[0] + box[2]; yy++) {
            for (int xx = box[1]; xx < box[1] + box[3]; xx++) {
                int lum = yPlane.get(yy * yRowStride + xx) & 0xff;
                int uvIndex = (yy >> 1) * uvRowStride + (xx >> 1) * uvPixelStride;
                int cb = (uPlane.get(uvIndex) & 0xff) - 128;
                int cr = (vPlane.get(uvIndex) & 0xff) - 128;
                region[o++] = clamp(lum + 1.402f * cr);
                region[o++] = clamp(lum - 0.344136f * cb - 0.714136f * cr);
                region[o++] = clamp(lum + 1.772f * cb);
            }
        }
        byte[] crop = resizeBox(region, box);
        return normalize(rotate(crop, spec.inputSize, spec.inputSize, rotation), out);
    }

    /** The uint8 S x S RGB crop the model sees, before normalization (for thumbnails and tests). */
    public byte[] cropRgb(byte[] rgb, int w, int h) {
        int[] box = spec.centerBox(h, w);
        byte[] region = new byte[box[2] * box[3] * 3];
        for (int y = 0; y < box[2]; y++) {
            System.arraycopy(rgb, ((box[0] + y) * w + box[1]) * 3, region, y * box[3] * 3, box[3] * 3);
        }
        return resizeBox(region, box);
    }

    private byte[] resizeBox(byte[] region, int[] box) {
        int s = spec.inputSize;
        // INTER_AREA only when shrinking, as preprocess.py decides it (on the pixel count of the box).
        boolean area = "area".equals(spec.interpolation) && (long) box[2] * box[3] > (long) s * s;
        return Resampler.resize(region, box[3], box[2], s, s, area);
    }

    /** Rotates an RGB (h, w, 3) image clockwise by 0, 90, 180 or 270 degrees; square crops stay square. */
    public static byte[] rotate(byte[] rgb, int w, int h, int degrees) {
        int d = ((degrees % 360) + 360) % 360;
        if (d == 0) {
            return rgb;
        }
        if (d % 90 != 0) {
            throw new IllegalArgumentException("rotation must be a multiple of 90 degrees, got " + degrees);
        }
        int ow = d == 180 ? w : h;
        int oh = d == 180 ? h : w;
        byte[] out = new byte[rgb.length];
        for (int y = 0; y < h; y++) {
            for (int x = 0; x < w; x++) {
                int nx;
                int ny;
                if (d == 90) {
                    nx = h - 1 - y;
                    ny = x;
                } else if (d == 180) {
                    nx = w - 1 - x;
                    ny = h - 1 - y;
                } else {
                    nx = y;
                    ny = w - 1 - x;
                }
                System.arraycopy(rgb, (y * w + x) * 3, out, (ny * ow + nx) * 3, 3);
            }
        }
        return out;
    }

    /** uint8 RGB crop (S, S, 3) to float32 in the extractor's layout. */
    public float[] normalize(byte[] crop, float[] out) {
        int s = spec.inputSize;
        int n = s * s;
        if (out == null) {
            out = new float[3 * n];
        } else if (out.length != 3 * n) {
            throw new IllegalArgumentException("output array must hold " + 3 * n + " floats, got " + out.length);
        }
        for (int p = 0; p < n; p++) {
            for (int c = 0; c < 3; c++) {
                float v = (crop[p * 3 + c] & 0xff) * a[c] + b[c];
                out[nchw ? c * n + p : p * 3 + c] = v;
            }
        }
        return out;
    }

    private static byte clamp(float v) {
        int q = Math.round(v);
        return (byte) (q < 0 ? 0 : (q > 255 ? 255 : q));
    }

    private static void checkSize(int w, int h, int length, int perPixel) {
        if (w < 1 || h < 1) {
            throw new IllegalArgumentException("image is empty (" + w + "x" + h + ")");
        }
        if (length < (long) w * h * perPixel) {
            throw new IllegalArgumentException("a " + w + "x" + h + " image needs " + ((long) w * h * perPixel)
                    + " values, got " + length);
        }
    }
}
