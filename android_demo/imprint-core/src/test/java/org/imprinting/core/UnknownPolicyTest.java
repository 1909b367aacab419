package org.imprinting.core;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.File;
import java.util.List;
import java.util.Map;
import org.junit.Test;

/**
 * The unknown policy a bundle carries (manifest calibration.unknown_min_cosine, else the fallback) and the
 * "unknown" alternative in the probabilities, against the Python runtime's golden vectors (golden.json "unknown").
 */
public class UnknownPolicyTest {
    private static final float TIGHT = 2e-6f;

    private static Map<String, Object> cas(Golden g) {
        return g.map("unknown");
    }

    @SuppressWarnings("unchecked")
    private static List<Map<String, Object>> list(Golden g, String key) {
        return (List<Map<String, Object>>) cas(g).get(key);
    }

    /** manifest.json with its "calibration" replaced by the case's (removed when the case has none). */
    private static Manifest withCalibration(Golden g, Map<String, Object> c) throws Exception {
        Map<String, Object> m = Json.parseObject(g.text("manifest.json"));
        m.remove("calibration");
        if (c.containsKey("calibration")) {
            m.put("calibration", c.get("calibration"));
        }
        return Manifest.parse(Json.write(m));
    }

    @Test
    public void bundleThresholdOrFallbackAsPython() throws Exception {
        Golden g = Golden.load();
        assertEquals(((Number) cas(g).get("fallback_min_cosine")).floatValue(), UnknownPolicy.FALLBACK_MIN_COSINE, 0f);
        List<Map<String, Object>> cases = list(g, "cases");
        assertTrue(cases.size() >= 10);
        for (int i = 0; i < cases.size(); i++) {
            Map<String, Object> c = cases.get(i);
            Manifest m = withCalibration(g, c);
            float want = ((Number) c.get("min_cosine")).floatValue();
            assertEquals("calibration " + c.get("calibration"), want, m.unknownMinCosine, 0f);
            assertEquals(want, m.unknownPolicy().minCosine, 0f);
            assertTrue(Float.isNaN(m.unknownPolicy().minMargin));
            // The bundle's own threshold when Python took the manifest's value, else the fallback.
            Object cal = c.get("calibration");
            Object t = cal instanceof Map ? ((Map<?, ?>) cal).get("unknown_min_cosine") : null;
            boolean own = t instanceof Number && ((Number) t).doubleValue() == ((Number) c.get("min_cosine")).doubleValue();
            assertEquals("calibration " + cal + " calibrated", own, m.unknownCalibrated);
        }
        assertTrue("the first case is a calibrated bundle", withCalibration(g, cases.get(0)).unknownCalibrated);
        assertFalse("the second has no calibration", withCalibration(g, cases.get(1)).unknownCalibrated);
        Manifest calibrated = Manifest.parse(g.text((String) cas(g).get("manifest")));
        assertEquals(((Number) cases.get(0).get("min_cosine")).floatValue(), calibrated.unknownMinCosine, 0f);
        for (Map<String, Object> r : list(g, "refused")) {
            try {
                withCalibration(g, r);
                fail("a manifest with calibration " + r.get("calibration") + " was accepted");
            } catch (IllegalArgumentException e) {
                assertTrue(e.getMessage(), e.getMessage().contains("'calibration'"));
            }
        }
    }

    @Test
    public void predictionsWithTheBundlePolicyMatchPython() throws Exception {
        Golden g = Golden.load();
        int k = ((Number) cas(g).get("top_k")).intValue();
        ClassStore s = ClassStoreFile.read(new File(g.dir, "store.npz"), null, 0);
        s.setUnknownPolicy(Manifest.parse(g.text((String) cas(g).get("manifest"))).unknownPolicy());
        ClassStoreTest.assertPredictions(g, s, "calibrated bundle", list(g, "predictions"), k, TIGHT);
        s.setUnknownPolicy(g.manifest.unknownPolicy());
        ClassStoreTest.assertPredictions(g, s, "plain bundle", list(g, "predictions_plain"), k, TIGHT);
    }

