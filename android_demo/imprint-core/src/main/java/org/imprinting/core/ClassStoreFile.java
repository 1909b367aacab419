package org.imprinting.core;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.Charset;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The class store file (docs/formats.md, format version 1): an uncompressed .npz holding meta.npy
 * (uint8 UTF-8 JSON), sums.npy float32 (K, D), counts.npy int64 (K,) and optionally shots.npy float32
 * (N, D) with shot_class.npy int64 (N,); the JSON may hold "shot_digests" (label to the content digests of the
 * photos taught into it), which is checked as Python checks it, kept and written back. Files written here load with the Python runtime's read_store,
 * and files it writes load here, with the same checks and the same refusals.
 */
public final class ClassStoreFile {
    public static final String FORMAT = "imprinting-class-store";
    public static final int FORMAT_VERSION = 1;
    private static final Charset UTF8 = Charset.forName("UTF-8");

    private ClassStoreFile() {
    }

    /** Reads and validates a store; expectedFingerprint may be null and expectedDim &lt;= 0 to skip those checks. */
    public static ClassStore read(File file, String expectedFingerprint, int expectedDim) throws IOException {
        if (!file.isFile()) {
            throw new IllegalArgumentException("class store " + file + " does not exist");
        }
        InputStream in = new FileInputStream(file);
        try {
            return fromBytes(readAll(in), file.getPath(), expectedFingerprint, expectedDim);
        } finally {
            in.close();
        }
    }

