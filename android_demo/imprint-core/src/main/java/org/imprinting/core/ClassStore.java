package org.imprinting.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The class set and the imprinted cosine classifier, the Python runtime's ClassSet scored with one template per
 * class: per class a float32 sum of unit embeddings and an int64 count; the weight is sum / |sum|, so adding shots
 * later equals imprinting all of them at once; logits = scale * cosine. All public methods are synchronized so that
 * a camera thread can classify while the UI thread teaches.
 * <p>
 * Every shot taught here is kept (as the Python runtime keeps them), with its id: the photo's content digest when
 * the caller gives one, else null (unknown). Ids read from a file (its "shot_ids") travel with their shots through
 * rename, remove and merge and are written back. A class may count more shots than it keeps (base classes from
 * training keep none): that part is its residual. {@link #merge} and {@link #combine} merge by shot identity, as the
 * Python runtime's store_sync.combine does (see ClassMerge): merging a store into itself changes nothing.
 * <p>
 * With shot offsets (a bundle manifest's "shot_offsets", see ShotOffsets) classify ranks by
 * cosine + offset(shot count of the class), reports those calibrated scores and takes the softmax and the
 * unknown policy over them, as the Python runtime does; cosines() stays raw. An unknown policy with a
 * minCosine adds "unknown" to the softmax (see Classification); a new store has none (UnknownPolicy.NEVER), the app
 * gives it the bundle's (Manifest.unknownPolicy()). The offsets and the unknown policy are settings of the
 * classifier, not part of the store file.
 */
public final class ClassStore {
    /** The longest shot id (code points), as in the file format. */
    public static final int MAX_ID_LENGTH = 64;

    private final int dim;
    private final double scale;
    private final String fingerprint;
    private int templatesPerClass = 1;
    private UnknownPolicy unknown = UnknownPolicy.NEVER;
    private ShotOffsets shotOffsets;
    private final List<ClassRow> rows = new ArrayList<ClassRow>();
    private final Map<String, Integer> index = new HashMap<String, Integer>();

    public ClassStore(int embeddingDim, float scale, String extractorFingerprint) {
        this(embeddingDim, (double) scale, extractorFingerprint);
    }

    /** A store whose scale is exactly this double (as a file or a manifest holds it). */
    public ClassStore(int embeddingDim, double scale, String extractorFingerprint) {
        if (embeddingDim < 1) {
            throw new IllegalArgumentException("embedding_dim must be >= 1, got " + embeddingDim);
        }
        if (!(scale > 0) || scale > 1000) {
            throw new IllegalArgumentException("scale must be in (0, 1000], got " + scale);
        }
        this.dim = embeddingDim;
        this.scale = scale;
        this.fingerprint = extractorFingerprint;
    }

    public int embeddingDim() {
        return dim;
    }

    /** The scale as float32, what classify multiplies by. */
    public float scale() {
        return (float) scale;
    }

    /** The scale exactly as the file holds it (stores must agree on it to merge). */
    public double scaleValue() {
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
        return rows.size();
    }

    public synchronized List<String> labels() {
        List<String> out = new ArrayList<String>();
        for (ClassRow r : rows) {
            out.add(r.label);
        }
        return Collections.unmodifiableList(out);
    }

    public synchronized boolean contains(String label) {
        return index.containsKey(label);
    }

    public synchronized long count(String label) {
        return rows.get(require(label)).count;
    }

    public synchronized float[] sum(String label) {
        return rows.get(require(label)).sum.clone();
    }

    /** The shots a class keeps, in order (copies); empty for a class that keeps none (a base class). */
    public synchronized List<float[]> shots(String label) {
        List<float[]> out = new ArrayList<float[]>();
        for (float[] v : rows.get(require(label)).shots) {
            out.add(v.clone());
        }
        return out;
    }

    /** The ids of a class's shots, aligned with shots(label): photo content digests, null where unknown. */
    public synchronized List<String> shotIds(String label) {
        return Collections.unmodifiableList(new ArrayList<String>(rows.get(require(label)).ids));
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
        if (index.containsKey(label)) {
            throw new IllegalArgumentException("class \"" + label + "\" exists already; use addShots to add examples to it");
        }
        learnShots(label, null, embeddings);
    }

    /** More shots for an existing class; exactly equal to having imprinted all shots at once. */
    public synchronized void addShots(String label, float[]... embeddings) {
        require(label);
        learnShots(label, null, embeddings);
    }

    /** Imprints a new class or adds shots to an existing one. */
    public synchronized void learn(String label, float[]... embeddings) {
        learnShots(label, null, embeddings);
    }

    /**
     * Imprints a new class or adds shots to an existing one, each shot with its id (the photo's content digest, 1..64
     * characters, or null when unknown; ids may be null for all). A shot that is the same shot as one the class holds
     * (including those added earlier in this call): the same id, or the same float32 bits, is a photo taught before
     * and is skipped, as the Python runtime's ClassSet.learn skips it. Returns how many shots were added.
     */
    public synchronized int learnShots(String label, List<String> ids, float[]... embeddings) {
        String l = Labels.validate(label);
        float[][] e = normalizeAll(embeddings);
        if (ids != null && ids.size() != e.length) {
            throw new IllegalArgumentException("got " + ids.size() + " ids for " + e.length + " shots");
        }
        Integer k = index.get(l);
        ClassRow r = k == null ? new ClassRow(l, new float[dim], 0, new ArrayList<float[]>(), new ArrayList<String>()) : rows.get(k);
        List<String> checked = new ArrayList<String>();
        for (int i = 0; i < e.length; i++) {
            checked.add(ids == null ? null : checkId(ids.get(i)));
        }
        ClassRow batch = new ClassRow(l, new float[dim], 0, Arrays.asList(e), checked);
        int added = 0;
        for (int i = 0; i < e.length; i++) {
            if (r.holds(batch, i)) {
                continue;  // the same shot (the same photo id, or the same bits) is never counted twice
            }
            String id = checked.get(i);
            for (int x = 0; x < dim; x++) {
                r.sum[x] += e[i][x];
            }
            r.count++;
            r.shots.add(e[i]);
            r.ids.add(id);
            added++;
        }
        if (k == null && added > 0) {
            index.put(l, rows.size());
            rows.add(r);
        }
        r.refresh();
        return added;
    }

    /** Deletes a class with its shots; later classes move up one row. */
    public synchronized void remove(String label) {
        rows.remove(require(label));
        reindex();
    }

    /** Gives a class a new label, which must not be taken; its shots and ids go with it. */
    public synchronized void rename(String oldLabel, String newLabel) {
        String n = Labels.validate(newLabel);
        int k = require(oldLabel);
        if (n.equals(oldLabel)) {
            return;
        }
        if (index.containsKey(n)) {
            throw new IllegalArgumentException("cannot rename \"" + oldLabel + "\" to \"" + n + "\": that label exists already");
        }
        rows.get(k).label = n;
        reindex();
    }

    /**
     * Merges another store (a device's export, say) into this one by shot identity (see ClassMerge): shots this
     * store holds already are not counted again, so merging the same store twice equals merging it once. With
     * renameConflicts an incoming class that adds something to a label this store has comes in as "label (2)", ...
     * This store's settings never change; a store of another model, scale or templates_per_class is refused with one
     * line and nothing changes. The incoming store is not changed.
     */
    public void merge(ClassStore incoming, boolean renameConflicts) {
        List<ClassRow> theirs = incoming.snapshotRows();
        int theirTemplates = incoming.templatesPerClass();
        synchronized (this) {
            String why = ClassMerge.refusal(this, incoming, theirTemplates);
            if (why != null) {
                throw new IllegalArgumentException(why);
            }
            List<ClassRow> merged = snapshotRows();
            ClassMerge.into(merged, theirs, renameConflicts);
            rows.clear();
            rows.addAll(merged);
            reindex();
        }
    }

    /**
     * One store holding every class of {@code stores}, the Python runtime's store_sync.combine: the first store's
     * copy with each later store merged into it in order ({@link #merge}). Settings (scale, fingerprint,
     * templates_per_class, and this classifier's unknown policy and shot offsets) are the first store's; the inputs
     * are not changed.
     *
     * @throws IllegalArgumentException for no stores, or stores of another model, scale or templates_per_class, with
     *         Python's one line
     */
    public static ClassStore combine(List<ClassStore> stores, boolean renameConflicts) {
        if (stores.isEmpty()) {
            throw new IllegalArgumentException("nothing to merge: give at least one class store");
        }
        ClassStore out = stores.get(0).copy();
        for (ClassStore s : stores.subList(1, stores.size())) {
            out.merge(s, renameConflicts);
        }
        return out;
    }

    /** {@link #combine} of this store and another (this one first). */
    public ClassStore mergedWith(ClassStore other, boolean renameConflicts) {
        return combine(Arrays.asList(this, other), renameConflicts);
    }

    /** A copy of the classes and all settings; later changes to either do not reach the other. */
    public synchronized ClassStore copy() {
        ClassStore c = new ClassStore(dim, scale, fingerprint);
        c.unknown = unknown;
        c.shotOffsets = shotOffsets;
        c.templatesPerClass = templatesPerClass;
        c.rows.addAll(snapshotRows());
        c.reindex();
        return c;
    }

    /** Cosine of the embedding to every class, in class order (raw: without shot offsets). */
    public synchronized float[] cosines(float[] embedding) {
        float[] e = normalize(embedding);
        float[] cos = new float[rows.size()];
        for (int k = 0; k < cos.length; k++) {
            float[] s = rows.get(k).sum;
            float dot = 0;
            for (int i = 0; i < dim; i++) {
                dot += e[i] * s[i];
            }
            cos[k] = dot * rows.get(k).invNorm;
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
        if (rows.isEmpty()) {
            throw new IllegalStateException("the classifier has no classes yet: imprint one first");
        }
        float[] raw = cosines(embedding);
        float[] cos = raw.clone();
        if (shotOffsets != null) {
            for (int k = 0; k < cos.length; k++) {
                cos[k] += shotOffsets.offset(rows.get(k).count);
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
        boolean isUnknown = unknown.isUnknown(best, margin);
        double threshold = unknown.minCosine;
        if (unknown.minEvidenceByShots != null) {
            // The shot-aware table: the top class's raw cosine against its bar; in score space for the softmax.
            ClassRow top = rows.get(order[0]);
            double bar = unknown.cosineThreshold(top.count, top.invNorm);
            float c0 = raw[order[0]];
            threshold = bar + ((double) best - (double) c0);
            isUnknown = c0 < bar || (!Float.isNaN(unknown.minMargin) && margin < unknown.minMargin);
        }
        // Softmax of scale * cos over all classes and, with a threshold, "unknown" scored at it (the Python
        // runtime's Classification.categories), shifted by the top logit so that exp never overflows.
        double total = 0;
        for (float v : cos) {
            total += Math.exp((v - best) * scale);
        }
        if (!Double.isNaN(threshold)) {
            total += Math.exp((threshold - best) * scale);
        }
        int k = Math.min(topK, n);
        String[] outLabels = new String[k];
        float[] outCos = new float[k];
        float[] outProb = new float[k];
        for (int i = 0; i < k; i++) {
            outLabels[i] = rows.get(order[i]).label;
            outCos[i] = cos[order[i]];
            outProb[i] = (float) (Math.exp((cos[order[i]] - best) * scale) / total);
        }
        return new Classification(outLabels, outCos, outProb, isUnknown, threshold);
    }

    // ----- state for ClassStoreFile and ClassMerge ---------------------------------------------------

    /** Fills a new store from checked file contents: per class its label, sum, count, shots and ids. */
    synchronized void restore(int templates, List<ClassRow> classes) {
        templatesPerClass = templates;
        rows.clear();
        rows.addAll(classes);
        reindex();
    }

    /** Copies of the classes (sums and lists copied; shot vectors are never changed, so they are shared). */
    synchronized List<ClassRow> snapshotRows() {
        List<ClassRow> out = new ArrayList<ClassRow>();
        for (ClassRow r : rows) {
            out.add(r.copy());
        }
        return out;
    }

    static String checkId(String id) {
        if (id != null) {
            int n = id.codePointCount(0, id.length());
            if (n < 1 || n > MAX_ID_LENGTH) {
                throw new IllegalArgumentException("a shot id must be 1.." + MAX_ID_LENGTH + " characters, got " + n);
            }
        }
        return id;
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

    private int require(String label) {
        Integer k = index.get(label);
        if (k == null) {
            StringBuilder near = new StringBuilder();
            for (int i = 0; i < Math.min(10, rows.size()); i++) {
                near.append(i == 0 ? "" : ", ").append('"').append(rows.get(i).label).append('"');
            }
            throw new IllegalArgumentException("no class named \"" + label + "\"; classes: " + near
                    + (rows.size() > 10 ? " ..." : ""));
        }
        return k;
    }

    private void reindex() {
        index.clear();
        for (int i = 0; i < rows.size(); i++) {
            index.put(rows.get(i).label, i);
        }
    }
}
