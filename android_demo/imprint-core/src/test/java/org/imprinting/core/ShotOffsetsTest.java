package org.imprinting.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.Test;

/** Shot-aware calibration (manifest "shot_offsets") against the Python runtime's golden vectors. */
public class ShotOffsetsTest {
    // Scores are float32 cosine + float32 offset: Java and NumPy differ only in the dot product's summation order.
    private static final float TIGHT = 2e-6f;

    private static Map<String, Object> cas(Golden g) {
        return g.map("shot_offsets");
    }

    private static Manifest manifest(Golden g) throws Exception {
        return Manifest.parse(g.text((String) cas(g).get("manifest")));
    }

    @SuppressWarnings("unchecked")
    private static List<Map<String, Object>> predictions(Golden g, String key) {
        return (List<Map<String, Object>>) cas(g).get(key);
    }

    private static int topK(Golden g) {
        return ((Number) cas(g).get("top_k")).intValue();
    }

    private static ClassStore pythonStore(Golden g) throws Exception {
        Manifest m = manifest(g);
        return ClassStoreFile.read(new File(g.dir, (String) cas(g).get("store")), m.fingerprint, m.embeddingDim);
    }

    @Test
    public void manifestTableAndOffsetsMatchPython() throws Exception {
        Golden g = Golden.load();
        assertNull("the plain golden manifest has no (an empty) table", g.manifest.shotOffsets);
        ShotOffsets so = manifest(g).shotOffsets;
        assertNotNull(so);
        assertArrayEquals(new long[] {1, 2, 5, 10, 20}, so.shots()); // sorted, though unsorted in the file
        assertArrayEquals(new double[] {0.2, 0.15, 0.05, 0.02, -0.01}, so.offsets(), 0);
        List<?> counts = (List<?>) cas(g).get("offset_counts");
        List<?> want = (List<?>) cas(g).get("offset_values");
        for (int i = 0; i < counts.size(); i++) {
            long c = ((Number) counts.get(i)).longValue();
            // float32 of the same double computation; Math.log and the C library may differ in the last bit.
            assertEquals("offset for " + c + " shots", ((Number) want.get(i)).floatValue(), so.offset(c), 1e-7f);
        }
        assertEquals(ShotOffsets.fromMap(so.toMap()).toMap(), so.toMap());
    }

    @Test
    public void refusesWhatPythonRefuses() throws Exception {
        Golden g = Golden.load();
        List<?> bad = (List<?>) cas(g).get("invalid_tables");
        assertTrue(bad.size() >= 5);
        Map<String, Object> m = Json.parseObject(g.text("manifest.json"));
        for (Object t : bad) {
            try {
                ShotOffsets.fromMap((Map<?, ?>) t);
                fail("accepted shot_offsets " + t);
            } catch (IllegalArgumentException e) {
                assertTrue(e.getMessage(), e.getMessage().contains("shot_offsets"));
            }
            m.put("shot_offsets", t);
            try {
                Manifest.parse(Json.write(m));
                fail("a manifest with shot_offsets " + t + " was accepted");
            } catch (IllegalArgumentException e) {
                assertTrue(e.getMessage(), e.getMessage().contains("shot_offsets"));
            }
        }
    }

    @Test
    public void validationRules() {
        Map<String, Object> t = new LinkedHashMap<String, Object>();
        String[] why = {"finite", "finite", "at least one"};
        Object[] values = {Double.NaN, Double.POSITIVE_INFINITY, null};
        for (int i = 0; i < values.length; i++) {
            t.clear();
            if (values[i] != null) {
                t.put("1", values[i]);
            }
            try {
                ShotOffsets.fromMap(t);
                fail("accepted " + t);
            } catch (IllegalArgumentException e) {
                assertTrue(e.getMessage(), e.getMessage().contains("shot_offsets") && e.getMessage().contains(why[i]));
            }
        }
        // The manifest's falsy values mean no calibration, as Python's `if d.get("shot_offsets")`.
        Object[] none = {null, new LinkedHashMap<String, Object>(), new ArrayList<Object>(), 0.0, false, ""};
        for (Object v : none) {
            assertNull(String.valueOf(v), ShotOffsets.fromManifestValue(v));
        }
        for (Object v : new Object[] {Arrays.asList(0.1), "0.1", 1.0}) {
            try {
                ShotOffsets.fromManifestValue(v);
                fail("accepted shot_offsets " + v);
            } catch (IllegalArgumentException e) {
                assertTrue(e.getMessage(), e.getMessage().contains("shot_offsets"));
            }
        }
        // What Python's int()/float() accept: spaces and a sign in counts, numeric strings and booleans as offsets.
        t.clear();
        t.put(" +3 ", "0.25");
        t.put("7", true);
        ShotOffsets so = ShotOffsets.fromMap(t);
        assertArrayEquals(new long[] {3, 7}, so.shots());
        assertArrayEquals(new double[] {0.25, 1.0}, so.offsets(), 0);
        // One point: that offset for every count; a count below 1 counts as 1.
        ShotOffsets one = new ShotOffsets(new long[] {4}, new double[] {0.125});
        for (long c : new long[] {-3, 0, 1, 4, 100}) {
            assertEquals(0.125f, one.offset(c), 0f);
        }
        ShotOffsets two = new ShotOffsets(new long[] {1, 4}, new double[] {0.2, 0.0});
        assertEquals(0.1f, two.offset(2), 1e-7f); // log(2) is halfway between log(1) and log(4)
        assertEquals(0.2f, two.offset(0), 0f);
        assertEquals(0f, two.offset(5), 0f);
    }