    public static byte[] readAll(InputStream in) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] buf = new byte[1 << 16];
        int n;
        while ((n = in.read(buf)) > 0) {
            out.write(buf, 0, n);
        }
        return out.toByteArray();
    }

    public static ClassStore fromBytes(byte[] data, String where, String expectedFingerprint, int expectedDim) {
        Map<String, byte[]> entries = Npz.read(data, "class store " + where);
        for (String need : new String[] {"meta", "sums", "counts"}) {
            if (!entries.containsKey(need)) {
                throw new IllegalArgumentException("class store " + where + " is corrupt: missing " + need);
            }
        }
        Npy.Array metaArr = Npy.read(entries.get("meta"), "meta.npy");
        if (metaArr.bytes == null) {
            throw new IllegalArgumentException("class store " + where + " is corrupt: meta must be uint8 JSON");
        }
        Map<String, Object> meta;
        try {
            meta = Json.parseObject(new String(metaArr.bytes, UTF8));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("class store " + where + " is corrupt: unreadable metadata (" + e.getMessage() + ")");
        }
        if (!FORMAT.equals(meta.get("format"))) {
            throw new IllegalArgumentException(where + " is not an imprinting class store");
        }
        Object version = meta.get("format_version");
        if (!(version instanceof Number) || ((Number) version).doubleValue() != FORMAT_VERSION) {
            throw new IllegalArgumentException("class store " + where + " has format version " + version
                    + "; this app reads version " + FORMAT_VERSION + " (update the app to read it)");
        }
        List<String> labels = new ArrayList<String>();
        int dim;
        float scale;
        String fp;
        int templates;
        try {
            for (Object o : (List<?>) meta.get("labels")) {
                labels.add((String) o);
            }
            dim = ((Number) meta.get("embedding_dim")).intValue();
            scale = ((Number) meta.get("scale")).floatValue();
            fp = String.valueOf(meta.get("extractor_fingerprint"));
            Object t = meta.get("templates_per_class");
            templates = t == null ? 1 : ((Number) t).intValue();
        } catch (RuntimeException e) {
            throw new IllegalArgumentException("class store " + where + " is corrupt: bad metadata field (" + e + ")");
        }
        Npy.Array sums = Npy.read(entries.get("sums"), "sums.npy");
        Npy.Array counts = Npy.read(entries.get("counts"), "counts.npy");
        int k = labels.size();
        if (sums.floats == null || sums.shape.length != 2 || sums.shape[1] != dim) {
            throw new IllegalArgumentException("class store " + where + " is corrupt: sums of dtype " + sums.dtype
                    + " and shape " + shape(sums.shape) + " but embedding_dim " + dim);
        }
        if (sums.shape[0] != k) {
            throw new IllegalArgumentException("class store " + where + " is corrupt: " + k + " labels but sums of shape " + shape(sums.shape));
        }
        if (counts.longs == null || counts.shape.length != 1 || counts.shape[0] != k) {
            throw new IllegalArgumentException("class store " + where + " is corrupt: " + k + " labels but counts of dtype "
                    + counts.dtype + " and shape " + shape(counts.shape));
        }
        checkFinite(sums.floats, where, "sums");
        for (long c : counts.longs) {
            if (c < 1) {
                throw new IllegalArgumentException("class store " + where + " is corrupt: a class has a count below 1");
            }
        }
        Set<String> seen = new HashSet<String>(labels);
        if (seen.size() != k) {
            throw new IllegalArgumentException("class store " + where + " is corrupt: duplicate labels");
        }
        for (String l : labels) {
            Labels.validate(l);
        }
        if (!(scale > 0)) {
            throw new IllegalArgumentException("class store " + where + " is corrupt: scale must be positive, got " + scale);
        }
        if (templates < 1) {
            throw new IllegalArgumentException("class store " + where + " is corrupt: templates_per_class must be >= 1");
        }
        float[] shots = null;
        long[] shotClass = null;
        if (entries.containsKey("shots") != entries.containsKey("shot_class")) {
            throw new IllegalArgumentException("class store " + where + " is corrupt: shots and shot_class must come together");
        }
        if (entries.containsKey("shots")) {
            Npy.Array s = Npy.read(entries.get("shots"), "shots.npy");
            Npy.Array c = Npy.read(entries.get("shot_class"), "shot_class.npy");
            if (s.floats == null || c.longs == null || s.shape.length != 2 || c.shape.length != 1
                    || s.shape[0] != c.shape[0] || s.shape[1] != dim) {
                throw new IllegalArgumentException("class store " + where + " is corrupt: shots of shape " + shape(s.shape) + " do not match");
            }
            for (long v : c.longs) {
                if (v < 0 || v >= k) {
                    throw new IllegalArgumentException("class store " + where + " is corrupt: a shot names a class that does not exist");
                }
            }
            checkFinite(s.floats, where, "shots");
            shots = s.floats;
            shotClass = c.longs;
        }
        Map<String, List<String>> digests = shotDigests(meta, seen, where);
        if (expectedFingerprint != null && !expectedFingerprint.equals(fp)) {
            throw new IllegalArgumentException("class store " + where + " was made with extractor " + head(fp)
                    + " but this model is " + head(expectedFingerprint)
                    + "; re-teach the classes with this model or use the store's own bundle");
        }
        if (expectedDim > 0 && dim != expectedDim) {
            throw new IllegalArgumentException("class store " + where + " holds " + dim + "-d embeddings but this model makes "
                    + expectedDim + "-d ones");
        }
        ClassStore store = new ClassStore(dim, scale, fp);
        store.restore(labels, sums.floats, counts.longs, templates, shots, shotClass, digests);
        return store;
    }

    /** The store as .npz bytes. */
    public static byte[] toBytes(ClassStore store) throws IOException {
        Map<String, Object> meta = new LinkedHashMap<String, Object>();
        meta.put("format", FORMAT);
        meta.put("format_version", FORMAT_VERSION);
        meta.put("labels", new ArrayList<Object>(store.labels()));
        meta.put("scale", (double) store.scale());
        meta.put("embedding_dim", store.embeddingDim());
        meta.put("extractor_fingerprint", store.fingerprint());
        meta.put("templates_per_class", store.templatesPerClass());
        Map<String, List<String>> digests = store.digestMap();
        if (!digests.isEmpty()) {
            meta.put("shot_digests", digests);
        }
        Map<String, byte[]> entries = new LinkedHashMap<String, byte[]>();
        entries.put("meta", Npy.writeBytes(Json.write(meta).getBytes(UTF8)));
        int k = store.size();
        entries.put("sums", Npy.writeFloats(store.flatSums(), k, store.embeddingDim()));
        entries.put("counts", Npy.writeLongs(store.countArray(), k));
        Object[] shots = store.shotArrays();
        if (shots != null) {
            long[] cls = (long[]) shots[1];
            entries.put("shots", Npy.writeFloats((float[]) shots[0], cls.length, store.embeddingDim()));
            entries.put("shot_class", Npy.writeLongs(cls, cls.length));
        }
        return Npz.write(entries);
    }

    /**
     * Saves atomically: a temporary file in the same directory, fsync, rename. A killed app leaves
     * either the old or the new file, never half of one. (java.nio.file needs API 26, hence File.)
     */
    public static void write(File file, ClassStore store) throws IOException {
        byte[] data = toBytes(store);
        File dir = file.getAbsoluteFile().getParentFile();
        if (dir == null || !dir.isDirectory()) {
            throw new IllegalArgumentException("cannot save " + file + ": directory " + dir + " does not exist");
        }
        File tmp = File.createTempFile("." + file.getName() + ".", ".tmp", dir);
        boolean done = false;
        try {
            FileOutputStream out = new FileOutputStream(tmp);
            try {
                out.write(data);
                out.flush();
                out.getFD().sync();
            } finally {
                out.close();
            }
            if (!tmp.renameTo(file)) {
                throw new IOException("cannot rename " + tmp + " to " + file);
            }
            done = true;
        } finally {
            if (!done && !tmp.delete()) {
                tmp.deleteOnExit();
            }
        }
    }

    /**
     * The optional "shot_digests" of the metadata, checked as the Python runtime checks it: an object mapping
     * labels of this store to lists of strings of 1..64 characters.
     */
    private static Map<String, List<String>> shotDigests(Map<String, Object> meta, Set<String> labels, String where) {
        Map<String, List<String>> out = new LinkedHashMap<String, List<String>>();
        if (!meta.containsKey("shot_digests")) {
            return out;
        }
        String bad = "class store " + where + " is corrupt: shot_digests must map labels to lists of digests";
        Object value = meta.get("shot_digests");
        if (!(value instanceof Map)) {
            throw new IllegalArgumentException(bad);
        }
        List<String> stray = new ArrayList<String>();
        for (Map.Entry<?, ?> e : ((Map<?, ?>) value).entrySet()) {
            if (!(e.getValue() instanceof List)) {
                throw new IllegalArgumentException(bad);
            }
            List<String> d = new ArrayList<String>();
            for (Object x : (List<?>) e.getValue()) {
                String t = x instanceof String ? (String) x : "";
                int n = t.codePointCount(0, t.length());
                if (n < 1 || n > 64) {
                    throw new IllegalArgumentException(bad);
                }
                d.add(t);
            }
            String label = (String) e.getKey();
            if (!labels.contains(label)) {
                stray.add(label);
            }
            out.put(label, d);
        }
        if (!stray.isEmpty()) {
            throw new IllegalArgumentException("class store " + where + " is corrupt: shot digests for classes it does not hold: "
                    + stray.subList(0, Math.min(3, stray.size())));
        }
        return out;
    }

    private static void checkFinite(float[] v, String where, String what) {
        for (float f : v) {
            if (Float.isNaN(f) || Float.isInfinite(f)) {
                throw new IllegalArgumentException("class store " + where + " is corrupt: " + what + " hold NaN or infinity");
            }
        }
    }

    private static String head(String s) {
        return s.length() > 16 ? s.substring(0, 16) : s;
    }

    private static String shape(int[] s) {
        StringBuilder b = new StringBuilder("(");
        for (int i = 0; i < s.length; i++) {
            b.append(i == 0 ? "" : ", ").append(s[i]);
        }
        return b.append(s.length == 1 ? ",)" : ")").toString();
    }
}
