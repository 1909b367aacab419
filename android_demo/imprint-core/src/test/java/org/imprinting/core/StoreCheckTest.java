package org.imprinting.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.Test;

/** Hostile and broken class stores: every one is refused with one line, as the Python runtime refuses them. */
public class StoreCheckTest {
    private static final String GOOD_META = "{\"format\": \"imprinting-class-store\", \"format_version\": 1, \"labels\": [\"a\", \"b\"], "
            + "\"scale\": 10.0, \"embedding_dim\": 2, \"extractor_fingerprint\": \"fp\", \"templates_per_class\": 1";

    /** A store file: meta text, sums (K, 2), counts, and shots (N, 2) with their classes (null for none). */
    static byte[] npz(String meta, float[] sums, long[] counts, float[] shots, long[] cls) throws Exception {
        Map<String, byte[]> e = new LinkedHashMap<String, byte[]>();
        e.put("meta", Npy.writeBytes(meta.getBytes("UTF-8")));
        e.put("sums", Npy.writeFloats(sums, sums.length / 2, 2));
        e.put("counts", Npy.writeLongs(counts, counts.length));
        if (shots != null) {
            e.put("shots", Npy.writeFloats(shots, shots.length / 2, 2));
            e.put("shot_class", Npy.writeLongs(cls, cls.length));
        }
        return Npz.write(e);
    }

    private static final float[] SUMS = {1.6f, 0.8f, 0, 3};
    private static final long[] COUNTS = {2, 3};
    private static final float[] SHOTS = {1, 0, 0.6f, 0.8f, 0, 1};
    private static final long[] CLS = {0, 0, 1};

    private static void refused(String why, byte[] file, String expect) {
        try {
            ClassStoreFile.fromBytes(file, "bad.npz", null, 0);
            fail("accepted a store with " + why);
        } catch (IllegalArgumentException e) {
            String m = e.getMessage();
            assertTrue(why + ": " + m, m.contains(expect));
            assertTrue(why + ": not one line: " + m, !m.contains("\n"));
        }
    }

    @Test
    public void aWellFormedStoreLoadsWithItsIds() throws Exception {
        ClassStore s = ClassStoreFile.fromBytes(npz(GOOD_META + ", \"shot_ids\": [\"p1\", null, \"p3\"]}", SUMS, COUNTS, SHOTS, CLS),
                "good.npz", "fp", 2);
        assertEquals(Arrays.asList("p1", null), s.shotIds("a"));
        assertEquals(Arrays.asList("p3"), s.shotIds("b"));
        assertEquals(2, s.shots("a").size());
        assertEquals(10.0, s.scaleValue(), 0);
        // Without ids every id is unknown; the legacy shot_digests are read and checked, not used.
        ClassStore old = ClassStoreFile.fromBytes(npz(GOOD_META + ", \"shot_digests\": {\"a\": [\"d1\"]}}", SUMS, COUNTS, SHOTS, CLS),
                "old.npz", null, 0);
        assertEquals(Arrays.asList(null, null), old.shotIds("a"));
        // As in Python: digests of classes the store lacks are not refused; shot_ids without shots are ignored; an
        // integer scale and an embedding_dim of 2.0 are numbers all the same.
        String loose = "{\"format\": \"imprinting-class-store\", \"format_version\": 1, \"labels\": [\"a\", \"b\"], "
                + "\"scale\": 10, \"embedding_dim\": 2.0, \"extractor_fingerprint\": \"fp\", \"shot_ids\": [\"x\"], "
                + "\"shot_digests\": {\"zz\": [\"d\"]}}";
        assertEquals(2L, ClassStoreFile.fromBytes(npz(loose, SUMS, COUNTS, null, null), "loose.npz", null, 0).count("a"));
        // Two shots of a class with the same bits and no ids would get one content id from Python: refused.
        refused("the same shot twice without ids", npz(GOOD_META + "}", new float[] {2, 0, 0, 3}, new long[] {2, 3},
                new float[] {1, 0, 1, 0}, new long[] {0, 0}), "twice");
    }

