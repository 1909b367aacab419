package org.imprinting.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import org.junit.Test;

/**
 * Merging by shot identity (ClassMerge): idempotent and exact, against the spec and against the Python runtime's
 * store_sync.combine (golden.json "merge").
 */
public class MergeTest {
    private static ClassStore read(Golden g, String name) throws Exception {
        return ClassStoreFile.read(new File(g.dir, name), g.manifest.fingerprint, g.manifest.embeddingDim);
    }

    static int[] bits(float[] v) {
        int[] out = new int[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = Float.floatToRawIntBits(v[i]);
        }
        return out;
    }

    /** The same classes bit for bit: labels, counts, float32 sums and shots, shot ids and the file's settings. */
    static void assertIdentical(ClassStore want, ClassStore got) {
        assertEquals(want.labels(), got.labels());
        assertEquals(want.fingerprint(), got.fingerprint());
        assertEquals(want.scaleValue(), got.scaleValue(), 0);
        assertEquals(want.embeddingDim(), got.embeddingDim());
        assertEquals(want.templatesPerClass(), got.templatesPerClass());
        for (String l : want.labels()) {
            assertEquals(l, want.count(l), got.count(l));
            assertArrayEquals(l + " sum", bits(want.sum(l)), bits(got.sum(l)));
            assertEquals(l + " ids", want.shotIds(l), got.shotIds(l));
            List<float[]> ws = want.shots(l);
            List<float[]> gs = got.shots(l);
            assertEquals(l + " shots", ws.size(), gs.size());
            for (int i = 0; i < ws.size(); i++) {
                assertArrayEquals(l + " shot " + i, bits(ws.get(i)), bits(gs.get(i)));
            }
        }
    }

    // ----- the spec, on small hand-made stores -------------------------------------------------------

    private static float[] unit(double... v) {
        double n = 0;
        for (double x : v) {
            n += x * x;
        }
        float[] out = new float[v.length];
        for (int i = 0; i < v.length; i++) {
            out[i] = (float) (v[i] / Math.sqrt(n));
        }
        return out;
    }

    /** A class as a file would hold it: count, sum, kept shots and ids (the residual is the rest). */
    private static ClassRow row(String label, long count, float[] sum, List<float[]> shots, List<String> ids) {
        return new ClassRow(label, sum, count, new ArrayList<float[]>(shots), new ArrayList<String>(ids));
    }

    private static ClassRow base(String label, long count, float[] sum) {
        return row(label, count, sum, Collections.<float[]>emptyList(), Collections.<String>emptyList());
    }

    private static ClassStore store(double scale, int templates, ClassRow... rows) {
        ClassStore s = new ClassStore(3, scale, "fp");
        List<ClassRow> copies = new ArrayList<ClassRow>();
        for (ClassRow r : rows) {
            copies.add(r.copy());
        }
        s.restore(templates, copies);
        return s;
    }

    private static final float[] P1 = unit(1, 0.1, 0);
    private static final float[] P2 = unit(0.9, 0.3, 0.1);
    private static final float[] P3 = unit(1, -0.2, 0.3);
    private static final float[] Q1 = unit(0, 1, 0.2);
    private static final float[] BASE = {40f, 3f, -1f};  // a base class: 50 training images, no shots kept

    /** A phone's store: a base class, a class of known photos, a class of shots without ids, a mixed one. */
    private static ClassStore phone() {
        ClassStore s = store(10, 1, base("base", 50, BASE.clone()));
        s.learnShots("cat", Arrays.asList("p1", "p2"), P1, P2);
        s.learn("dog", Q1);
        s.merge(store(10, 1, row("mixed", 4, new float[] {1.5f, 1.2f, 0.3f}, Arrays.asList(P3), Arrays.asList("p3"))), false);
        return s;
    }

    @Test
    public void mergingAStoreIntoItselfChangesNothing() throws Exception {
        ClassStore a = phone();
        assertIdentical(a, a.mergedWith(a, false));
        assertIdentical(a, a.mergedWith(a, true));  // every class would add nothing: none comes in renamed
        ClassStore b = a.copy();
        b.merge(b, false);
        assertIdentical(a, b);
        // The same after a trip through the file format (the null ids stay null).
        ClassStore back = ClassStoreFile.fromBytes(ClassStoreFile.toBytes(a), "memory", null, 0);
        assertIdentical(a, back);
        assertIdentical(a, ClassStore.combine(Arrays.asList(a, back, a), false));
    }

