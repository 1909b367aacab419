package org.imprinting.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The checks every reader of a class store makes before it trusts one (docs/formats.md, the Python runtime's
 * ClassSet invariants), each failing with one line: counts are integers in [1, 2^40]; sums are finite with
 * |sum| &lt;= count * (1 + 1e-3) (each shot is a unit row); kept shots are finite unit rows (within 1e-3), at most
 * count per class, and where a class keeps all its shots their sum is its sum (within 1e-3 * count); shot ids are
 * 1..64 characters or null, one per shot, and a class holds no shot twice (the same id, or without ids the same
 * bits); scale is finite in (0, 1000]; templates_per_class an integer in [1, 64].
 */
final class StoreCheck {
    static final double UNIT_TOLERANCE = 1e-3;
    static final int MAX_TEMPLATES = 64;
    static final double MAX_SCALE = 1000;

    private StoreCheck() {
    }

    static IllegalArgumentException corrupt(String where, String what) {
        return new IllegalArgumentException("class store " + where + " is corrupt: " + what);
    }

    /** A finite JSON number (an integer or a float literal, as Python takes float(scale)). */
    static double number(Object v, String field, String where) {
        double d = v instanceof Long || v instanceof Double ? ((Number) v).doubleValue() : Double.NaN;
        if (Double.isNaN(d) || Double.isInfinite(d)) {
            throw corrupt(where, field + " must be a finite number, got " + v);
        }
        return d;
    }

    /** A JSON integer literal (Python's int: 2.0 is not one) in [lo, hi]. */
    static int integer(Object v, String field, int lo, int hi, String where) {
        if (!(v instanceof Long) || (Long) v < lo || (Long) v > hi) {
            throw corrupt(where, field + " must be an integer in [" + lo + ", " + hi + "], got " + v);
        }
        return (int) (long) (Long) v;
    }

    /** embedding_dim: Python compares it with the sums' width, so any number equal to an integer >= 1 will do. */
    static int dim(Object v, String where) {
        double d = v instanceof Long || v instanceof Double ? ((Number) v).doubleValue() : Double.NaN;
        if (!(d >= 1) || d != Math.rint(d) || d > Integer.MAX_VALUE) {
            throw corrupt(where, "embedding_dim must be an integer >= 1, got " + v);
        }
        return (int) d;
    }

    static double scale(Object v, String where) {
        double s = number(v, "scale", where);
        if (!(s > 0) || s > MAX_SCALE) {
            throw corrupt(where, "scale must be a number in (0, 1000], got " + ClassMerge.pyFloat(s));
        }
        return s;
    }

    static void counts(long[] counts, String where) {
        for (long c : counts) {
            if (c < 1 || c > ClassMerge.MAX_COUNT) {
                throw corrupt(where, "a class count is outside [1, 2^40]: " + c);
            }
        }
    }

    /** The optional "shot_ids": null (absent) or a list of n entries, each a string of 1..64 characters or null. */
    static List<String> shotIds(Map<String, Object> meta, int n, String where) {
        if (!meta.containsKey("shot_ids")) {
            return null;
        }
        Object v = meta.get("shot_ids");
        if (!(v instanceof List) || ((List<?>) v).size() != n) {
            throw corrupt(where, "shot_ids must be a list of one id (or null) per shot, " + n + " in all");
        }
        List<String> out = new ArrayList<String>();
        for (Object x : (List<?>) v) {
            if (x != null && !(x instanceof String)) {
                throw corrupt(where, "a shot id must be a string or null, got " + x);
            }
            try {
                out.add(ClassStore.checkId((String) x));
            } catch (IllegalArgumentException e) {
                throw corrupt(where, e.getMessage());
            }
        }
        return out;
    }

    /**
     * The legacy "shot_digests" (label to the digests of the photos taught, from stores before shot ids), checked as
     * Python checks it: an object mapping labels to lists of strings of 1..64 characters. Checked, not used.
     */
    static void shotDigests(Map<String, Object> meta, String where) {
        if (!meta.containsKey("shot_digests")) {
            return;
        }
        Object value = meta.get("shot_digests");
        boolean ok = value instanceof Map;
        for (Object v : ok ? ((Map<?, ?>) value).values() : Collections.emptyList()) {
            ok &= v instanceof List;
            for (Object x : ok ? (List<?>) v : Collections.emptyList()) {
                String t = x instanceof String ? (String) x : "";
                int n = t.codePointCount(0, t.length());
                ok &= n >= 1 && n <= ClassStore.MAX_ID_LENGTH;
            }
        }
        if (!ok) {
            throw corrupt(where, "shot_digests must map labels to lists of digests");
        }
    }

    /** The per-class invariants of sums, counts and kept shots. */
    static void classes(List<ClassRow> rows, String where) {
        for (ClassRow r : rows) {
            String l = "class \"" + r.label + "\"";
            double ss = 0;
            for (float v : r.sum) {
                if (Float.isNaN(v) || Float.isInfinite(v)) {
                    throw corrupt(where, "sums hold NaN or infinity");
                }
                ss += (double) v * v;
            }
            if (Math.sqrt(ss) > r.count * (1 + UNIT_TOLERANCE)) {
                throw corrupt(where, l + " has a sum of norm " + (float) Math.sqrt(ss) + ", more than its " + r.count
                        + " unit shots can make");
            }
            if (r.shots.size() > r.count) {
                throw corrupt(where, l + " keeps " + r.shots.size() + " shots but counts " + r.count);
            }
            double[] total = new double[r.sum.length];
            for (float[] s : r.shots) {
                double n = 0;
                for (int i = 0; i < s.length; i++) {
                    if (Float.isNaN(s[i]) || Float.isInfinite(s[i])) {
                        throw corrupt(where, "shots hold NaN or infinity");
                    }
                    n += (double) s[i] * s[i];
                    total[i] += s[i];
                }
                if (Math.abs(Math.sqrt(n) - 1) > UNIT_TOLERANCE) {
                    throw corrupt(where, l + " keeps a shot of norm " + (float) Math.sqrt(n) + ", not a unit row");
                }
            }
            Set<String> ids = new HashSet<String>();
            for (int j = 0; j < r.ids.size(); j++) {
                String id = r.ids.get(j);
                boolean twice = id != null ? !ids.add(id) : false;
                for (int i = 0; i < j && !twice && id == null; i++) {
                    twice = r.ids.get(i) == null && ClassRow.sameBits(r.shots.get(i), r.shots.get(j));
                }
                if (twice) {
                    throw corrupt(where, l + " holds shot " + (id == null ? "(without an id) " + j : id) + " twice");
                }
            }
            if (r.shots.size() == r.count) {
                double d = 0;
                for (int i = 0; i < total.length; i++) {
                    d += (total[i] - r.sum[i]) * (total[i] - r.sum[i]);
                }
                if (Math.sqrt(d) > UNIT_TOLERANCE * r.count) {
                    throw corrupt(where, l + " keeps all its shots but their sum is not its sum (off by " + (float) Math.sqrt(d) + ")");
                }
            }
        }
    }
}