    @Test
    public void javaImprintingEqualsPythonStore() throws Exception {
        Golden g = Golden.load();
        Manifest m = manifest(g);
        Npy.Array shots = g.npy("so_shots.npy");
        @SuppressWarnings("unchecked")
        List<String> labels = (List<String>) cas(g).get("shot_labels");
        ClassStore s = new ClassStore(m.embeddingDim, m.scale, m.fingerprint);
        s.setShotOffsets(m.shotOffsets);
        for (int i = 0; i < labels.size(); i++) {
            s.learn(labels.get(i), Golden.row(shots, i));
        }
        ClassStore python = pythonStore(g);
        ClassStoreTest.assertSameStore(python, s);
        Map<?, ?> counts = (Map<?, ?>) cas(g).get("counts");
        for (Map.Entry<?, ?> e : counts.entrySet()) {
            assertEquals(((Number) e.getValue()).longValue(), s.count((String) e.getKey()));
        }
        ClassStoreTest.assertPredictions(g, s, "shot offsets, Java-imprinted", predictions(g, "predictions"), topK(g), TIGHT);
    }

    @Test
    public void predictionsMatchPython() throws Exception {
        Golden g = Golden.load();
        ClassStore s = pythonStore(g);
        int k = topK(g);
        ClassStoreTest.assertPredictions(g, s, "without shot offsets", predictions(g, "predictions_raw"), k, TIGHT);
        s.setShotOffsets(manifest(g).shotOffsets);
        ClassStoreTest.assertPredictions(g, s, "with shot offsets", predictions(g, "predictions"), k, TIGHT);
        // cosines() stays raw with offsets set.
        Npy.Array q = g.npy("queries.npy");
        float[] raw = s.cosines(Golden.row(q, 0));
        List<?> want = (List<?>) predictions(g, "predictions_raw").get(0).get("cosines");
        float max = Float.NEGATIVE_INFINITY;
        for (float v : raw) {
            max = Math.max(max, v);
        }
        assertEquals(((Number) want.get(0)).floatValue(), max, TIGHT);
    }

    @Test
    public void unknownPolicySeesCalibratedScores() throws Exception {
        Golden g = Golden.load();
        ClassStore s = pythonStore(g);
        s.setShotOffsets(manifest(g).shotOffsets);
        Map<?, ?> p = (Map<?, ?>) g.json.get("unknown_policy");
        s.setUnknownPolicy(new UnknownPolicy(((Number) p.get("min_cosine")).floatValue(), ((Number) p.get("min_margin")).floatValue()));
        ClassStoreTest.assertPredictions(g, s, "shot offsets, unknown", predictions(g, "predictions_unknown"), topK(g), TIGHT);
        // What the app opens this bundle with: its offsets and its unknown policy (the fallback: it carries none).
        s.setUnknownPolicy(manifest(g).unknownPolicy());
        ClassStoreTest.assertPredictions(g, s, "shot offsets, the bundle's unknown policy", predictions(g, "predictions_bundle"),
                topK(g), TIGHT);
    }

    @Test
    public void offsetFollowsTheShotCount() throws Exception {
        Golden g = Golden.load();
        ClassStore s = pythonStore(g);
        s.setShotOffsets(manifest(g).shotOffsets);
        Npy.Array extra = g.npy("so_extra.npy");
        float[][] rows = new float[extra.shape[0]][];
        for (int i = 0; i < rows.length; i++) {
            rows[i] = Golden.row(extra, i);
        }
        s.addShots((String) cas(g).get("extra_label"), rows);
        ClassStoreTest.assertPredictions(g, s, "shot offsets, grown", predictions(g, "predictions_grown"), topK(g), TIGHT);
        // The offsets are a setting, not part of the file: a round trip keeps the counts they depend on.
        ClassStore back = ClassStoreFile.fromBytes(ClassStoreFile.toBytes(s), "memory", null, 0);
        assertNull(back.shotOffsets());
        back.setShotOffsets(s.shotOffsets());
        ClassStoreTest.assertPredictions(g, back, "shot offsets, round trip", predictions(g, "predictions_grown"), topK(g), TIGHT);
    }
}
