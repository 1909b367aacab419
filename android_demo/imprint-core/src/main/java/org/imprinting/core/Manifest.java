package org.imprinting.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/** The parts of a bundle's manifest.json that a device needs (docs/formats.md, format version 1). */
public final class Manifest {
    public static final String FORMAT = "imprinting-bundle";
    public static final int FORMAT_VERSION = 1;

    public final String name;
    public final int embeddingDim;
    public final float scale;
    public final String fingerprint;
    public final PreprocessSpec preprocess;
    public final List<Extractor> extractors;
    /** File name of the base classes store inside the bundle, or null. */
    public final String baseClasses;
    /** Shot-aware calibration (the manifest's "shot_offsets"), or null when the bundle has none. */
    public final ShotOffsets shotOffsets;
    /**
     * The top-1 cosine (score, with shot offsets) below which an answer is "unknown" by default: the manifest's
     * calibration.unknown_min_cosine, chosen at export for a stated false-accept rate, or
     * UnknownPolicy.FALLBACK_MIN_COSINE for bundles without one (the Python runtime's bundle_unknown_policy).
     */
    public final float unknownMinCosine;
    /** Whether unknownMinCosine is the bundle's own (calibrated at export) rather than the fallback. */
    public final boolean unknownCalibrated;
    /**
     * The shot-aware unknown table (calibration.unknown_min_evidence_by_shots, see UnknownPolicy), or null when the
     * bundle has none or it is malformed (then unknownMinCosine decides, as in Python).
     */
    public final ShotOffsets unknownMinEvidenceByShots;

    /** One extractor file of the bundle. */
    public static final class Extractor {
        public final String file;
        public final String format;
        public final String precision;
        public final String layout;

        Extractor(String file, String format, String precision, String layout) {
            this.file = file;
            this.format = format;
            this.precision = precision;
            this.layout = layout;
        }
    }

    private Manifest(Map<String, Object> m) {
        if (!FORMAT.equals(m.get("format"))) {
            throw new IllegalArgumentException("not an imprinting bundle manifest (format is " + m.get("format") + ")");
        }
        Object version = m.get("format_version");
        if (!(version instanceof Number) || ((Number) version).intValue() != FORMAT_VERSION) {
            throw new IllegalArgumentException("bundle format version " + version + " is not supported (this app reads "
                    + FORMAT_VERSION + "); re-export the bundle or update the app");
        }
        name = String.valueOf(m.get("name"));
        embeddingDim = ((Number) m.get("embedding_dim")).intValue();
        scale = ((Number) m.get("scale")).floatValue();
        fingerprint = String.valueOf(m.get("fingerprint"));
        @SuppressWarnings("unchecked")
        Map<String, Object> pre = (Map<String, Object>) m.get("preprocess");
        preprocess = PreprocessSpec.fromMap(pre);
        List<Extractor> ex = new ArrayList<Extractor>();
        for (Object o : (List<?>) m.get("extractors")) {
            Map<?, ?> e = (Map<?, ?>) o;
            Object layout = e.get("layout");
            ex.add(new Extractor((String) e.get("file"), (String) e.get("format"), (String) e.get("precision"),
                    layout == null ? "NCHW" : (String) layout));
        }
        extractors = Collections.unmodifiableList(ex);
        Object base = m.get("base_classes");
        baseClasses = base == null ? null : String.valueOf(base);
        shotOffsets = ShotOffsets.fromManifestValue(m.get("shot_offsets"));
        Object cal = m.get("calibration");
        if (cal != null && !(cal instanceof Map)) {
            throw new IllegalArgumentException("bundle manifest field 'calibration' must be an object, got " + cal);
        }
        // As Python: a number in [-1, 1] (not a bool, a string or anything else), else the fallback.
        Object t = cal == null ? null : ((Map<?, ?>) cal).get("unknown_min_cosine");
        double v = t instanceof Number ? ((Number) t).doubleValue() : Double.NaN;
        unknownCalibrated = v >= -1 && v <= 1;
        unknownMinCosine = unknownCalibrated ? (float) v : UnknownPolicy.FALLBACK_MIN_COSINE;
        unknownMinEvidenceByShots = cal == null ? null
                : UnknownPolicy.evidenceTable(((Map<?, ?>) cal).get("unknown_min_evidence_by_shots"));
    }

    /**
     * The unknown policy this bundle carries: its shot-aware table when it has one, else below unknownMinCosine is
     * unknown; no margin rule.
     */
    public UnknownPolicy unknownPolicy() {
        return new UnknownPolicy(unknownMinCosine, Float.NaN, unknownMinEvidenceByShots);
    }

    public static Manifest parse(String json) {
        try {
            return new Manifest(Json.parseObject(json));
        } catch (ClassCastException e) {
            throw new IllegalArgumentException("bundle manifest has a malformed field: " + e.getMessage());
        } catch (NullPointerException e) {
            throw new IllegalArgumentException("bundle manifest is missing a field");
        }
    }

    /** The ONNX extractor to run: int8 before fp32 (the Python runtime's order). */
    public Extractor selectOnnx() {
        String[] order = {"int8", "fp32"};
        for (String p : order) {
            for (Extractor e : extractors) {
                if ("onnx".equals(e.format) && p.equals(e.precision)) {
                    return e;
                }
            }
        }
        throw new IllegalArgumentException("the bundle has no ONNX extractor; export one with `imprint export`");
    }
}
