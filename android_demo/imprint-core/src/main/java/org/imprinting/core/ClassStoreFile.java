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
 * (N, D) with shot_class.npy int64 (N,); the JSON may hold "shot_ids" (one id per shot: the photo's content digest,
 * or null) and the legacy "shot_digests" (checked as Python checks it, not used, not written). Every store is checked
 * as the Python runtime checks it (StoreCheck) before it is used. Files written here always hold the shots, their
 * classes and ids; they load with the Python runtime's read_store, and files it writes load here.
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
                throw StoreCheck.corrupt(where, "missing " + need);
            }
        }
        Npy.Array metaArr = Npy.read(entries.get("meta"), "meta.npy");
        if (metaArr.bytes == null) {
            throw StoreCheck.corrupt(where, "meta must be uint8 JSON");
        }
        Map<String, Object> meta;
        try {
            meta = Json.parseStrictObject(new String(metaArr.bytes, UTF8));
        } catch (IllegalArgumentException e) {
            throw StoreCheck.corrupt(where, "unreadable metadata (" + e.getMessage() + ")");
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
        if (!(meta.get("labels") instanceof List)) {
            throw StoreCheck.corrupt(where, "labels must be a list of strings");
        }
        for (Object o : (List<?>) meta.get("labels")) {
            if (!(o instanceof String)) {
                throw StoreCheck.corrupt(where, "labels must be a list of strings");
            }
            labels.add((String) o);
        }
        int dim = StoreCheck.dim(meta.get("embedding_dim"), where);
        double scale = StoreCheck.scale(meta.get("scale"), where);
        if (!(meta.get("extractor_fingerprint") instanceof String)) {
            throw StoreCheck.corrupt(where, "extractor_fingerprint must be a string");
        }
        String fp = (String) meta.get("extractor_fingerprint");
        Object t = meta.get("templates_per_class");
        int templates = t == null ? 1 : StoreCheck.integer(t, "templates_per_class", 1, StoreCheck.MAX_TEMPLATES, where);
        Npy.Array sums = Npy.read(entries.get("sums"), "sums.npy");
        Npy.Array counts = Npy.read(entries.get("counts"), "counts.npy");
        int k = labels.size();
        if (!"<f4".equals(sums.dtype) || sums.shape.length != 2 || sums.shape[1] != dim) {
            throw StoreCheck.corrupt(where, "sums of dtype " + sums.dtype + " and shape " + shape(sums.shape) + " but embedding_dim " + dim);
        }
        if (sums.shape[0] != k) {
            throw StoreCheck.corrupt(where, k + " labels but sums of shape " + shape(sums.shape));
        }
        if (counts.longs == null || counts.shape.length != 1 || counts.shape[0] != k) {
            throw StoreCheck.corrupt(where, k + " labels but counts of dtype " + counts.dtype + " and shape " + shape(counts.shape));
        }
        StoreCheck.counts(counts.longs, where);
        Set<String> seen = new HashSet<String>(labels);
        if (seen.size() != k) {
            throw StoreCheck.corrupt(where, "a label appears twice");
        }
        for (String l : labels) {
            try {
                Labels.checkStored(l);
            } catch (IllegalArgumentException e) {
                throw StoreCheck.corrupt(where, e.getMessage());
            }
        }
        List<ClassRow> rows = new ArrayList<ClassRow>();
        for (int c = 0; c < k; c++) {
            float[] sum = new float[dim];
            System.arraycopy(sums.floats, c * dim, sum, 0, dim);
            rows.add(new ClassRow(labels.get(c), sum, counts.longs[c], new ArrayList<float[]>(), new ArrayList<String>()));
        }
        if (entries.containsKey("shots") != entries.containsKey("shot_class")) {
            throw StoreCheck.corrupt(where, "shots and shot_class must come together");
        }
        if (entries.containsKey("shots")) {
            Npy.Array s = Npy.read(entries.get("shots"), "shots.npy");
            Npy.Array c = Npy.read(entries.get("shot_class"), "shot_class.npy");
            if (!"<f4".equals(s.dtype) || c.longs == null || s.shape.length != 2 || c.shape.length != 1
                    || s.shape[0] != c.shape[0] || s.shape[1] != dim) {
                throw StoreCheck.corrupt(where, "shots of shape " + shape(s.shape) + " do not match");
            }
            int n = c.shape[0];
            List<String> ids = StoreCheck.shotIds(meta, n, where);
            for (int i = 0; i < n; i++) {
                long v = c.longs[i];
                if (v < 0 || v >= k) {
                    throw StoreCheck.corrupt(where, "a shot names a class that does not exist");
                }
                float[] row = new float[dim];
                System.arraycopy(s.floats, i * dim, row, 0, dim);
                rows.get((int) v).shots.add(row);
                rows.get((int) v).ids.add(ids == null ? null : ids.get(i));
            }
        }
        StoreCheck.shotDigests(meta, where);
        StoreCheck.classes(rows, where);
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
        store.restore(templates, rows);
        return store;
    }

    /** The store as .npz bytes: every class with its kept shots and their ids ("shot_ids", null where unknown). */
    public static byte[] toBytes(ClassStore store) throws IOException {
        List<ClassRow> rows = store.snapshotRows();
        int dim = store.embeddingDim();
        List<Object> labels = new ArrayList<Object>();
        List<Object> ids = new ArrayList<Object>();
        int n = 0;
        for (ClassRow r : rows) {
            labels.add(r.label);
            ids.addAll(r.ids);
            n += r.shots.size();
        }
        Map<String, Object> meta = new LinkedHashMap<String, Object>();
        meta.put("format", FORMAT);
        meta.put("format_version", FORMAT_VERSION);
        meta.put("labels", labels);
        meta.put("scale", store.scaleValue());
        meta.put("embedding_dim", dim);
        meta.put("extractor_fingerprint", store.fingerprint());
        meta.put("templates_per_class", store.templatesPerClass());
        meta.put("shot_ids", ids);
        float[] sums = new float[rows.size() * dim];
        long[] counts = new long[rows.size()];
        float[] shots = new float[n * dim];
        long[] cls = new long[n];
        int i = 0;
        for (int c = 0; c < rows.size(); c++) {
            ClassRow r = rows.get(c);
            System.arraycopy(r.sum, 0, sums, c * dim, dim);
            counts[c] = r.count;
            for (float[] v : r.shots) {
                System.arraycopy(v, 0, shots, i * dim, dim);
                cls[i++] = c;
            }
        }
        Map<String, byte[]> entries = new LinkedHashMap<String, byte[]>();
        entries.put("meta", Npy.writeBytes(Json.write(meta).getBytes(UTF8)));
        entries.put("sums", Npy.writeFloats(sums, rows.size(), dim));
        entries.put("counts", Npy.writeLongs(counts, rows.size()));
        entries.put("shots", Npy.writeFloats(shots, n, dim));
        entries.put("shot_class", Npy.writeLongs(cls, n));
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
