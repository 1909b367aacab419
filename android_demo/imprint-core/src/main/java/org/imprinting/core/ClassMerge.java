package org.imprinting.core;

import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;
import java.util.ArrayList;
import java.util.List;

/**
 * Merging one class store into another by shot identity, the Python runtime's store_sync merge (docs/formats.md):
 * merges are idempotent (merging a store into itself, or importing the same store twice, changes nothing) and
 * exact (the sums are added in float64 and rounded to float32 once, in Python's order, so they are bit for bit
 * Python's). For each incoming class:
 * <ul>
 * <li>a label the destination lacks is appended as it is (after the destination's classes, in incoming order);</li>
 * <li>else its shots that are not the same shot as one the destination class holds (equal ids, or equal float32
 * bits) nor as an earlier new one are added, and its residual (count and sum not kept as shots) is added unless
 * the destination class has the same residual (equal counts, sums within 1e-4 per shot);</li>
 * <li>with renameConflicts an incoming class that would add nothing to a class named L, "L (2)", ... (as far as
 * they exist without a gap) is skipped;
 * otherwise it comes in as a new class under the first free name "L (k)", k &gt;= 2.</li>
 * </ul>
 * The destination's settings never change; stores of another model, scale or templates_per_class are refused.
 */
final class ClassMerge {
    /** A residual is the same when every component is within this many units per residual shot. */
    static final double RESIDUAL_TOLERANCE = 1e-4;
    /** The largest count a class may have (the readers' limit). */
    static final long MAX_COUNT = 1L << 40;

    private ClassMerge() {
    }

    /** What merging incoming class i into destination class d adds: new shots (indices into i) and the residual. */
    static final class Plan {
        final List<Integer> fresh = new ArrayList<Integer>();
        double[] residual;

        boolean addsNothing() {
            return fresh.isEmpty() && residual == null;
        }
    }

    /** The one-line refusal for stores that cannot be merged, or null when their settings agree (inTemplates: in's). */
    static String refusal(ClassStore dest, ClassStore in, int inTemplates) {
        if (!String.valueOf(dest.fingerprint()).equals(String.valueOf(in.fingerprint())) || dest.embeddingDim() != in.embeddingDim()) {
            return "cannot merge stores of different models: " + head12(dest.fingerprint()) + " (" + dest.embeddingDim() + "-d) and "
                    + head12(in.fingerprint()) + " (" + in.embeddingDim() + "-d)";
        }
        if (dest.scaleValue() != in.scaleValue()) {
            return settings("scale", formatG(dest.scaleValue()), formatG(in.scaleValue()));
        }
        if (dest.templatesPerClass() != inTemplates) {
            return settings("templates_per_class", "" + dest.templatesPerClass(), "" + inTemplates);
        }
        return null;
    }

    private static String settings(String name, String a, String b) {
        return "cannot merge class stores with different settings: " + name + " " + a + " and " + b
                + " (a merge keeps the destination's settings)";
    }

    /** Merges the rows of incoming (a private copy) into dest's rows, in place; settings were checked. */
    static void into(List<ClassRow> dest, List<ClassRow> incoming, boolean renameConflicts) {
        for (ClassRow i : incoming) {
            ClassRow d = find(dest, i.label);
            if (d == null) {
                dest.add(i.copy());
            } else if (!renameConflicts) {
                apply(d, i, plan(d, i));
            } else if (!addsNothingToAny(dest, i)) {
                String name = freeName(dest, i.label);
                ClassRow c = i.copy();
                c.label = name;
                dest.add(c);
            }
        }
    }

    static Plan plan(ClassRow d, ClassRow i) {
        Plan p = new Plan();
        for (int k = 0; k < i.shots.size(); k++) {
            if (!d.holds(i, k) && !heldBy(i, p.fresh, i, k)) {
                p.fresh.add(k);
            }
        }
        long rI = i.residualCount();
        if (rI > 0) {
            double[] resI = i.residualSum();
            boolean same = d.residualCount() == rI;
            if (same) {
                double[] resD = d.residualSum();
                double tol = RESIDUAL_TOLERANCE * rI;
                for (int x = 0; x < resI.length && same; x++) {
                    same = Math.abs(resD[x] - resI[x]) <= tol;
                }
            }
            if (!same) {
                p.residual = resI;
            }
        }
        return p;
    }

