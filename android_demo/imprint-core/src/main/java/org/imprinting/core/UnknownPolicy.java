package org.imprinting.core;

import java.util.Map;
import java.util.regex.Pattern;

/**
 * When a prediction is "unknown": top-1 score below minCosine, or top-1 minus top-2 score below minMargin
 * (scores are cosines, or cosine + shot offset with a bundle's shot offsets). NaN disables a rule (the Python
 * runtime's None). A minCosine also enters the probabilities as one more alternative, "unknown", scored at the
 * threshold (see Classification), so that a single class is not certain against nothing.
 * <p>
 * With a shot-aware table (minEvidenceByShots, a bundle's calibration.unknown_min_evidence_by_shots; the Python
 * runtime's UnknownPolicy.min_evidence_by_shots) the table replaces minCosine: the top-1 class, of n shots whose
 * sum is S, is unknown when its cosine (without the shot offset) is below {@link #cosineThreshold}, the table's
 * value at n times n / |S| (its evidence, cosine x |S| / n, below the value); the "unknown" alternative is scored
 * at that bar plus the class's shot offset.
 * <p>
 * A bundle's default policy is {@link Manifest#unknownPolicy()}: its calibrated threshold, or
 * {@link #FALLBACK_MIN_COSINE} for bundles exported without one. A bare ClassStore never says unknown until given a
 * policy, as the Python runtime's ImprintedClassifier; the app and the web page give it the bundle's, as its
 * Recognizer does.
 */
public final class UnknownPolicy {
    public static final UnknownPolicy NEVER = new UnknownPolicy(Float.NaN, Float.NaN);
    /**
     * The unknown threshold of bundles that carry none (exported before thresholds were calibrated): the Python
     * runtime's FALLBACK_MIN_COSINE (runtime/recognizer_options.py).
     */
    public static final float FALLBACK_MIN_COSINE = 0.4f;
    private static final Pattern COUNT = Pattern.compile("[1-9][0-9]{0,8}");

    public final float minCosine;
    public final float minMargin;
    /** The least evidence by the top-1 class's shot count, or null (minCosine decides). */
    public final ShotOffsets minEvidenceByShots;

    public UnknownPolicy(float minCosine, float minMargin) {
        this(minCosine, minMargin, null);
    }

    public UnknownPolicy(float minCosine, float minMargin, ShotOffsets minEvidenceByShots) {
        if (!Float.isNaN(minCosine) && !(minCosine >= -1f && minCosine <= 1f)) {
            throw new IllegalArgumentException("min_cosine must be in [-1, 1], got " + minCosine);
        }
        if (!Float.isNaN(minMargin) && !(minMargin >= 0f && minMargin <= 2f)) {
            throw new IllegalArgumentException("min_margin must be in [0, 2], got " + minMargin);
        }
        this.minCosine = minCosine;
        this.minMargin = minMargin;
        this.minEvidenceByShots = minEvidenceByShots;
    }

    /**
     * The cosine below which a top-1 class of {@code shots} shots and 1 / |sum| = {@code invNorm} is unknown: the
     * table's value (float32) x shots x invNorm in double, as Python computes it; minCosine without a table.
     */
    public double cosineThreshold(long shots, float invNorm) {
        if (minEvidenceByShots == null) {
            return minCosine;
        }
        return (double) minEvidenceByShots.offset(shots) * (double) shots * (double) invNorm;
    }

    boolean isUnknown(float top1, float margin) {
        return (!Float.isNaN(minCosine) && top1 < minCosine) || (!Float.isNaN(minMargin) && margin < minMargin);
    }

    /**
     * The manifest's calibration.unknown_min_evidence_by_shots as a table, or null (the single threshold rules)
     * unless it is a non-empty object whose keys are shot counts written as plain decimals ("1".."999999999")
     * and whose values are numbers (not booleans) in [-1, 1]: the Python runtime's evidence_table.
     */
    public static ShotOffsets evidenceTable(Object value) {
        if (!(value instanceof Map) || ((Map<?, ?>) value).isEmpty()) {
            return null;
        }
        Map<?, ?> m = (Map<?, ?>) value;
        for (Map.Entry<?, ?> e : m.entrySet()) {
            Object v = e.getValue();
            if (!(e.getKey() instanceof String) || !COUNT.matcher((String) e.getKey()).matches()
                    || !(v instanceof Number)) {
                return null;
            }
            double d = ((Number) v).doubleValue();
            if (!(d >= -1 && d <= 1)) {
                return null;
            }
        }
        return ShotOffsets.fromMap(m);
    }
}