    @Test
    public void refusesBrokenCountsSumsAndShots() throws Exception {
        String m = GOOD_META + "}";
        refused("a count of 0", npz(m, SUMS, new long[] {2, 0}, null, null), "count is outside [1, 2^40]");
        refused("a count over 2^40", npz(m, SUMS, new long[] {2, (1L << 40) + 1}, null, null), "count");
        refused("a count of 2^63-1", npz(m, SUMS, new long[] {2, Long.MAX_VALUE}, null, null), "count");
        refused("an absurd sum", npz(m, new float[] {1.6f, 0.8f, 0, 3e38f}, COUNTS, null, null), "norm");
        refused("a sum longer than its count", npz(m, new float[] {1.6f, 0.8f, 0, 3.1f}, COUNTS, null, null), "norm");
        refused("an infinite sum", npz(m, new float[] {1.6f, 0.8f, 0, Float.POSITIVE_INFINITY}, COUNTS, null, null), "NaN or infinity");
        refused("a shot of norm 1e30", npz(m, SUMS, COUNTS, new float[] {1, 0, 0.6f, 0.8f, 0, 1e30f}, CLS), "norm");
        refused("a shot not of unit length", npz(m, SUMS, COUNTS, new float[] {1, 0, 0.6f, 0.8f, 0, 1.01f}, CLS), "not a unit row");
        refused("a NaN shot", npz(m, SUMS, COUNTS, new float[] {1, 0, 0.6f, 0.8f, 0, Float.NaN}, CLS), "NaN or infinity");
        refused("more shots than its count", npz(m, SUMS, COUNTS, SHOTS, new long[] {0, 0, 0}), "keeps 3 shots");
        refused("all shots kept but another sum", npz(m, new float[] {1.5f, 0.8f, 0, 3}, COUNTS, SHOTS, CLS), "their sum is not its sum");
        refused("a shot of no class", npz(m, SUMS, COUNTS, SHOTS, new long[] {0, 0, 2}), "does not exist");
    }

