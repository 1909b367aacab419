package org.imprinting.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import org.junit.Test;

/** ClassStore.combine against the Python runtime's store_sync.combine (golden.json "merge"). */
public class MergeTest {
    private static ClassStore read(Golden g, String name) throws Exception {
        return ClassStoreFile.read(new File(g.dir, name), g.manifest.fingerprint, g.manifest.embeddingDim);
    }

    private static int[] bits(float[] v) {
        int[] out = new int[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = Float.floatToRawIntBits(v[i]);
        }
        return out;
    }

    /** The same classes bit for bit: labels, counts, float32 sums and shots, digests and the file's facts. */
    static void assertIdentical(ClassStore want, ClassStore got) {
        assertEquals(want.labels(), got.labels());
        assertEquals(want.fingerprint(), got.fingerprint());
        assertEquals(want.scale(), got.scale(), 0f);
        assertEquals(want.embeddingDim(), got.embeddingDim());
        assertEquals(want.templatesPerClass(), got.templatesPerClass());
        for (String l : want.labels()) {
            assertEquals(l, want.count(l), got.count(l));
            assertArrayEquals(l + " sum", bits(want.sum(l)), bits(got.sum(l)));
            assertEquals(l + " digests", want.digests(l), got.digests(l));
            List<float[]> ws = want.shots(l);
            List<float[]> gs = got.shots(l);
            assertEquals(l + " keeps shots", ws == null, gs == null);
            if (ws != null) {
                assertEquals(l + " shots", ws.size(), gs.size());
                for (int i = 0; i < ws.size(); i++) {
                    assertArrayEquals(l + " shot " + i, bits(ws.get(i)), bits(gs.get(i)));
                }
            }
        }
    }

    @Test
    public void mergesAsPythonDoesBitForBit() throws Exception {
        Golden g = Golden.load();
        Map<String, Object> m = g.map("merge");
        int topK = ((Number) m.get("top_k")).intValue();
        for (String key : new String[] {"merged", "merged_renamed"}) {
            ClassStore a = read(g, "merge_a.npz");
            ClassStore b = read(g, "merge_b.npz");
            List<String> aLabels = a.labels();
            ClassStore got = ClassStore.combine(Arrays.asList(a, b), "merged_renamed".equals(key));
            @SuppressWarnings("unchecked")
            Map<String, Object> want = (Map<String, Object>) m.get(key);
            assertEquals(key, want.get("labels"), got.labels());
            assertIdentical(read(g, (String) want.get("store")), got);
            @SuppressWarnings("unchecked")
            List<Map<String, Object>> predictions = (List<Map<String, Object>>) want.get("predictions");
            ClassStoreTest.assertPredictions(g, got, key, predictions, topK, 1e-5f);
            // The inputs are left as they were; the merged store survives the file format.
            assertEquals(aLabels, a.labels());
            assertEquals(2L, a.count("red"));
            assertIdentical(got, ClassStoreFile.fromBytes(ClassStoreFile.toBytes(got), "memory", null, 0));
            File out = Golden.outDir();
            if (out != null) {
                ClassStoreFile.write(new File(out, "java_" + key + ".npz"), got);
            }
        }
    }

    @Test
    public void refusesOtherModelsWithPythonsLine() throws Exception {
        Golden g = Golden.load();
        ClassStore a = read(g, "merge_a.npz");
        for (Map<String, Object> r : castList(g.map("merge").get("refused"))) {
            ClassStore other = ClassStoreFile.read(new File(g.dir, (String) r.get("store")), null, 0);
            try {
                a.mergedWith(other, false);
                fail("merged " + r.get("store"));
            } catch (IllegalArgumentException e) {
                assertEquals(r.get("error"), e.getMessage());
            }
        }
    }

    @Test
    public void digestsFollowTheirClass() throws Exception {
        Golden g = Golden.load();
        ClassStore a = read(g, "merge_a.npz");
        List<String> red = a.digests("red");
        assertEquals(2, red.size());
        a.rename("red", "Rot ß 赤");
        a.remove("green");
        ClassStore back = ClassStoreFile.fromBytes(ClassStoreFile.toBytes(a), "memory", null, 0);
        assertEquals(red, back.digests("Rot ß 赤"));
        assertEquals(Collections.emptyList(), back.digests("red (2)"));
    }

    @Test
    public void mergesStoresWithoutShotsAndRefusesEmptyOrTooLongNames() {
        ClassStore a = new ClassStore(3, 10f, "fp");
        a.learn("cat", new float[] {1, 0, 0});
        ClassStore b = new ClassStore(3, 10f, "fp");
        b.learn("dog", new float[] {0, 1, 0});
        b.learn("cat", new float[] {0, 0, 2}, new float[] {0, 3, 0});
        ClassStore c = a.mergedWith(b, false);
        assertEquals(Arrays.asList("cat", "dog"), c.labels());
        assertEquals(3L, c.count("cat"));
        assertArrayEquals(new float[] {1, 1, 1}, c.sum("cat"), 0f);
        assertNull(c.shots("cat"));
        assertIdentical(a, ClassStore.combine(Collections.singletonList(a), true));
        try {
            ClassStore.combine(Collections.<ClassStore>emptyList(), false);
            fail("merged nothing");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().startsWith("nothing to merge"));
        }
        String long100 = new String(new char[100]).replace('\0', 'x');
        a.learn(long100, new float[] {1, 1, 0});
        b.learn(long100, new float[] {1, 1, 0});
        assertEquals(2L, a.mergedWith(b, false).count(long100));
        try {
            a.mergedWith(b, true);
            fail("kept a 104-character label");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("apart as \"" + long100 + " (2)\": a label must be at most 100"));
        }
    }

    @SuppressWarnings("unchecked")
    private static List<Map<String, Object>> castList(Object o) {
        return (List<Map<String, Object>>) o;
    }
}