    @Test
    public void importingTwiceEqualsImportingOnce() {
        ClassStore a = phone();
        ClassStore b = store(10, 1);
        b.learnShots("cat", Arrays.asList("p2", "p4"), P2, P3);
        b.learnShots("owl", Arrays.asList("o1"), Q1);
        for (boolean rename : new boolean[] {false, true}) {
            ClassStore once = a.mergedWith(b, rename);
            assertIdentical(once, ClassStore.combine(Arrays.asList(a, b, b), rename));
            assertIdentical(once, once.mergedWith(once, rename));
        }
    }

    @Test
    public void exportingASubsetAndImportingItBackIsTheIdentity() {
        ClassStore a = phone();
        ClassStore part = a.copy();
        part.remove("dog");
        part.remove("base");
        assertIdentical(a, a.mergedWith(part, false));
        assertIdentical(a, a.mergedWith(part, true));
        ClassStore renamed = a.copy();
        renamed.rename("cat", "Katze");
        renamed.merge(part, false);  // cat comes back as a class of its own; Katze keeps its ids
        assertEquals(Arrays.asList("base", "Katze", "dog", "mixed", "cat"), renamed.labels());
        assertEquals(Arrays.asList("p1", "p2"), renamed.shotIds("Katze"));
    }

    @Test
    public void newShotsAddExactlyInFloat64RoundedOnce() {
        ClassStore a = phone();
        ClassStore b = store(10, 1);
        // p2 is held already (same id, other bits: a recomputed embedding of the same photo); q1 without an id has
        // the very bits of dog's shot; p4 and a new dog shot are new.
        float[] p2Again = unit(0.9, 0.3, 0.11);
        b.learnShots("cat", Arrays.asList("p2", "p4", "p4"), p2Again, P3, P3);
        b.learnShots("dog", Arrays.asList((String) null, null), Q1, P1);
        b.learn("zebra", P2);
        ClassStore m = a.mergedWith(b, false);
        assertEquals(Arrays.asList("base", "cat", "dog", "mixed", "zebra"), m.labels());
        assertEquals(3L, m.count("cat"));
        assertEquals(Arrays.asList("p1", "p2", "p4"), m.shotIds("cat"));
        float[] want = new float[3];
        float[] cat = a.sum("cat");
        float[] p4 = b.shots("cat").get(1);
        for (int i = 0; i < 3; i++) {
            want[i] = (float) ((double) cat[i] + (double) p4[i]);
        }
        assertArrayEquals(bits(want), bits(m.sum("cat")));
        assertEquals(2L, m.count("dog"));
        assertEquals(Arrays.asList(null, null), m.shotIds("dog"));
        assertArrayEquals(bits(a.normalize(P1)), bits(m.shots("dog").get(1)));
        assertEquals(1L, m.count("zebra"));
        assertIdentical(a, phone());  // the inputs are left as they were
    }

    @Test
    public void residualsAddOnlyWhenTheyDiffer() {
        ClassStore a = phone();
        // The same base class with a shot taught into it: the shot adds, the residual (the same 50 images) does not.
        ClassStore b = store(10, 1, base("base", 50, BASE.clone()));
        b.learnShots("base", Arrays.asList("b1"), P1);
        ClassStore m = a.mergedWith(b, false);
        assertEquals(51L, m.count("base"));
        assertEquals(Arrays.asList("b1"), m.shotIds("base"));
        assertIdentical(m, m.mergedWith(b, false));
        // A residual within 1e-4 per shot of ours is the same one; further off, or of another count, it adds.
        ClassStore c = store(10, 1, base("base", 50, new float[] {BASE[0] + 0.004f, BASE[1], BASE[2]}));
        assertIdentical(a, a.mergedWith(c, false));
        float[] far = {BASE[0] + 0.006f, BASE[1], BASE[2]};
        ClassStore d = store(10, 1, base("base", 50, far));
        assertEquals(100L, a.mergedWith(d, false).count("base"));
        assertEquals((float) ((double) BASE[0] + (double) far[0]), a.mergedWith(d, false).sum("base")[0], 0f);
        ClassStore e = store(10, 1, base("base", 30, new float[] {20f, 1f, 0f}));
        assertEquals(80L, a.mergedWith(e, false).count("base"));
        // mixed keeps 1 shot (p3) and a residual of 3: the very same class adds nothing.
        ClassStore f = store(10, 1, row("mixed", 4, new float[] {1.5f, 1.2f, 0.3f}, Arrays.asList(P3), Arrays.asList("p3")));
        assertIdentical(a, a.mergedWith(f, false));
    }

