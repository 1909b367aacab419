package org.imprinting.core;

/**
 * When a prediction is "unknown": top-1 score below minCosine, or top-1 minus top-2 score below minMargin
 * (scores are cosines, or cosine + shot offset with a bundle's shot offsets). NaN disables a rule (the Python
 * runtime's None). A minCosine also enters the probabilities as one more alternative, "unknown", scored at the
 * threshold (see Classification), so that a single class is not certain against nothing.
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

    public final float minCosine;
    public final float minMargin;

    public UnknownPolicy(float minCosine, float minMargin) {
        if (!Float.isNaN(minCosine) && !(minCosine >= -1f && minCosine <= 1f)) {
            throw new IllegalArgumentException("min_cosine must be in [-1, 1], got " + minCosine);
        }
        if (!Float.isNaN(minMargin) && !(minMargin >= 0f && minMargin <= 2f)) {
            throw new IllegalArgumentException("min_margin must be in [0, 2], got " + minMargin);
        }
        this.minCosine = minCosine;
        this.minMargin = minMargin;
    }

    boolean isUnknown(float top1, float margin) {
        return (!Float.isNaN(minCosine) && top1 < minCosine) || (!Float.isNaN(minMargin) && margin < minMargin);
    }
}
