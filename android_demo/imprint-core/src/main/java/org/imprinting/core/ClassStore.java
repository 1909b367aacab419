package org.imprinting.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * The imprinted cosine classifier and its state, the Python runtime's ImprintedClassifier with one
 * template per class: per class a float32 sum of unit embeddings and an int64 count; the weight is
 * sum / |sum|, so adding shots later equals imprinting all of them at once; logits = scale * cosine.
 * All public methods are synchronized so that a camera thread can classify while the UI thread teaches.
 * Shots (the optional shots/shot_class entries) are kept only when the file had them, so that a store
 * written by Python with several templates per class survives a round trip through the app.
 * With shot offsets (a bundle manifest's "shot_offsets", see ShotOffsets) classify ranks by
 * cosine + offset(shot count of the class), reports those calibrated scores and takes the softmax and the
 * unknown policy over them, as the Python runtime does; cosines() stays raw. An unknown policy with a
 * minCosine adds "unknown" to the softmax (see Classification); a new store has none (UnknownPolicy.NEVER, as the
 * Python runtime's ImprintedClassifier), the app gives it the bundle's (Manifest.unknownPolicy()). The offsets are a setting of
 * the classifier, not part of the store file.
 * The photo digests of a file's "shot_digests" are kept per class (renamed and removed with it) and written
 * back, so that Python can still skip photos it was taught before; this core adds none itself.
 * {@link #combine} merges stores taught on different devices exactly as the Python runtime's
 * store_sync.combine does.
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
    /** Label to the sorted content digests of the photos taught into it; only classes that have some. */
    private final Map<String, TreeSet<String>> digests = new HashMap<String, TreeSet<String>>();

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

    /**
     * When classify answers "unknown" (UnknownPolicy.NEVER until set; a bundle's default is
     * Manifest.unknownPolicy()). Its minCosine also enters the probabilities, see Classification.
     */
    public synchronized void setUnknownPolicy(UnknownPolicy policy) {
        if (policy == null) {
            throw new IllegalArgumentException("the unknown policy must not be null; UnknownPolicy.NEVER turns it off");
        }
        unknown = policy;
    }

    /** The unknown policy classify applies. */
    public synchronized UnknownPolicy unknownPolicy() {
        return unknown;
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

    /** The stored shots of a class, in order (copies), or null when this store keeps no shots. */
    public synchronized List<float[]> shots(String label) {
        int k = require(label);
        if (shots == null) {
            return null;
        }
        List<float[]> out = new ArrayList<float[]>();
        for (float[] v : shots.get(k)) {
            out.add(v.clone());
        }
        return out;
    }

    /** The content digests of the photos taught into a class (the file's "shot_digests"), sorted; often empty. */
    public synchronized List<String> digests(String label) {
        require(label);
        TreeSet<String> d = digests.get(label);
        return d == null ? Collections.<String>emptyList() : Collections.unmodifiableList(new ArrayList<String>(d));
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
        digests.remove(label);
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
        TreeSet<String> d = digests.remove(oldLabel);
        if (d != null) {
            digests.put(n, d);
        }
        reindex();
    }

    /**
     * One store holding every class of {@code stores} (taught on different devices, say): the Python runtime's
     * store_sync.combine, with the same results. The same label in several stores becomes one class whose sums,
     * counts, stored shots and photo digests add up, as if it had been taught with all those shots on one
     * device; labels keep the first store's order and new ones are appended. With renameConflicts a label that
     * an earlier store holds stays a class of its own instead, as "label (2)", "label (3)", ...
     * <p>
     * Exactness: each merge step adds a class's two float32 sums in float64 and rounds once to float32, in the
     * order Python does, so the sums are bit for bit Python's; counts are int64 sums. As in Python, a stored
     * shot whose float32 bytes the merged class already holds from an earlier store is stored once (its count
     * and sum still add), and shots are kept when any store keeps them. Scale, fingerprint and
     * templates_per_class are the last store's (Python's rule); the unknown policy and shot offsets, which are
     * settings of this classifier rather than of the file, are the first store's. The inputs are not changed.
     *
     * @throws IllegalArgumentException for no stores, or stores of another model (extractor fingerprint or
     *         embedding dim), with one line naming both, the same line as Python's
     */
    public static ClassStore combine(List<ClassStore> stores, boolean renameConflicts) {
        if (stores.isEmpty()) {
            throw new IllegalArgumentException("nothing to merge: give at least one class store");
        }
        List<ClassStore> parts = new ArrayList<ClassStore>();
        for (ClassStore s : stores) {
            parts.add(s.snapshot());
        }
        ClassStore first = parts.get(0);
        ClassStore last = parts.get(parts.size() - 1);
        for (ClassStore s : parts) {
            if (!String.valueOf(s.fingerprint).equals(String.valueOf(first.fingerprint)) || s.dim != first.dim) {
                throw new IllegalArgumentException("cannot merge stores of different models: " + head12(first.fingerprint)
                        + " (" + first.dim + "-d) and " + head12(s.fingerprint) + " (" + s.dim + "-d)");
            }
        }
        ClassStore out = new ClassStore(first.dim, last.scale, last.fingerprint);
        out.unknown = first.unknown;
        out.shotOffsets = first.shotOffsets;
        out.templatesPerClass = last.templatesPerClass;
        out.setRows(first.labels, first.sums, first.counts, first.shots, first.digests);
        for (ClassStore s : parts.subList(1, parts.size())) {
            if (renameConflicts) {
                s.renameClashes(out.index.keySet());
            }
            out.absorb(s);
        }
        return out;
    }

    /** {@link #combine} of this store and another (this one first). */
    public ClassStore mergedWith(ClassStore other, boolean renameConflicts) {
        return combine(Arrays.asList(this, other), renameConflicts);
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
        // Softmax of scale * cos over all classes and, with a minCosine, "unknown" scored at that threshold (the
        // Python runtime's Classification.categories), shifted by the top logit so that exp never overflows.
        double total = 0;
        for (float v : cos) {
            total += Math.exp((v - best) * scale);
        }
        if (!Float.isNaN(unknown.minCosine)) {
            total += Math.exp(((double) unknown.minCosine - best) * scale);
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

    synchronized void restore(List<String> l, float[] flatSums, long[] c, int templates, float[] flatShots, long[] shotClass,
            Map<String, List<String>> shotDigests) {
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
        for (Map.Entry<String, List<String>> e : shotDigests.entrySet()) {
            if (!e.getValue().isEmpty()) {
                digests.put(e.getKey(), new TreeSet<String>(e.getValue()));
            }
        }
    }

    /** Label to its sorted photo digests, in class order, for the classes that have some ("shot_digests"). */
    synchronized Map<String, List<String>> digestMap() {
        Map<String, List<String>> out = new LinkedHashMap<String, List<String>>();
        for (String l : labels) {
            TreeSet<String> d = digests.get(l);
            if (d != null) {
                out.put(l, new ArrayList<String>(d));
            }
        }
        return out;
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

    // ----- merging (combine) ----------------------------------------------------------------------

    /** A private copy of the classes and the settings, taken under this store's lock. */
    private synchronized ClassStore snapshot() {
        ClassStore c = new ClassStore(dim, scale, fingerprint);
        c.unknown = unknown;
        c.shotOffsets = shotOffsets;
        c.templatesPerClass = templatesPerClass;
        c.setRows(labels, sums, counts, shots, digests);
        return c;
    }

    /** Replaces the classes with copies of these (sums and lists copied; shot vectors are never changed). */
    private void setRows(List<String> l, List<float[]> s, List<Long> c, List<List<float[]>> sh, Map<String, TreeSet<String>> d) {
        labels.clear();
        sums.clear();
        counts.clear();
        invNorms.clear();
        for (int k = 0; k < l.size(); k++) {
            labels.add(l.get(k));
            sums.add(s.get(k).clone());
            counts.add(c.get(k));
            invNorms.add(invNorm(sums.get(k)));
        }
        shots = null;
        if (sh != null) {
            shots = new ArrayList<List<float[]>>();
            for (List<float[]> per : sh) {
                shots.add(new ArrayList<float[]>(per));
            }
        }
        digests.clear();
        for (Map.Entry<String, TreeSet<String>> e : d.entrySet()) {
            digests.put(e.getKey(), new TreeSet<String>(e.getValue()));
        }
        reindex();
    }

    /** Python's store_sync._renamed: a label in taken (or repeated here) becomes "label (2)", "label (3)", ... */
    private void renameClashes(Collection<String> taken) {
        List<String> renamed = new ArrayList<String>();
        Map<String, TreeSet<String>> moved = new HashMap<String, TreeSet<String>>();
        for (String lab : labels) {
            String n = lab;
            for (int k = 2; taken.contains(n) || renamed.contains(n); k++) {
                n = lab + " (" + k + ")";
            }
            if (!n.equals(lab)) {
                try {
                    Labels.validate(n);
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException("cannot keep \"" + lab + "\" apart as \"" + n + "\": " + e.getMessage());
                }
            }
            renamed.add(n);
            if (digests.containsKey(lab)) {
                moved.put(n, digests.get(lab));
            }
        }
        labels.clear();
        labels.addAll(renamed);
        digests.clear();
        digests.putAll(moved);
        reindex();
    }

    /**
     * Python's store_sync.merge_stores(None, ours, this) for combine, in place: this store's labels, then ours'
     * new ones; per label the sums added in float64 and rounded to float32 (a missing class counts as zeros),
     * counts added, this store's shots followed by those of ours whose bytes this class does not hold yet, and
     * the union of the photo digests.
     */
    private void absorb(ClassStore ours) {
        List<String> merged = new ArrayList<String>(labels);
        for (String l : ours.labels) {
            if (!index.containsKey(l)) {
                merged.add(l);
            }
        }
        boolean keepShots = shots != null || ours.shots != null;
        List<float[]> newSums = new ArrayList<float[]>();
        List<Long> newCounts = new ArrayList<Long>();
        List<List<float[]>> newShots = keepShots ? new ArrayList<List<float[]>>() : null;
        Map<String, TreeSet<String>> newDigests = new HashMap<String, TreeSet<String>>();
        for (String l : merged) {
            Integer t = index.get(l);
            Integer o = ours.index.get(l);
            float[] ts = t == null ? null : sums.get(t);
            float[] os = o == null ? null : ours.sums.get(o);
            float[] s = new float[dim];
            for (int i = 0; i < dim; i++) {
                s[i] = (float) ((ts == null ? 0.0 : (double) ts[i]) + (os == null ? 0.0 : (double) os[i]));
            }
            newSums.add(s);
            newCounts.add((t == null ? 0L : counts.get(t)) + (o == null ? 0L : ours.counts.get(o)));
            if (keepShots) {
                List<float[]> theirs = t == null || shots == null ? Collections.<float[]>emptyList() : shots.get(t);
                List<float[]> per = new ArrayList<float[]>(theirs);
                if (o != null && ours.shots != null) {
                    for (float[] v : ours.shots.get(o)) {
                        if (!containsBits(theirs, v)) {
                            per.add(v);
                        }
                    }
                }
                newShots.add(per);
            }
            TreeSet<String> d = new TreeSet<String>();
            for (Map<String, TreeSet<String>> m : Arrays.asList(digests, ours.digests)) {
                if (m.containsKey(l)) {
                    d.addAll(m.get(l));
                }
            }
            if (!d.isEmpty()) {
                newDigests.put(l, d);
            }
        }
        setRows(merged, newSums, newCounts, newShots, newDigests);
    }

    /** Whether a list holds a vector of exactly these float32 bits (Python compares the shots' bytes). */
    private static boolean containsBits(List<float[]> list, float[] v) {
        for (float[] u : list) {
            boolean same = true;
            for (int i = 0; i < v.length && same; i++) {
                same = Float.floatToRawIntBits(u[i]) == Float.floatToRawIntBits(v[i]);
            }
            if (same) {
                return true;
            }
        }
        return false;
    }

    private static String head12(String fingerprint) {
        String s = String.valueOf(fingerprint);  // Python's fingerprint[:12] counts code points
        return s.codePointCount(0, s.length()) > 12 ? s.substring(0, s.offsetByCodePoints(0, 12)) : s;
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
