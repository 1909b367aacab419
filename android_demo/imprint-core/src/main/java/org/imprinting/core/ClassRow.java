package org.imprinting.core;

import java.util.ArrayList;
import java.util.List;

/**
 * One class of a ClassStore: its label, float32 sum of unit embeddings, count, and the shots it keeps with their
 * ids (aligned; an id is the photo's content digest, or null when unknown). The part of the count and the sum not
 * kept as shots is the class's residual (base classes from training, or shots taught where none were kept).
 * Shot vectors are never changed once stored, so copies may share them.
 */
final class ClassRow {
    String label;
    final float[] sum;
    long count;
    float invNorm;
    final List<float[]> shots;
    final List<String> ids;

    ClassRow(String label, float[] sum, long count, List<float[]> shots, List<String> ids) {
        this.label = label;
        this.sum = sum;
        this.count = count;
        this.shots = shots;
        this.ids = ids;
        refresh();
    }

    /** A copy whose sum and lists are its own (the shot vectors are shared: they never change). */
    ClassRow copy() {
        return new ClassRow(label, sum.clone(), count, new ArrayList<float[]>(shots), new ArrayList<String>(ids));
    }

    /** Recomputes the cached 1 / |sum| after the sum changed. */
    void refresh() {
        float ss = 0;
        for (float v : sum) {
            ss += v * v;
        }
        invNorm = 1f / Math.max((float) Math.sqrt(ss), 1e-12f);
    }

    /** How many shots of the count are not kept as shots. */
    long residualCount() {
        return count - shots.size();
    }

    /** float64(sum) minus each kept shot's float64 row, in stored order, one after the other. */
    double[] residualSum() {
        double[] r = new double[sum.length];
        for (int i = 0; i < r.length; i++) {
            r[i] = sum[i];
        }
        for (float[] s : shots) {
            for (int i = 0; i < r.length; i++) {
                r[i] -= s[i];
            }
        }
        return r;
    }

    /** Whether shot j of this class and shot k of other are the same shot: equal ids (both known) or equal float32 bits. */
    boolean sameShot(int j, ClassRow other, int k) {
        String a = ids.get(j);
        String b = other.ids.get(k);
        if (a != null && a.equals(b)) {
            return true;
        }
        return sameBits(shots.get(j), other.shots.get(k));
    }

    /** Whether this class holds a shot that is the same shot as shot k of other. */
    boolean holds(ClassRow other, int k) {
        for (int j = 0; j < shots.size(); j++) {
            if (sameShot(j, other, k)) {
                return true;
            }
        }
        return false;
    }

    static boolean sameBits(float[] u, float[] v) {
        if (u.length != v.length) {
            return false;
        }
        for (int i = 0; i < u.length; i++) {
            if (Float.floatToRawIntBits(u[i]) != Float.floatToRawIntBits(v[i])) {
                return false;
            }
        }
        return true;
    }
}