    @Test
    public void aSingleClassIsNotCertainAgainstNothing() throws Exception {
        Golden g = Golden.load();
        ClassStore s = ClassStoreFile.read(new File(g.dir, (String) cas(g).get("single_store")), null, 0);
        assertEquals(1, s.size());
        Classification plain = s.classify(Golden.row(g.npy("queries.npy"), 3), 3);
        assertEquals("without a threshold the one class takes it all", 1f, plain.probabilities[0], 0f);
        s.setUnknownPolicy(Manifest.parse(g.text((String) cas(g).get("manifest"))).unknownPolicy());
        List<Map<String, Object>> want = list(g, "predictions_single");
        ClassStoreTest.assertPredictions(g, s, "single class", want, ((Number) cas(g).get("top_k")).intValue(), TIGHT);
        Classification c = s.classify(Golden.row(g.npy("queries.npy"), 3), 3);
        assertTrue(c.unknown && c.probabilities[0] < 0.5f);
        assertEquals("an unknown answer still reports its top cosine", s.cosines(Golden.row(g.npy("queries.npy"), 3))[0],
                c.score(), 0f);
    }

    @SuppressWarnings("unchecked")
    @Test
    public void theShotAwareTableDecidesAsPython() throws Exception {
        Golden g = Golden.load();
        Map<String, Object> c = (Map<String, Object>) cas(g).get("by_shots");
        for (Map<String, Object> t : (List<Map<String, Object>>) c.get("tables")) {
            ShotOffsets got = UnknownPolicy.evidenceTable(t.get("table"));
            Map<String, Object> want = (Map<String, Object>) t.get("parsed");
            if (want == null) {
                assertTrue("Python ignores the table " + t.get("table"), got == null);
                continue;
            }
            List<?> shots = (List<?>) want.get("shots");
            List<?> values = (List<?>) want.get("values");
            assertEquals(shots.size(), got.shots().length);
            for (int i = 0; i < shots.size(); i++) {
                assertEquals(((Number) shots.get(i)).longValue(), got.shots()[i]);
                assertEquals(((Number) values.get(i)).doubleValue(), got.offsets()[i], 0d);
            }
        }
        Manifest m = Manifest.parse(g.text((String) c.get("manifest")));
        UnknownPolicy policy = m.unknownPolicy();
        assertTrue(policy.minEvidenceByShots != null);
        ClassStore s = ClassStoreFile.read(new File(g.dir, (String) c.get("store")), null, 0);
        List<?> labels = (List<?>) c.get("labels");
        List<?> bars = (List<?>) c.get("bars");
        for (int k = 0; k < labels.size(); k++) {
            ClassRow row = s.snapshotRows().get(k);
            assertEquals(labels.get(k), row.label);
            assertEquals("bar of " + row.label, ((Number) bars.get(k)).doubleValue(),
                    policy.cosineThreshold(row.count, row.invNorm), 1e-6);
        }
        s.setUnknownPolicy(policy);
        s.setShotOffsets(m.shotOffsets);
        int k = ((Number) c.get("top_k")).intValue();
        Npy.Array q = g.npy((String) c.get("queries"));
        check(s, q, (List<Map<String, Object>>) c.get("predictions"), k, "with shot offsets");
        List<?> thresholds = (List<?>) c.get("thresholds");
        for (int i = 0; i < thresholds.size(); i++) {
            assertEquals("threshold " + i, ((Number) thresholds.get(i)).doubleValue(),
                    s.classify(Golden.row(q, i), k).threshold, 1e-6);
        }
        s.setShotOffsets(null);
        check(s, q, (List<Map<String, Object>>) c.get("predictions_no_offsets"), k, "without shot offsets");
    }

    private static void check(ClassStore s, Npy.Array q, List<Map<String, Object>> want, int k, String what) {
        int unknown = 0;
        for (int i = 0; i < want.size(); i++) {
            Classification got = s.classify(Golden.row(q, i), k);
            Map<String, Object> w = want.get(i);
            List<?> labels = (List<?>) w.get("labels");
            List<?> prob = (List<?>) w.get("probabilities");
            for (int j = 0; j < labels.size(); j++) {
                assertEquals(what + " " + i + " label " + j, labels.get(j), got.labels[j]);
                assertEquals(what + " " + i + " probability " + j, ((Number) prob.get(j)).floatValue(),
                        got.probabilities[j], 1e-5f);
            }
            assertEquals(what + " " + i + " unknown", w.get("unknown"), got.unknown);
            unknown += got.unknown ? 1 : 0;
        }
        assertTrue(what + ": both verdicts occur", unknown > 0 && unknown < want.size() || what.contains("without"));
    }
}
