package org.imprinting.core;

/**
 * The top-k answer for one embedding, best first. cosines in [-1, 1], or with shot offsets the calibrated
 * scores cosine + offset(shot count) that the classes were ranked by; the top one is reported even when the
 * answer is unknown (it says how close the nearest class came). probabilities are the softmax of scale * score
 * over all classes and, when the unknown policy has a minCosine, one more alternative, "unknown", scored at that
 * threshold, as the Python runtime computes them: so a single class is not certain against nothing, and the
 * top k need not sum to 1.
 */
public final class Classification {
    public final String[] labels;
    public final float[] cosines;
    public final float[] probabilities;
    public final boolean unknown;
    /**
     * The score the top class needed (the unknown policy's minCosine, or with a shot-aware table its class's bar
     * plus its shot offset), NaN when the policy has none.
     */
    public final double threshold;

    Classification(String[] labels, float[] cosines, float[] probabilities, boolean unknown, double threshold) {
        this.labels = labels;
        this.cosines = cosines;
        this.probabilities = probabilities;
        this.unknown = unknown;
        this.threshold = threshold;
    }

    /** The top-1 label, or null when the answer is unknown. */
    public String label() {
        return unknown ? null : labels[0];
    }

    /** The top-1 cosine (calibrated score with shot offsets), also when the answer is unknown. */
    public float score() {
        return cosines[0];
    }
}
