package org.imprinting.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The imprinted cosine classifier and its state, the Python runtime's ImprintedClassifier with one
 * template per class: per class a float32 sum of unit embeddings and an int64 count; the weight is
 * sum / |sum|, so adding shots later equals imprinting all of them at once; logits = scale * cosine.
 * All public methods are synchronized so that a camera thread can classify while the UI thread teaches.
 * Shots (the optional shots/shot_class entries) are kept only when the file had them, so that a store
 * written by Python with several templates per class survives a round trip through the app.
 * With shot offsets (a bundle manifest's "shot_offsets", see ShotOffsets) classify ranks by
 * cosine + offset(shot count of the class), reports those calibrated scores and takes the softmax and the
 * unknown policy over them, as the Python runtime does; cosines() stays raw. The offsets are a setting of
 * the classifier, not part of the store file.
 */
public final class ClassStore {
    private static final float EPS = 1e-12f;

    private final int dim;
    private final float scale;
    private final String fingerprint;
    private int templatesPerClass = 1;
    private UnknownPolicy unknown = UnknownPolicy.NEVER;
    private ShotOffsets shotOffsets;
    private final List<String> labels = new ArrayList<String>();
    private final List<float[]> sums = new ArrayList<float[]>();
    private final List<Long> counts = new ArrayList<Long>();
    private final List<Float> invNorms = new ArrayList<Float>();
    private final Map<String, Integer> index = new HashMap<String, Integer>();
    /** Per class, its stored shots; null when shots are not kept. */
    private List<List<float[]>> shots;

    public ClassStore(int embeddingDim, float scale, String extractorFingerprint) {
        if (embeddingDim < 1) {
            throw new IllegalArgumentException("embedding_dim must be >= 1, got " + embeddingDim);
        }
        if (!(scale > 0)) {
            throw new IllegalArgumentException("scale must be positive, got " + scale);
        }
        this.dim = embeddingDim;
        this.scale = scale;
        this.fingerprint = extractorFingerprint;
    }

    public int embeddingDim() {
        return dim;
    }

    public float scale() {
        return scale;
    }

    public String fingerprint() {
        return fingerprint;
    }

    public synchronized int templatesPerClass() {
        return templatesPerClass;
    }

    public synchronized void setUnknownPolicy(UnknownPolicy policy) {
        unknown = policy;
    }

    /** Shot-aware calibration for classify (from Manifest.shotOffsets); null turns it off. */
    public synchronized void setShotOffsets(ShotOffsets offsets) {
        shotOffsets = offsets;
    }

    /** The shot offsets classify applies, or null. */
    public synchronized ShotOffsets shotOffsets() {
        return shotOffsets;
    }

    public synchronized int size() {
        return labels.size();
    }

    public synchronized List<String> labels() {
        return Collections.unmodifiableList(new ArrayList<String>(labels));
    }

    public synchronized boolean contains(String label) {
        return index.containsKey(label);
    }

    public synchronized long count(String label) {
        return counts.get(require(label));
    }

    public synchronized float[] sum(String label) {
        return sums.get(require(label)).clone();
    }

    /** Unit-length copy of an embedding; rejects a wrong length, NaN/infinity and all zeros. */
    public float[] normalize(float[] e) {
        if (e.length != dim) {
            throw new IllegalArgumentException("expected an embedding of length " + dim + ", got " + e.length);
        }
        // float32 accumulation, as NumPy's dot of one float32 row.
        float ss = 0;
        for (float v : e) {
            ss += v * v;
        }
        float n = (float) Math.sqrt(ss);
        if (Float.isNaN(n) || Float.isInfinite(n)) {
            throw new IllegalArgumentException("an embedding holds NaN or infinity (a broken extractor or input?)");
        }
        if (n < 1e-6f) {
            throw new IllegalArgumentException("an embedding is all zeros and has no direction; it cannot be imprinted or classified");
        }
        float[] out = new float[dim];
        for (int i = 0; i < dim; i++) {
            out[i] = e[i] / n;
        }
        return out;
    }

    /** A new class from one or more shots; the label must be new. */
    public synchronized void imprint(String label, float[]... embeddings) {
        label = Labels.validate(label);
        float[][] e = normalizeAll(embeddings);
        if (index.containsKey(label)) {
            throw new IllegalArgumentException("class \"" + label + "\" exists already; use addShots to add examples to it");
        }
        float[] s = new float[dim];
        for (float[] v : e) {
            add(s, v);
        }
        index.put(label, labels.size());
        labels.add(label);
        sums.add(s);
        counts.add((long) e.length);
        invNorms.add(invNorm(s));
        if (shots != null) {
            List<float[]> mine = new ArrayList<float[]>();
            Collections.addAll(mine, e);
            shots.add(mine);
        }
    }

    /** More shots for an existing class; exactly equal to having imprinted all shots at once. */
    public synchronized void addShots(String label, float[]... embeddings) {
        float[][] e = normalizeAll(embeddings);
        int k = require(label);
        float[] s = sums.get(k);
        for (float[] v : e) {
            add(s, v);
        }
        counts.set(k, counts.get(k) + e.length);
        invNorms.set(k, invNorm(s));
        if (shots != null) {
            Collections.addAll(shots.get(k), e);
        }
    }

    /** Imprints a new class or adds shots to an existing one. */
    public synchronized void learn(String label, float[]... embeddings) {
        String l = Labels.validate(label);
        if (index.containsKey(l)) {
            addShots(l, embeddings);
        } else {
            imprint(l, embeddings);
        }
    }

    /** Deletes a class; later classes move up one row. */
    public synchronized void remove(String label) {
        int k = require(label);
        labels.remove(k);
        sums.remove(k);
        counts.remove(k);
        invNorms.remove(k);
        if (shots != null) {
            shots.remove(k);
        }
        reindex();
    }

    /** Gives a class a new label, which must not be taken. */
    public synchronized void rename(String oldLabel, String newLabel) {
        String n = Labels.validate(newLabel);
        int k = require(oldLabel);
        if (n.equals(oldLabel)) {
            return;
        }
        if (index.containsKey(n)) {
            throw new IllegalArgumentException("cannot rename \"" + oldLabel + "\" to \"" + n + "\": that label exists already");
        }
        labels.set(k, n);
        reindex();
    }

    /** Cosine of the embedding to every class, in class order (raw: without shot offsets). */
    public synchronized float[] cosines(float[] embedding) {
        float[] e = normalize(embedding);
        float[] cos = new float[labels.size()];
        for (int k = 0; k < cos.length; k++) {
            float[] s = sums.get(k);
            float dot = 0;
            for (int i = 0; i < dim; i++) {
                dot += e[i] * s[i];
            }
            cos[k] = dot * invNorms.get(k);
        }
        return cos;
    }

    /**
     * The top-k classes for one embedding (k is capped at the number of classes). With shot offsets the
     * ranked and reported scores are cosine + offset(shot count), in float32 as in the Python runtime.
     */
    public synchronized Classification classify(float[] embedding, int topK) {
        if (topK < 1) {
            throw new IllegalArgumentException("top_k must be >= 1, got " + topK);
        }
        if (labels.isEmpty()) {
            throw new IllegalStateException("the classifier has no classes yet: imprint one first");
        }
        float[] cos = cosines(embedding);
        if (shotOffsets != null) {
            for (int k = 0; k < cos.length; k++) {
                cos[k] += shotOffsets.offset(counts.get(k));
            }
        }
        int n = cos.length;
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) {
            order[i] = i;
        }
        final float[] c = cos;
        // An anonymous class, not a lambda: the Android app's dexer (dx) rejects invokedynamic.
        java.util.Arrays.sort(order, new java.util.Comparator<Integer>() {
            @Override
            public int compare(Integer a, Integer b) {
                return Float.compare(c[b], c[a]);
            }
        });
        float best = cos[order[0]];
        float margin = n > 1 ? best - cos[order[1]] : Float.POSITIVE_INFINITY;
        // Softmax of scale * cos over all classes, shifted by the top logit so that exp never overflows.
        double total = 0;
        for (float v : cos) {
            total += Math.exp((v - best) * scale);
        }
        int k = Math.min(topK, n);
        String[] outLabels = new String[k];
        float[] outCos = new float[k];
        float[] outProb = new float[k];
        for (int i = 0; i < k; i++) {
            outLabels[i] = labels.get(order[i]);
            outCos[i] = cos[order[i]];
            outProb[i] = (float) (Math.exp((cos[order[i]] - best) * scale) / total);
        }
        return new Classification(outLabels, outCos, outProb, unknown.isUnknown(best, margin));
    }

    // ----- state for ClassStoreFile --------------------------------------------------------------

    synchronized void restore(List<String> l, float[] flatSums, long[] c, int templates, float[] flatShots, long[] shotClass) {
        for (int k = 0; k < l.size(); k++) {
            float[] s = new float[dim];
            System.arraycopy(flatSums, k * dim, s, 0, dim);
            index.put(l.get(k), k);
            labels.add(l.get(k));
            sums.add(s);
            counts.add(c[k]);
            invNorms.add(invNorm(s));
        }
        templatesPerClass = templates;
        if (flatShots != null) {
            shots = new ArrayList<List<float[]>>();
            for (int k = 0; k < l.size(); k++) {
                shots.add(new ArrayList<float[]>());
            }
            for (int i = 0; i < shotClass.length; i++) {
                float[] v = new float[dim];
                System.arraycopy(flatShots, i * dim, v, 0, dim);
                shots.get((int) shotClass[i]).add(v);
            }
        }
    }

    synchronized float[] flatSums() {
        float[] out = new float[labels.size() * dim];
        for (int k = 0; k < labels.size(); k++) {
            System.arraycopy(sums.get(k), 0, out, k * dim, dim);
        }
        return out;
    }

    synchronized long[] countArray() {
        long[] out = new long[counts.size()];
        for (int k = 0; k < out.length; k++) {
            out[k] = counts.get(k);
        }
        return out;
    }

    /** {flat shots (N * D), shot_class (N)} or null when shots are not kept. */
    synchronized Object[] shotArrays() {
        if (shots == null) {
            return null;
        }
        int n = 0;
        for (List<float[]> per : shots) {
            n += per.size();
        }
        float[] flat = new float[n * dim];
        long[] cls = new long[n];
        int i = 0;
        for (int k = 0; k < shots.size(); k++) {
            for (float[] v : shots.get(k)) {
                System.arraycopy(v, 0, flat, i * dim, dim);
                cls[i++] = k;
            }
        }
        return new Object[] {flat, cls};
    }

    // ----- internals -----------------------------------------------------------------------------

    private float[][] normalizeAll(float[][] embeddings) {
        if (embeddings.length == 0) {
            throw new IllegalArgumentException("got no embeddings (an empty batch)");
        }
        float[][] out = new float[embeddings.length][];
        for (int i = 0; i < out.length; i++) {
            out[i] = normalize(embeddings[i]);
        }
        return out;
    }

    private static void add(float[] s, float[] v) {
        for (int i = 0; i < s.length; i++) {
            s[i] += v[i];
        }
    }

    private static float invNorm(float[] s) {
        float ss = 0;
        for (float v : s) {
            ss += v * v;
        }
        return 1f / Math.max((float) Math.sqrt(ss), EPS);
    }

    private int require(String label) {
        Integer k = index.get(label);
        if (k == null) {
            StringBuilder near = new StringBuilder();
            for (int i = 0; i < Math.min(10, labels.size()); i++) {
                near.append(i == 0 ? "" : ", ").append('"').append(labels.get(i)).append('"');
            }
            throw new IllegalArgumentException("no class named \"" + label + "\"; classes: " + near
                    + (labels.size() > 10 ? " ..." : ""));
        }
        return k;
    }

    private void reindex() {
        index.clear();
        for (int i = 0; i < labels.size(); i++) {
            index.put(labels.get(i), i);
        }
    }
}