    /** Adds what the plan says to d: sums in float64, rounded to float32 once; new shots and ids appended. */
    static void apply(ClassRow d, ClassRow i, Plan p) {
        if (p.addsNothing()) {
            return;  // bit for bit as it was
        }
        long add = p.fresh.size() + (p.residual == null ? 0 : i.residualCount());
        if (d.count > MAX_COUNT - add) {
            throw new IllegalArgumentException("cannot merge: class \"" + d.label + "\" would count more than 2^40 shots");
        }
        for (int x = 0; x < d.sum.length; x++) {
            double acc = d.sum[x];
            for (int k : p.fresh) {
                acc += i.shots.get(k)[x];
            }
            if (p.residual != null) {
                acc += p.residual[x];
            }
            d.sum[x] = (float) acc;
        }
        d.count += add;
        for (int k : p.fresh) {
            d.shots.add(i.shots.get(k));
            d.ids.add(i.ids.get(k));
        }
        d.refresh();
    }

    /** Whether i adds nothing to one of its namesakes: label, "label (2)", "label (3)", ... as far as they exist. */
    private static boolean addsNothingToAny(List<ClassRow> dest, ClassRow i) {
        ClassRow d = find(dest, i.label);
        for (int k = 2; d != null; k++) {
            if (plan(d, i).addsNothing()) {
                return true;
            }
            d = find(dest, i.label + " (" + k + ")");
        }
        return false;
    }

    private static String freeName(List<ClassRow> dest, String label) {
        for (int k = 2;; k++) {
            String n = label + " (" + k + ")";
            if (find(dest, n) == null) {
                try {
                    Labels.validate(n);
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException("cannot keep \"" + label + "\" apart as \"" + n + "\": " + e.getMessage());
                }
                return n;
            }
        }
    }

    private static ClassRow find(List<ClassRow> rows, String label) {
        for (ClassRow r : rows) {
            if (r.label.equals(label)) {
                return r;
            }
        }
        return null;
    }

    /** Whether one of the shots of owner at these indices is the same shot as shot k of i. */
    private static boolean heldBy(ClassRow owner, List<Integer> indices, ClassRow i, int k) {
        for (int j : indices) {
            if (owner.sameShot(j, i, k)) {
                return true;
            }
        }
        return false;
    }

    static String head12(String fingerprint) {
        String s = String.valueOf(fingerprint);  // Python's fingerprint[:12] counts code points
        return s.codePointCount(0, s.length()) > 12 ? s.substring(0, s.offsetByCodePoints(0, 12)) : s;
    }

    /** Python's format(x, "g"): 6 significant digits (exact value, half to even), trailing zeros dropped, exponent
     * form below 1e-4 and from 1e6 on. */
    static String formatG(double x) {
        if (Double.isNaN(x) || Double.isInfinite(x) || x == 0) {
            return Double.isNaN(x) ? "nan" : Double.isInfinite(x) ? (x > 0 ? "inf" : "-inf") : (1 / x < 0 ? "-0" : "0");
        }
        BigDecimal d = new BigDecimal(x).round(new MathContext(6, RoundingMode.HALF_EVEN));
        int exp = d.precision() - d.scale() - 1;
        if (exp < -4 || exp >= 6) {
            String m = d.movePointLeft(exp).stripTrailingZeros().toPlainString();
            return m + "e" + (exp < 0 ? "-" : "+") + (Math.abs(exp) < 10 ? "0" : "") + Math.abs(exp);
        }
        return d.stripTrailingZeros().toPlainString();
    }

    /** Python's repr of a float: the shortest round-trip digits, fixed for 1e-4 &lt;= |x| &lt; 1e16, else "1.5e+20". */
    static String pyFloat(double x) {
        if (Double.isNaN(x)) {
            return "nan";
        }
        if (Double.isInfinite(x)) {
            return x > 0 ? "inf" : "-inf";
        }
        if (x == 0) {
            return (1 / x) < 0 ? "-0.0" : "0.0";
        }
        BigDecimal d = new BigDecimal(Double.toString(x)).stripTrailingZeros();
        String digits = d.unscaledValue().abs().toString();
        int exp = digits.length() - 1 - d.scale();  // x = 0.d1d2... * 10^(exp + 1)
        String sign = x < 0 ? "-" : "";
        if (exp >= -4 && exp < 16) {
            String fixed = d.abs().toPlainString();
            return sign + (fixed.contains(".") ? fixed : fixed + ".0");
        }
        String mant = digits.length() == 1 ? digits : digits.charAt(0) + "." + digits.substring(1);
        return sign + mant + "e" + (exp < 0 ? "-" : "+") + (Math.abs(exp) < 10 ? "0" : "") + Math.abs(exp);
    }
}
