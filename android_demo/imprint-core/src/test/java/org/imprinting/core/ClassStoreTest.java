package org.imprinting.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.util.List;
import java.util.Map;
import org.junit.Test;

/** Imprinting, classification and the store file against the Python runtime's golden vectors. */
public class ClassStoreTest {
    // Stored float32 tensors: Java and NumPy may sum in a different order, so a few ulps, never more.
    private static final float TIGHT = 2e-6f;

    private static ClassStore imprintShots(Golden g) throws Exception {
        Npy.Array shots = g.npy("shots.npy");
        @SuppressWarnings("unchecked")
        List<String> labels = (List<String>) g.json.get("shot_labels");
        ClassStore s = new ClassStore(g.manifest.embeddingDim, g.manifest.scale, g.manifest.fingerprint);
        for (int i = 0; i < labels.size(); i++) {
            s.learn(labels.get(i), Golden.row(shots, i));
        }
        return s;
    }

    static void assertSameStore(ClassStore want, ClassStore got) {
        assertEquals(want.labels(), got.labels());
        assertEquals(want.fingerprint(), got.fingerprint());
        assertEquals(want.scale(), got.scale(), 0f);
        for (String l : want.labels()) {
            assertEquals(l, want.count(l), got.count(l));
            assertArrayEquals(l, want.sum(l), got.sum(l), TIGHT);
        }
    }

    private static void assertPredictions(Golden g, ClassStore s, String key) throws Exception {
        assertPredictions(g, s, key, g.list(key), ((Number) g.json.get("top_k")).intValue(), 1e-5f);
    }

    /** The store's top-k answers to the golden queries against Python's, scores and probabilities within tol. */
    static void assertPredictions(Golden g, ClassStore s, String key, List<Map<String, Object>> want, int topK, float tol)
            throws Exception {
        Npy.Array q = g.npy("queries.npy");
        for (int i = 0; i < want.size(); i++) {
            Classification c = s.classify(Golden.row(q, i), topK);
            Map<String, Object> w = want.get(i);
            List<?> labels = (List<?>) w.get("labels");
            List<?> cos = (List<?>) w.get("cosines");
            List<?> prob = (List<?>) w.get("probabilities");
            assertEquals(key + " " + i + " length", labels.size(), c.labels.length);
            for (int j = 0; j < labels.size(); j++) {
                assertEquals(key + " " + i + " label " + j, labels.get(j), c.labels[j]);
                assertEquals(key + " " + i + " cosine " + j, ((Number) cos.get(j)).floatValue(), c.cosines[j], tol);
                assertEquals(key + " " + i + " probability " + j, ((Number) prob.get(j)).floatValue(), c.probabilities[j], tol);
            }
            assertEquals(key + " " + i + " unknown", w.get("unknown"), c.unknown);
            assertEquals(key + " " + i + " label()", w.get("label"), c.label());
        }
    }

    @Test
    public void javaImprintingEqualsPythonStore() throws Exception {
        Golden g = Golden.load();
        ClassStore python = ClassStoreFile.read(new File(g.dir, "store.npz"), g.manifest.fingerprint, g.manifest.embeddingDim);
        ClassStore java = imprintShots(g);
        assertSameStore(python, java);
        assertEquals(3L, java.count("red"));
        File out = Golden.outDir();
        if (out != null) {
            ClassStoreFile.write(new File(out, "java_imprinted.npz"), java);
        }
    }

    @Test
    public void predictionsMatchPython() throws Exception {
        Golden g = Golden.load();
        ClassStore s = ClassStoreFile.read(new File(g.dir, "store.npz"), null, 0);
        assertPredictions(g, s, "predictions");
        Map<?, ?> p = (Map<?, ?>) g.json.get("unknown_policy");
        s.setUnknownPolicy(new UnknownPolicy(((Number) p.get("min_cosine")).floatValue(), ((Number) p.get("min_margin")).floatValue()));
        assertPredictions(g, s, "predictions_unknown");
    }

    @Test
    public void renameAndRemoveMatchPython() throws Exception {
        Golden g = Golden.load();
        ClassStore s = ClassStoreFile.read(new File(g.dir, "store.npz"), null, 0);
        @SuppressWarnings("unchecked")
        List<String> edited = (List<String>) g.json.get("edited_labels");
        s.rename("red", edited.get(0));
        s.remove("green");
        assertEquals(edited, s.labels());
        assertPredictions(g, s, "predictions_edited");
        // The renamed, non-ASCII label survives the file format in both directions.
        ClassStore back = ClassStoreFile.fromBytes(ClassStoreFile.toBytes(s), "memory", null, 0);
        assertSameStore(s, back);
        File out = Golden.outDir();
        if (out != null) {
            ClassStoreFile.write(new File(out, "java_edited.npz"), s);
        }
    }