    @Test
    public void refusesBrokenMetadata() throws Exception {
        String tail = ", \"embedding_dim\": 2, \"extractor_fingerprint\": \"fp\"";
        String head = "{\"format\": \"imprinting-class-store\", \"format_version\": 1, ";
        String[][] cases = {
            {"a non-NFC label", head + "\"labels\": [\"Cafe\\u0301\", \"b\"], \"scale\": 10" + tail + "}", "NFC"},
            {"a label with spaces", head + "\"labels\": [\" a\", \"b\"], \"scale\": 10" + tail + "}", "spaces"},
            {"an invisible label", head + "\"labels\": [\"a\\u200b\", \"b\"], \"scale\": 10" + tail + "}", "invisible"},
            {"duplicate labels", head + "\"labels\": [\"a\", \"a\"], \"scale\": 10" + tail + "}", "appears twice"},
            {"an infinite scale", head + "\"labels\": [\"a\", \"b\"], \"scale\": Infinity" + tail + "}", "NaN and Infinity"},
            {"a NaN scale", head + "\"labels\": [\"a\", \"b\"], \"scale\": NaN" + tail + "}", "NaN and Infinity"},
            {"an overflowing scale", head + "\"labels\": [\"a\", \"b\"], \"scale\": 1e999" + tail + "}", "scale"},
            {"a scale over 1000", head + "\"labels\": [\"a\", \"b\"], \"scale\": 1000.5" + tail + "}", "scale"},
            {"a scale of 0", head + "\"labels\": [\"a\", \"b\"], \"scale\": 0" + tail + "}", "scale"},
            {"a string scale", head + "\"labels\": [\"a\", \"b\"], \"scale\": \"10\"" + tail + "}", "scale"},
            {"65 templates", head + "\"labels\": [\"a\", \"b\"], \"scale\": 10, \"templates_per_class\": 65" + tail + "}", "templates_per_class"},
            {"1e30 templates", head + "\"labels\": [\"a\", \"b\"], \"scale\": 10, \"templates_per_class\": 1e30" + tail + "}", "templates_per_class"},
            {"2.5 templates", head + "\"labels\": [\"a\", \"b\"], \"scale\": 10, \"templates_per_class\": 2.5" + tail + "}", "templates_per_class"},
            {"shot ids of another length", GOOD_META + ", \"shot_ids\": [\"p1\", \"p2\"]}", "shot_ids"},
            {"a shot id of 65 characters", GOOD_META + ", \"shot_ids\": [\"p1\", null, \"" + new String(new char[65]).replace('\0', 'x') + "\"]}", "1..64"},
            {"an empty shot id", GOOD_META + ", \"shot_ids\": [\"p1\", null, \"\"]}", "1..64"},
            {"a numeric shot id", GOOD_META + ", \"shot_ids\": [\"p1\", null, 7]}", "string or null"},
            {"a shot twice", GOOD_META + ", \"shot_ids\": [\"p1\", \"p1\", \"p3\"]}", "holds shot p1 twice"},
            {"a fingerprint that is not text", head + "\"labels\": [\"a\", \"b\"], \"scale\": 10, \"embedding_dim\": 2, "
                + "\"extractor_fingerprint\": 7}", "extractor_fingerprint"},
            {"2.0 templates", head + "\"labels\": [\"a\", \"b\"], \"scale\": 10, \"templates_per_class\": 2.0" + tail + "}", "templates_per_class"},
            {"malformed shot digests", GOOD_META + ", \"shot_digests\": {\"a\": \"d\"}}", "shot_digests"},
            {"labels that are not strings", head + "\"labels\": [1, 2], \"scale\": 10" + tail + "}", "labels"},
        };
        for (String[] c : cases) {
            refused(c[0], npz(c[1], SUMS, COUNTS, SHOTS, CLS), c[2]);
        }
        StringBuilder deep = new StringBuilder(GOOD_META + ", \"x\": ");
        for (int i = 0; i < 100000; i++) {
            deep.append('[');
        }
        refused("metadata nested 100000 levels deep", npz(deep.toString(), SUMS, COUNTS, SHOTS, CLS), "nested more than");
    }

    /** The same verdict as Python's read_store on each of golden.json's "hostile" stores, refusals in one line. */
    @Test
    public void acceptsAndRefusesWhatPythonDoes() throws Exception {
        Golden g = Golden.load();
        List<Map<String, Object>> cases = g.list("hostile");
        assertTrue(cases.size() >= 40);
        for (Map<String, Object> c : cases) {
            String verdict = null;
            try {
                ClassStoreFile.read(new File(g.dir, (String) c.get("store")), null, 0);
            } catch (IllegalArgumentException e) {
                verdict = e.getMessage();
                assertTrue(c.get("name") + ": not one line: " + verdict, !verdict.contains("\n"));
            }
            assertEquals(c.get("name") + ": Python says " + c.get("error") + ", Java " + verdict, c.get("accepted"), verdict == null);
        }
    }

    @Test
    public void refusesForgedArrays() throws Exception {
        Map<String, byte[]> e = new LinkedHashMap<String, byte[]>();
        e.put("meta", Npy.writeBytes((GOOD_META + "}").getBytes("UTF-8")));
        e.put("sums", Npy.writeFloats(SUMS, 2, 2));
        byte[] counts = Npy.writeLongs(COUNTS, 2);
        // The same bytes declared as uint64 (what a count of 2^64-1 would come in) and as an impossible shape.
        e.put("counts", new String(counts, "ISO-8859-1").replace("'<i8'", "'<u8'").getBytes("ISO-8859-1"));
        refused("uint64 counts", Npz.write(e), "unsupported dtype");
        e.put("counts", new String(counts, "ISO-8859-1").replace("(2,)", "(99999999999,)").getBytes("ISO-8859-1"));
        refused("a forged shape", Npz.write(e), "shape");
        e.put("counts", new String(counts, "ISO-8859-1").replace("(2,)", "(2000000000,)").getBytes("ISO-8859-1"));
        refused("a shape larger than its data", Npz.write(e), "truncated");
    }
}
