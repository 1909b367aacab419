package org.imprinting.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.awt.image.BufferedImage;
import java.io.File;
import java.util.Map;
import javax.imageio.ImageIO;
import org.junit.Test;

/** Preprocessing against the Python runtime's tensors: tight where no resampling happens, loose elsewhere. */
public class PreprocessorTest {
    // One grey level is 1 / (255 * std) after normalization; OpenCV's fixed-point resize may differ by one.
    private static final float TIGHT = 1e-6f;

    private static float maxAbs(float[] a, float[] b) {
        assertEquals("tensor length", a.length, b.length);
        float m = 0;
        for (int i = 0; i < a.length; i++) {
            m = Math.max(m, Math.abs(a[i] - b[i]));
        }
        return m;
    }

    private static float meanAbs(float[] a, float[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) {
            s += Math.abs(a[i] - b[i]);
        }
        return (float) (s / a.length);
    }

    private static int[] argb(byte[] rgb, int w, int h) {
        int[] p = new int[w * h];
        for (int i = 0; i < p.length; i++) {
            p[i] = 0xff000000 | (rgb[3 * i] & 0xff) << 16 | (rgb[3 * i + 1] & 0xff) << 8 | (rgb[3 * i + 2] & 0xff);
        }
        return p;
    }

    private static float level(Golden g) {
        float minStd = Math.min(g.manifest.preprocess.std[0], Math.min(g.manifest.preprocess.std[1], g.manifest.preprocess.std[2]));
        return 1f / (255f * minStd);
    }

    @Test
    public void rgbAndArgbFramesMatchPython() throws Exception {
        Golden g = Golden.load();
        Preprocessor p = g.preprocessor();
        for (Map<String, Object> f : g.list("frames")) {
            String name = (String) f.get("name");
            int w = ((Number) f.get("width")).intValue();
            int h = ((Number) f.get("height")).intValue();
            byte[] rgb = g.bytes("frame_" + name + ".rgb");
            float[] want = g.npy("input_" + name + ".npy").floats;
            boolean resampled = Boolean.TRUE.equals(f.get("resampled"));
            float tol = resampled ? 1.01f * level(g) : TIGHT;
            float[] got = p.fromRgb(rgb, w, h);
            assertTrue(name + " (rgb): max diff " + maxAbs(got, want), maxAbs(got, want) <= tol);
            if (resampled) {
                assertTrue(name + " mean diff " + meanAbs(got, want), meanAbs(got, want) <= 0.25f * level(g));
            }
            float[] got2 = p.fromArgb(argb(rgb, w, h), w, h);
            assertArrayEquals(name + ": ARGB and RGB paths agree", got, got2, 0f);
        }
    }

    @Test
    public void decodedPngMatchesPythonLoosely() throws Exception {
        Golden g = Golden.load();
        Preprocessor p = g.preprocessor();
        for (Map<String, Object> f : g.list("frames")) {
            String name = (String) f.get("name");
            BufferedImage img = ImageIO.read(new File(g.dir, "frame_" + name + ".png"));
            int w = img.getWidth();
            int h = img.getHeight();
            int[] px = img.getRGB(0, 0, w, h, null, 0, w);
            float[] got = p.fromArgb(px, w, h);
            float[] want = g.npy("input_" + name + ".npy").floats;
            assertTrue(name + " (png): max diff " + maxAbs(got, want), maxAbs(got, want) <= 1.01f * level(g));
        }
    }

    @Test
    public void nv21FramesMatchPythonLoosely() throws Exception {
        Golden g = Golden.load();
        Preprocessor p = g.preprocessor();
        for (Map<String, Object> f : g.list("frames")) {
            String name = (String) f.get("name");
            int w = ((Number) f.get("width")).intValue();
            int h = ((Number) f.get("height")).intValue();
            float[] got = p.fromNv21(g.bytes("frame_" + name + ".nv21"), w, h, 0, null);
            // Against Python's preprocessing of the same NV21 frame decoded in NumPy: a rounding step apart.
            float[] same = g.npy("input_nv21_" + name + ".npy").floats;
            assertTrue(name + " (nv21): max diff " + maxAbs(got, same), maxAbs(got, same) <= 2.01f * level(g));
            // Against the original RGB frame: 2x2 chroma subsampling smears colour edges, so only the mean.
            float[] want = g.npy("input_" + name + ".npy").floats;
            assertTrue(name + " (nv21): mean diff " + meanAbs(got, want), meanAbs(got, want) <= 16f * level(g));
        }
    }

    @Test
    public void centerBoxFollowsPythonRounding() {
        PreprocessSpec s = new PreprocessSpec(224, 256, "shorter", "area", new float[] {0.5f, 0.5f, 0.5f}, new float[] {0.5f, 0.5f, 0.5f});
        assertArrayEquals(new int[] {14, 30, 196, 196}, s.centerBox(224, 256));
        // 300 * 224 / 256 = 262.5 and 292 -> 255.5: Python rounds half to even (262, 256)
        assertArrayEquals(new int[] {19, 69, 262, 262}, s.centerBox(300, 400));
        assertArrayEquals(new int[] {18, 72, 256, 256}, s.centerBox(292, 400));
        assertArrayEquals(new int[] {16, 16, 224, 224}, s.centerBox(256, 256));
        // 480 * 224 / 256 = 420 exactly; 1080 -> 945; (1920 - 945) / 2 = 487 (floor division)
        assertArrayEquals(new int[] {30, 110, 420, 420}, s.centerBox(480, 640));
        assertArrayEquals(new int[] {67, 487, 945, 945}, s.centerBox(1080, 1920));
    }

    @Test
    public void rotationFourTimesIsIdentity() {
        byte[] img = new byte[4 * 3 * 3];
        for (int i = 0; i < img.length; i++) {
            img[i] = (byte) i;
        }
        byte[] r = Preprocessor.rotate(img, 4, 3, 90);
        byte[] back = Preprocessor.rotate(Preprocessor.rotate(Preprocessor.rotate(r, 3, 4, 90), 4, 3, 90), 3, 4, 90);
        assertArrayEquals(img, back);
        // Top-left goes to the top-right corner after a clockwise quarter turn.
        assertEquals(img[0], r[(0 * 3 + 2) * 3]);
    }

    @Test(expected = IllegalArgumentException.class)
    public void rejectsBadLayout() {
        new Preprocessor(new PreprocessSpec(32, 36, "shorter", "area", new float[] {0, 0, 0}, new float[] {1, 1, 1}), "CHW");
    }

    @Test
    public void specRejectsResizeSmallerThanInput() {
        try {
            new PreprocessSpec(224, 200, "shorter", "area", new float[] {0, 0, 0}, new float[] {1, 1, 1});
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("resize_size (200) must be >= input_size (224)"));
            return;
        }
        throw new AssertionError("expected IllegalArgumentException");
    }
}