    @Test
    public void renamedConflictsComeInApartOrNotAtAll() {
        ClassStore a = phone();
        ClassStore b = store(10, 1);
        b.learnShots("cat", Arrays.asList("p9"), P3);
        ClassStore m = a.mergedWith(b, true);
        assertEquals(Arrays.asList("base", "cat", "dog", "mixed", "cat (2)"), m.labels());
        assertIdentical(b, onlyClass(m, "cat (2)", "cat"));
        assertEquals(2L, m.count("cat"));
        // Again: b's cat adds nothing to "cat (2)", so it is skipped; a third store's cat goes to "cat (3)".
        assertIdentical(m, m.mergedWith(b, true));
        ClassStore c = store(10, 1);
        c.learnShots("cat", Arrays.asList("p1", "p7"), P1, Q1);
        assertEquals(Arrays.asList("base", "cat", "dog", "mixed", "cat (2)", "cat (3)"), m.mergedWith(c, true).labels());
        assertEquals(2L, m.mergedWith(c, true).count("cat (3)"));
        // A gap: the namesakes are "cat", "cat (2)", ... as far as they exist (Python's rule), so with "cat (2)" gone
        // an incoming class equal to "cat (3)" is not recognized: it comes in again, as "cat (2)".
        ClassStore gap = m.mergedWith(c, true);
        gap.remove("cat (2)");
        assertEquals(Arrays.asList("base", "cat", "dog", "mixed", "cat (3)", "cat (2)"), gap.mergedWith(c, true).labels());
        assertIdentical(gap, gap.mergedWith(a, true));
    }

    /** The one class of s named label, as a store of its own under another label. */
    private static ClassStore onlyClass(ClassStore s, String label, String as) {
        ClassStore c = s.copy();
        for (String l : s.labels()) {
            if (!l.equals(label)) {
                c.remove(l);
            }
        }
        c.rename(label, as);
        return c;
    }