    @Test
    public void storeWithShotsRoundTrips() throws Exception {
        Golden g = Golden.load();
        ClassStore s = ClassStoreFile.read(new File(g.dir, "store_shots.npz"), g.manifest.fingerprint, 0);
        assertEquals(2, s.templatesPerClass());
        int kept = 0;
        for (String l : s.labels()) {
            kept += s.shots(l).size();
            assertEquals(s.shots(l).size(), s.shotIds(l).size());
        }
        assertEquals(9, kept);
        s.addShots("blue", Golden.row(g.npy("queries.npy"), 2));
        s.remove("red");
        ClassStore back = ClassStoreFile.fromBytes(ClassStoreFile.toBytes(s), "memory", null, 0);
        assertSameStore(s, back);
        MergeTest.assertIdentical(s, back);
        assertEquals(3, back.shots("green").size());
        assertEquals(4, back.shots("blue").size());
        assertNull(back.shotIds("blue").get(3));  // taught here without an id
        File out = Golden.outDir();
        if (out != null) {
            ClassStoreFile.write(new File(out, "java_shots.npz"), s);
        }
    }

    @Test
    public void refusesAnotherExtractorNamingBoth() throws Exception {
        Golden g = Golden.load();
        try {
            ClassStoreFile.read(new File(g.dir, "store.npz"), "sha256:0123456789abcdef0123", 0);
            fail("expected a refusal");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("was made with extractor " + g.manifest.fingerprint.substring(0, 16)));
            assertTrue(e.getMessage(), e.getMessage().contains("but this model is sha256:012345678"));
        }
        try {
            ClassStoreFile.read(new File(g.dir, "store.npz"), null, 7);
            fail("expected a refusal");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("-d embeddings but this model makes 7-d ones"));
        }
    }

    @Test
    public void refusesCorruptFiles() throws Exception {
        Golden g = Golden.load();
        byte[] good = g.bytes("store.npz");
        byte[] cut = new byte[good.length / 2];
        System.arraycopy(good, 0, cut, 0, cut.length);
        try {
            ClassStoreFile.fromBytes(cut, "cut.npz", null, 0);
            fail("expected a refusal");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("truncated or corrupt"));
        }
        try {
            ClassStoreFile.read(new File(g.dir, "missing.npz"), null, 0);
            fail("expected a refusal");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().endsWith("does not exist"));
        }
    }

    @Test
    public void labelRules() {
        assertEquals("mug", Labels.validate("  mug \n"));
        // NFC, as Python: a decomposed e + combining acute becomes one character; a file must hold it so already.
        assertEquals("Caf\u00e9", Labels.validate(" Cafe\u0301"));
        Labels.checkStored("Caf\u00e9");
        String[] bad = {"", "   ", "a\tb", new String(new char[101]).replace('\0', 'x'), "cat\u200b", "a\ue000", "a\ud800"};
        String[] why = {"must not be empty", "must not be empty", "control or invisible", "at most 100 characters, got 101",
            "control or invisible", "control or invisible", "control or invisible"};
        for (int i = 0; i < bad.length; i++) {
            try {
                Labels.validate(bad[i]);
                fail("accepted " + bad[i]);
            } catch (IllegalArgumentException e) {
                assertTrue(e.getMessage(), e.getMessage().contains(why[i]));
            }
        }
        for (String stored : new String[] {"Cafe\u0301", " mug", "mug\u00a0"}) {
            try {
                Labels.checkStored(stored);
                fail("a store may not hold " + stored);
            } catch (IllegalArgumentException e) {
                assertTrue(e.getMessage(), e.getMessage().contains("not in NFC form or has spaces"));
            }
        }
        // 100 emoji are 200 UTF-16 chars but 100 characters, as Python counts them.
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < 100; i++) {
            b.appendCodePoint(0x1F600);
        }
        assertEquals(b.toString(), Labels.validate(b.toString()));
    }

    @Test
    public void editingErrorsSayWhatToDo() {
        ClassStore s = new ClassStore(3, 10f, "fp");
        try {
            s.classify(new float[] {1, 0, 0}, 1);
            fail("classified with no classes");
        } catch (IllegalStateException e) {
            assertTrue(e.getMessage().contains("imprint one first"));
        }
        s.imprint("a", new float[] {1, 0, 0});
        s.imprint("b", new float[] {0, 2, 0}, new float[] {0, 0, 1});
        assertEquals(2L, s.count("b"));
        String[][] cases = {{"imprint", "a", "exists already; use addShots"}, {"rename", "b", "that label exists already"},
            {"remove", "zzz", "no class named \"zzz\"; classes: \"a\", \"b\""}};
        for (String[] c : cases) {
            try {
                if ("imprint".equals(c[0])) {
                    s.imprint(c[1], new float[] {1, 1, 0});
                } else if ("rename".equals(c[0])) {
                    s.rename("a", c[1]);
                } else {
                    s.remove(c[1]);
                }
                fail(c[0] + " should fail");
            } catch (IllegalArgumentException e) {
                assertTrue(e.getMessage(), e.getMessage().contains(c[2]));
            }
        }
        try {
            s.addShots("a", new float[] {0, 0, 0});
            fail("imprinted a zero vector");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage().contains("all zeros"));
        }
        Classification c = s.classify(new float[] {1, 0.1f, 0}, 5);
        assertEquals(2, c.labels.length);
        assertEquals("a", c.label());
        s.setUnknownPolicy(new UnknownPolicy(0.999f, Float.NaN));
        assertNull(s.classify(new float[] {1, 0.1f, 0}, 1).label());
        s.remove("a");
        assertFalse(s.contains("a"));
        assertEquals(1, s.classify(new float[] {0, 1, 1}, 3).labels.length);
    }
}
