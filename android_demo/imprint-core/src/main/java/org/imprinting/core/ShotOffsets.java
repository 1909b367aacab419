package org.imprinting.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * Shot-aware calibration, the Python runtime's ShotOffsets (imprinting/runtime/shot_offsets.py): a score
 * offset added to a class's cosine by its shot count, so that classes imprinted from one or two shots can
 * compete with base classes averaged over many images. The table travels in the bundle manifest as
 * {@code "shot_offsets": {"1": 0.07, "2": 0.05, "5": 0.02, "10": 0.01, "20": 0.0}}.
 *
 * <p>offset(c) = np.interp(log(max(c, 1)), log(shots), offsets): linear in log(count) between the table's
 * points, the first offset below the first point and the last above the last, computed in double and
 * rounded to float32 as NumPy does. Validation follows Python: at least one entry, counts (the keys) are
 * integers >= 1 and distinct, offsets finite and within [-1, 1].
 */
public final class ShotOffsets {
    private static final Pattern INT = Pattern.compile("\\s*[+-]?\\d+(_\\d+)*\\s*");
    private static final Pattern FLOAT = Pattern.compile("\\s*[+-]?(\\d+\\.?\\d*|\\.\\d+)([eE][+-]?\\d+)?\\s*");

    private final long[] shots;
    private final double[] offsets;
    private final double[] logShots;

    /** Counts strictly increasing and >= 1, offsets (same length, at least one) finite within [-1, 1]. */
    public ShotOffsets(long[] shots, double[] offsets) {
        if (shots.length == 0 || shots.length != offsets.length) {
            throw new IllegalArgumentException("shot_offsets need as many offsets as shot counts, at least one");
        }
        for (int i = 0; i < shots.length; i++) {
            if (shots[i] < 1 || (i > 0 && shots[i] <= shots[i - 1])) {
                throw new IllegalArgumentException("shot_offsets: shot counts must be >= 1 and strictly increasing, got "
                        + java.util.Arrays.toString(shots));
            }
        }
        for (double o : offsets) {
            if (!(o >= -1.0 && o <= 1.0)) { // false for NaN too
                throw new IllegalArgumentException("shot_offsets must be finite and within [-1, 1], got "
                        + java.util.Arrays.toString(offsets));
            }
        }
        this.shots = shots.clone();
        this.offsets = offsets.clone();
        this.logShots = new double[shots.length];
        for (int i = 0; i < shots.length; i++) {
            logShots[i] = Math.log((double) shots[i]);
        }
    }

    /**
     * From the manifest form {"1": 0.07, "5": 0.02, ...}: keys are shot counts (any order), values numbers.
     * An empty table is an error here; {@link #fromManifestValue} treats it as "no calibration".
     */
    public static ShotOffsets fromMap(Map<?, ?> table) {
        List<Object[]> items = new ArrayList<Object[]>();
        for (Map.Entry<?, ?> e : table.entrySet()) {
            items.add(new Object[] {parseCount(e.getKey(), table), parseOffset(e.getValue(), table)});
        }
        Collections.sort(items, new Comparator<Object[]>() {
            @Override
            public int compare(Object[] a, Object[] b) {
                int c = Long.compare((Long) a[0], (Long) b[0]);
                return c != 0 ? c : Double.compare((Double) a[1], (Double) b[1]);
            }
        });
        long[] s = new long[items.size()];
        double[] o = new double[items.size()];
        for (int i = 0; i < s.length; i++) {
            s[i] = (Long) items.get(i)[0];
            o[i] = (Double) items.get(i)[1];
        }
        return new ShotOffsets(s, o);
    }

    /**
     * The manifest's "shot_offsets" value: null for none (absent, null or an empty table, as in Python),
     * otherwise the parsed table. Throws IllegalArgumentException naming shot_offsets when it is malformed.
     */
    public static ShotOffsets fromManifestValue(Object value) {
        // Python: `if d.get("shot_offsets")`, so every falsy value means no calibration.
        if (value == null || Boolean.FALSE.equals(value) || "".equals(value)
                || (value instanceof Number && ((Number) value).doubleValue() == 0)
                || (value instanceof Map && ((Map<?, ?>) value).isEmpty())
                || (value instanceof List && ((List<?>) value).isEmpty())) {
            return null;
        }
        if (!(value instanceof Map)) {
            throw new IllegalArgumentException("shot_offsets must map shot counts to numbers, got " + value);
        }
        return fromMap((Map<?, ?>) value);
    }

    /** The offset for a class with this many shots, float32 as the Python runtime computes it. */
    public float offset(long count) {
        double x = Math.log((double) Math.max(count, 1L));
        int m = logShots.length;
        // np.interp: below the first point the first offset, above the last the last.
        if (m == 1 || x <= logShots[0]) {
            return (float) offsets[0];
        }
        if (x >= logShots[m - 1]) {
            return (float) offsets[m - 1];
        }
        int j = 0;
        while (logShots[j + 1] <= x) {
            j++;
        }
        if (x == logShots[j]) {
            return (float) offsets[j];
        }
        double slope = (offsets[j + 1] - offsets[j]) / (logShots[j + 1] - logShots[j]);
        return (float) (slope * (x - logShots[j]) + offsets[j]);
    }

    /** The table's shot counts, increasing. */
    public long[] shots() {
        return shots.clone();
    }

    /** The table's offsets, one per shot count. */
    public double[] offsets() {
        return offsets.clone();
    }

    /** The manifest form, {"1": 0.07, ...} in increasing count order. */
    public Map<String, Object> toMap() {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        for (int i = 0; i < shots.length; i++) {
            m.put(Long.toString(shots[i]), offsets[i]);
        }
        return m;
    }

    private static IllegalArgumentException malformed(Map<?, ?> table, String why) {
        return new IllegalArgumentException("shot_offsets must map shot counts to numbers, got " + table + " (" + why + ")");
    }

    /** Python's int(key): an integer string (or an integral number); >= 1 is checked by the constructor. */
    private static Long parseCount(Object key, Map<?, ?> table) {
        if (key instanceof String && INT.matcher((String) key).matches()) {
            String digits = ((String) key).trim().replace("_", "");
            try {
                return Long.parseLong(digits.startsWith("+") ? digits.substring(1) : digits);
            } catch (NumberFormatException e) {
                throw malformed(table, "shot count " + key + " is out of range");
            }
        }
        if (key instanceof Integer || key instanceof Long) {
            return ((Number) key).longValue();
        }
        throw malformed(table, "invalid shot count " + key);
    }

    /** Python's float(value): a number, a boolean or a numeric string; the range is checked by the constructor. */
    private static Double parseOffset(Object value, Map<?, ?> table) {
        if (value instanceof Number) {
            return ((Number) value).doubleValue();
        }
        if (value instanceof Boolean) {
            return (Boolean) value ? 1.0 : 0.0;
        }
        if (value instanceof String && FLOAT.matcher((String) value).matches()) {
            return Double.parseDouble(((String) value).trim());
        }
        throw malformed(table, "invalid offset " + value);
    }
}