    @Test
    public void refusesOtherSettingsAndLeavesTheDestinationAsItWas() {
        ClassStore a = phone();
        ClassStore b = store(12.5, 1);
        b.learn("cat", P3);
        ClassStore t = store(10, 2);
        t.learn("cat", P3);
        ClassStore o = new ClassStore(3, 10.0, "other-fingerprint-123456");
        o.learn("cat", P3);
        ClassStore d = new ClassStore(4, 10.0, "fp");
        d.learn("cat", new float[] {1, 0, 0, 0});
        Object[][] cases = {
            {b, "cannot merge class stores with different settings: scale 10 and 12.5 (a merge keeps the destination's settings)"},
            {t, "cannot merge class stores with different settings: templates_per_class 1 and 2 (a merge keeps the destination's "
                + "settings)"},
            {o, "cannot merge stores of different models: fp (3-d) and other-finger (3-d)"},
            {d, "cannot merge stores of different models: fp (3-d) and fp (4-d)"},
        };
        for (Object[] c : cases) {
            ClassStore before = a.copy();
            try {
                a.merge((ClassStore) c[0], false);
                fail("merged " + c[1]);
            } catch (IllegalArgumentException e) {
                assertEquals(c[1], e.getMessage());
            }
            assertIdentical(before, a);
        }
        try {
            ClassStore.combine(Collections.<ClassStore>emptyList(), false);
            fail("merged nothing");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().startsWith("nothing to merge"));
        }
        assertEquals("1e-05", ClassMerge.pyFloat(1e-5));
        assertEquals("0.0001", ClassMerge.pyFloat(1e-4));
        assertEquals("16.473651885986328", ClassMerge.pyFloat(16.473651885986328));
        assertEquals("1e+16", ClassMerge.pyFloat(1e16));
        assertEquals("123456789012345.0", ClassMerge.pyFloat(123456789012345.0));
        // Python's format(x, "g"), what the settings refusal prints.
        String[][] g = {{"10", "10"}, {"12.5", "12.5"}, {"16.473651885986328", "16.4737"}, {"1e-05", "1e-05"},
            {"0.0001", "0.0001"}, {"999999.5", "1e+06"}, {"123456", "123456"}, {"1234567", "1.23457e+06"}, {"0.5", "0.5"},
            {"1000", "1000"}, {"-2.5", "-2.5"}, {"0.001953125", "0.00195312"}};
        for (String[] c : g) {
            assertEquals(c[0], c[1], ClassMerge.formatG(Double.parseDouble(c[0])));
        }
    }

    @Test
    public void idsFollowTheirShotsThroughEditsAndFiles() throws Exception {
        ClassStore a = phone();
        assertEquals(0, a.learnShots("cat", Arrays.asList("p1"), Q1));  // a photo taught before is skipped
        assertEquals(1, a.learnShots("cat", Arrays.asList("p5", "p5"), Q1, Q1));
        assertEquals(0, a.learnShots("cat", null, P1));  // the very bits of p1: the same shot
        a.rename("cat", "Rot ß 赤");
        a.remove("dog");
        ClassStore back = ClassStoreFile.fromBytes(ClassStoreFile.toBytes(a), "memory", null, 0);
        assertEquals(Arrays.asList("p1", "p2", "p5"), back.shotIds("Rot ß 赤"));
        assertEquals(3L, back.count("Rot ß 赤"));
        assertIdentical(a, back);
        try {
            a.learnShots("cat", Arrays.asList(""), Q1);
            fail("took an empty id");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("1..64"));
        }
        String long100 = new String(new char[100]).replace('\0', 'x');
        ClassStore x = store(10, 1);
        x.learn(long100, P1);
        ClassStore y = store(10, 1);
        y.learn(long100, P2);
        assertEquals(2L, x.mergedWith(y, false).count(long100));
        try {
            x.mergedWith(y, true);
            fail("kept a 104-character label");
        } catch (IllegalArgumentException e) {
            assertTrue(e.getMessage(), e.getMessage().contains("apart as \"" + long100 + " (2)\": a label must be at most 100"));
        }
    }

    // ----- against Python (golden.json "merge") ------------------------------------------------------

    @Test
    public void mergesAsPythonDoesBitForBit() throws Exception {
        Golden g = Golden.load();
        Map<String, Object> m = g.map("merge");
        int topK = ((Number) m.get("top_k")).intValue();
        for (Map<String, Object> c : castList(m.get("cases"))) {
            String name = (String) c.get("name");
            List<ClassStore> inputs = new ArrayList<ClassStore>();
            for (Object f : (List<?>) c.get("inputs")) {
                inputs.add(read(g, (String) f));
            }
            ClassStore first = inputs.get(0).copy();
            ClassStore got = ClassStore.combine(inputs, Boolean.TRUE.equals(c.get("rename")));
            assertEquals(name, c.get("labels"), got.labels());
            assertIdentical(read(g, (String) c.get("store")), got);
            ClassStoreTest.assertPredictions(g, got, name, castList(c.get("predictions")), topK, 1e-5f);
            assertIdentical(first, inputs.get(0));  // the inputs are left as they were
            assertIdentical(got, ClassStoreFile.fromBytes(ClassStoreFile.toBytes(got), "memory", null, 0));
            File out = Golden.outDir();
            if (out != null) {
                ClassStoreFile.write(new File(out, "java_" + name + ".npz"), got);
            }
        }
    }

    @Test
    public void randomMergesMatchPython() throws Exception {
        Golden g = Golden.load();
        List<Map<String, Object>> fuzz = castList(g.map("merge").get("fuzz"));
        assertTrue(fuzz.size() >= 40);
        for (Map<String, Object> c : fuzz) {
            List<ClassStore> inputs = new ArrayList<ClassStore>();
            for (Object f : (List<?>) c.get("inputs")) {
                inputs.add(read(g, (String) f));
            }
            try {
                assertIdentical(read(g, (String) c.get("store")), ClassStore.combine(inputs, Boolean.TRUE.equals(c.get("rename"))));
            } catch (AssertionError e) {
                throw new AssertionError(c.get("store") + ": " + e.getMessage(), e);
            }
        }
    }

    @Test
    public void refusesWhatPythonRefusesWithPythonsLine() throws Exception {
        Golden g = Golden.load();
        ClassStore a = read(g, (String) ((List<?>) g.map("merge").get("stores")).get(0));
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

    @SuppressWarnings("unchecked")
    private static List<Map<String, Object>> castList(Object o) {
        return (List<Map<String, Object>>) o;
    }
}
