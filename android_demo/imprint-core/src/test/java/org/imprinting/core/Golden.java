package org.imprinting.core;

import static org.junit.Assume.assumeTrue;

import java.io.File;
import java.io.FileInputStream;
import java.io.IOException;
import java.nio.charset.Charset;
import java.util.List;
import java.util.Map;

/**
 * The golden vectors written by android_demo/tools/make_golden.py. Their directory comes from the
 * system property golden.dir or the environment variable GOLDEN_DIR; tests are skipped without it.
 */
final class Golden {
    final File dir;
    final Map<String, Object> json;
    final Manifest manifest;

    private Golden(File dir) throws IOException {
        this.dir = dir;
        this.json = Json.parseObject(text("golden.json"));
        this.manifest = Manifest.parse(text("manifest.json"));
    }

    static Golden load() throws IOException {
        String d = System.getProperty("golden.dir", System.getenv("GOLDEN_DIR"));
        assumeTrue("no golden vectors: run android_demo/tools/make_golden.py DIR and pass -Dgolden.dir=DIR",
                d != null && new File(d, "golden.json").isFile());
        return new Golden(new File(d));
    }

    /** Where the tests write files for the Python side to check (system property golden.out), or null. */
    static File outDir() {
        String d = System.getProperty("golden.out", System.getenv("GOLDEN_OUT"));
        return d == null ? null : new File(d);
    }

    byte[] bytes(String name) throws IOException {
        FileInputStream in = new FileInputStream(new File(dir, name));
        try {
            return ClassStoreFile.readAll(in);
        } finally {
            in.close();
        }
    }

    String text(String name) throws IOException {
        return new String(bytes(name), Charset.forName("UTF-8"));
    }

    Npy.Array npy(String name) throws IOException {
        return Npy.read(bytes(name), name);
    }

    /** Row i of a float32 (n, D) array. */
    static float[] row(Npy.Array a, int i) {
        int d = a.shape[1];
        float[] r = new float[d];
        System.arraycopy(a.floats, i * d, r, 0, d);
        return r;
    }

    @SuppressWarnings("unchecked")
    List<Map<String, Object>> list(String key) {
        return (List<Map<String, Object>>) json.get(key);
    }

    @SuppressWarnings("unchecked")
    Map<String, Object> map(String key) {
        return (Map<String, Object>) json.get(key);
    }

    Preprocessor preprocessor() {
        return new Preprocessor(manifest.preprocess, (String) json.get("layout"));
    }
}
