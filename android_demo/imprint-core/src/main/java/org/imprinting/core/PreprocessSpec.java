package org.imprinting.core;

import java.util.List;
import java.util.Map;

/**
 * How a frame becomes the extractor's input, read from the bundle manifest's "preprocess" object
 * (the Python runtime's imprinting/runtime/preprocess.py PreprocessSpec). Nothing here is hard-coded.
 */
public final class PreprocessSpec {
    public final int inputSize;
    public final int resizeSize;
    /** "shorter" keeps the aspect ratio, "stretch" does not. */
    public final String resizeMode;
    /** "area" (INTER_AREA when shrinking, bilinear when enlarging), "linear", or "cubic" (run as bilinear here). */
    public final String interpolation;
    public final float[] mean;
    public final float[] std;

    public PreprocessSpec(int inputSize, int resizeSize, String resizeMode, String interpolation, float[] mean, float[] std) {
        if (inputSize < 1 || inputSize > 4096) {
            throw new IllegalArgumentException("input_size must be in [1, 4096], got " + inputSize);
        }
        if (resizeSize < inputSize) {
            throw new IllegalArgumentException("resize_size (" + resizeSize + ") must be >= input_size (" + inputSize
                    + "): the centre crop is taken from the resized image");
        }
        if (!"shorter".equals(resizeMode) && !"stretch".equals(resizeMode)) {
            throw new IllegalArgumentException("resize_mode must be 'shorter' or 'stretch', got '" + resizeMode + "'");
        }
        if (!"area".equals(interpolation) && !"linear".equals(interpolation) && !"cubic".equals(interpolation)) {
            throw new IllegalArgumentException("interpolation must be 'area', 'linear' or 'cubic', got '" + interpolation + "'");
        }
        if (mean.length != 3 || std.length != 3) {
            throw new IllegalArgumentException("mean and std must have 3 values (R, G, B)");
        }
        for (float s : std) {
            if (!(s > 0)) {
                throw new IllegalArgumentException("std must be positive, got " + s);
            }
        }
        this.inputSize = inputSize;
        this.resizeSize = resizeSize;
        this.resizeMode = resizeMode;
        this.interpolation = interpolation;
        this.mean = mean.clone();
        this.std = std.clone();
    }

    /** From the manifest's "preprocess" object; missing keys take the Python defaults. */
    public static PreprocessSpec fromMap(Map<String, Object> m) {
        return new PreprocessSpec(
                intOr(m.get("input_size"), 224), intOr(m.get("resize_size"), 256),
                strOr(m.get("resize_mode"), "shorter"), strOr(m.get("interpolation"), "area"),
                floats(m.get("mean"), 0.5f), floats(m.get("std"), 0.5f));
    }

    private static int intOr(Object v, int d) {
        return v == null ? d : ((Number) v).intValue();
    }

    private static String strOr(Object v, String d) {
        return v == null ? d : (String) v;
    }

    private static float[] floats(Object v, float d) {
        if (v == null) {
            return new float[] {d, d, d};
        }
        List<?> l = (List<?>) v;
        float[] f = new float[l.size()];
        for (int i = 0; i < f.length; i++) {
            f[i] = ((Number) l.get(i)).floatValue();
        }
        return f;
    }

    /**
     * {top, left, height, width} of the source region that resize-then-centre-crop keeps; cropping it and
     * resizing once to input_size is the same geometry at a fraction of the cost for a camera frame.
     * Math.rint rounds half to even, like Python's round().
     */
    public int[] centerBox(int h, int w) {
        int ch;
        int cw;
        if ("stretch".equals(resizeMode)) {
            ch = Math.max(1, (int) Math.rint((double) h * inputSize / resizeSize));
            cw = Math.max(1, (int) Math.rint((double) w * inputSize / resizeSize));
        } else {
            ch = Math.max(1, (int) Math.rint((double) Math.min(h, w) * inputSize / resizeSize));
            cw = ch;
        }
        return new int[] {(h - ch) / 2, (w - cw) / 2, ch, cw};
    }
}
