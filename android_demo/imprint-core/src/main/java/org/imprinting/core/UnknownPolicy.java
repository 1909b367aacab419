package org.imprinting.core;

/**
 * When a prediction is "unknown": top-1 cosine below minCosine, or top-1 minus top-2 cosine below
 * minMargin. NaN disables a rule (the Python runtime's None).
 */
public final class UnknownPolicy {
    public static final UnknownPolicy NEVER = new UnknownPolicy(Float.NaN, Float.NaN);

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
