"""Write golden vectors for the Java core (imprint-core) and the web demo with the Python runtime.

    python android_demo/tools/make_golden.py OUT_DIR [--bundle BUNDLE_DIR]

Without --bundle it builds the tiny test extractor of tests/tiny.py (no downloads). Everything written
is small; tests generate it into a temp dir at test time instead of committing it:

    golden.json        what every other file is, plus the expected predictions
    manifest.json      the bundle manifest (the Java core reads its preprocess spec from it)
    frame_*.rgb/.png   test images as raw RGB bytes (H*W*3) and as PNG; frame_*.nv21 the same in NV21
    input_*.npy        float32 (1, 3, S, S) the preprocessed tensor (imprinting.runtime.preprocess)
    input_nv21_*.npy   the same for the frame after an NV21 round trip (chroma subsampling loses colour)
    embedding_*.npy    float32 (D,) the extractor's unit-length embedding of that frame
    shots.npy          float32 (N, D) unit embeddings that were imprinted into store.npz, in order
    queries.npy        float32 (Q, D) unit embeddings that predictions refer to
    store.npz          the class store the shots make (read_store format)
    store_shots.npz    a store that keeps its shots (optional entries shots/shot_class)

and the shot-aware calibration case (golden.json "shot_offsets"; docs/formats.md, runtime/shot_offsets.py):

    manifest_shot_offsets.json  manifest.json with a "shot_offsets" table (keys deliberately unsorted)
    so_shots.npy       float32 (N, D) unit embeddings imprinted, in order, into store_shot_offsets.npz:
                       classes of 1, 3, 7 and 30 shots (below, between and beyond the table's points)
    so_extra.npy       float32 (2, D) shots added to the 1-shot class afterwards (its offset changes)
    store_shot_offsets.npz  the class store they make

and the default unknown policy case (golden.json "unknown"; runtime/recognizer_options.py bundle_unknown_policy):

    manifest_unknown.json  manifest.json whose calibration carries an unknown_min_cosine chosen at "export"
    store_single.npz   a store of one class (red), which must not be certain against nothing

and the shot-aware unknown policy (golden.json "unknown" "by_shots"; runtime/ranking.py UnknownPolicy
min_evidence_by_shots, docs/formats.md calibration.unknown_min_evidence_by_shots): the store of the shot-offsets
case (classes of 1, 3, 7 and 30 shots) asked about mixtures of its shots, with and without the shot offsets:

    manifest_unknown_shots.json  manifest.json with shot_offsets and a calibration that carries a table
    us_queries.npy     float32 (Q, D) unit queries whose top-1 evidence falls on both sides of the table

and the fleet case (golden.json "merge"; runtime/merge.py, docs/formats.md): merges by shot identity, which
Java and JavaScript must reproduce bit for bit (golden.json "merge" "cases": inputs, rename flag, Python's result):

    merge_a.npz        a store taught on one device ("phone"): a bundle's base class (a residual of 20 training
                       images, no shots) with one shot taught into it, classes of photos with their digests as ids
    merge_b.npz        a store taught on another ("robot") from the same bundle: the base class with another shot,
                       overlapping labels and disjoint ones; one photo the phone was taught too (the same id, its
                       embedding recomputed: other bits) and one of the phone's embeddings taught without its photo
                       digest (a content id: the same bits)
    merged.npz         combine([a, b]): the same label is one class holding each shot once, the base class's
                       residual counted once
    merged_renamed.npz combine([a, b], rename_conflicts=True): a class that adds something to a clashing label
                       comes in as "label (2)", ...; one that adds nothing is skipped
    merged_self.npz, merged_twice.npz, merged_renamed_twice.npz, merged_roundtrip.npz
                       combine([a, a]) == a, combine([a, b, b]) == merged (and renamed), and an export (a subset
                       of merged) imported back into merged == merged
    merge_export.npz   that export
    merge_other_model.npz, merge_other_dim.npz, merge_other_scale.npz, merge_other_templates.npz
                       stores that must be refused, with Python's line
    hostile_*.npz      broken and hostile stores (golden.json "hostile": whether Python's read_store accepts each, and
                       its line): every reader must give the same verdict
    fuzz_*.npz         random small stores sharing photos, base classes and labels, and Python's merges of them
                       (golden.json "merge" "fuzz": inputs, rename flag, result), for Java and JavaScript to match
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # tests/tiny.py: the tiny extractor and the synthetic images


def nv21_from_rgb(rgb: np.ndarray) -> bytes:
    """Full-range BT.601 (JFIF, what Android cameras deliver) NV21: Y plane, then interleaved V,U at 2x2."""
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"NV21 needs even sizes, got {w}x{h}")
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    u = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    v = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    sub = lambda p: p.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
    vu = np.stack([sub(v), sub(u)], axis=-1)
    q = lambda p: np.clip(np.rint(p), 0, 255).astype(np.uint8)  # noqa: E731
    return q(y).tobytes() + q(vu).tobytes()


def rgb_from_nv21(data: bytes, w: int, h: int) -> np.ndarray:
    """The decoder the Java core implements (full-range BT.601, chroma repeated over its 2x2 block)."""
    b = np.frombuffer(data, np.uint8)
    y = b[: w * h].reshape(h, w).astype(np.float32)
    vu = b[w * h :].reshape(h // 2, w // 2, 2).astype(np.float32) - 128
    up = lambda p: np.repeat(np.repeat(p, 2, axis=0), 2, axis=1)  # noqa: E731
    v, u = up(vu[..., 0]), up(vu[..., 1])
    rgb = np.stack([y + 1.402 * v, y - 0.344136 * u - 0.714136 * v, y + 1.772 * u], axis=-1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def frames(spec) -> dict[str, np.ndarray]:
    """Three frames: one the centre crop takes as is (no resampling: tight tolerance), one that is shrunk
    (INTER_AREA) and one that is enlarged (bilinear), both with a different aspect ratio."""
    from tiny import pattern_image

    r = spec.resize_size

    def scene(h: int, w: int, kind: int) -> np.ndarray:
        import cv2

        return cv2.resize(pattern_image(kind, 7, size=64), (w, h), interpolation=cv2.INTER_LINEAR)

    even = lambda x: max(2, int(round(x / 2)) * 2)  # noqa: E731
    return {
        "exact": scene(r, r, 0),
        "shrink": scene(even(1.3 * r), even(1.7 * r), 2),
        "enlarge": scene(even(0.6 * r), even(0.5 * r), 3),
    }


# Larger than a trained table (docs/formats.md) on purpose, so that the tiny extractor's well-separated classes
# still change rank; the last point is negative so that clamping above it is visible. Keys not in order: readers
# must sort them.
SHOT_OFFSETS = {"20": -0.01, "1": 0.2, "5": 0.05, "2": 0.15, "10": 0.02}
# Tables that ShotOffsets.from_mapping refuses; every reader must refuse them too (NaN/inf are not JSON).
INVALID_SHOT_OFFSETS = [
    {"0": 0.1}, {"-1": 0.1}, {"1": 1.5}, {"1": 0.1, "2": -1.01}, {"a": 0.1}, {"1.5": 0.1}, {"1": None},
    {"1": "x"}, {"1": [0.1]}, {"1": 0.1, "01": 0.2},
]


# Manifest "calibration" values and what bundle_unknown_policy makes of them: the bundle's threshold, or the fallback
# (0.4) where it is absent, null, a bool, not a number or outside [-1, 1]. An entry without "calibration" is a
# manifest without the field. unknown_case puts a calibrated bundle's first.
UNKNOWN_CALIBRATIONS = [
    {}, {"calibration": None}, {"calibration": {}}, {"calibration": {"unknown_min_cosine": None}},
    {"calibration": {"unknown_min_cosine": True}}, {"calibration": {"unknown_min_cosine": False}},
    {"calibration": {"unknown_min_cosine": 1.5}}, {"calibration": {"unknown_min_cosine": -1.0001}},
    {"calibration": {"unknown_min_cosine": -1}}, {"calibration": {"unknown_min_cosine": 1}},
    {"calibration": {"unknown_min_cosine": 0}}, {"calibration": {"unknown_min_cosine": "0.5"}},
    {"calibration": {"unknown_min_cosine": [0.5]}}, {"calibration": {"unknown_min_cosine": {"x": 0.5}}},
]
# "calibration" values that are not an object: Python refuses the manifest, and so must every reader.
INVALID_CALIBRATIONS = [[0.5], "0.5", 0.5, True]


def _wire(c) -> dict:
    """A Classification in the golden files' form, which the Java core and the web demo return: parallel
    lists, with "cosines" holding the ranked scores (cosine + shot offset)."""
    return {"labels": [x.label for x in c.categories], "cosines": [x.score for x in c.categories],
            "probabilities": [x.probability for x in c.categories], "unknown": c.unknown, "label": c.label}


def shot_offsets_case(out: Path, m, embed, queries: np.ndarray, policy: dict) -> dict:
    """Classes of different shot counts classified with a shot_offsets table, as the Python runtime does."""
    from imprinting.runtime import ClassSet, ImprintedClassifier, ShotOffsets, UnknownPolicy, write_store
    from imprinting.runtime.bundle import Manifest
    from imprinting.runtime.recognizer_options import bundle_unknown_policy
    from tiny import pattern_image

    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    manifest["shot_offsets"] = SHOT_OFFSETS
    (out / "manifest_shot_offsets.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    offsets = Manifest.from_dict(manifest).shot_offsets
    assert offsets == ShotOffsets.from_mapping(SHOT_OFFSETS)
    for table in INVALID_SHOT_OFFSETS:
        try:
            ShotOffsets.from_mapping(table)
        except ValueError:
            continue
        raise AssertionError(f"ShotOffsets accepted {table}")

    plan = [("red", 0, 1), ("green", 1, 3), ("blue", 2, 7), ("yellow", 3, 30)]
    labels = [name for name, _, n in plan for _ in range(n)]
    _, shots = embed([pattern_image(kind, 40 + s) for _, kind, n in plan for s in range(n)])
    _, extra = embed([pattern_image(0, 40 + s) for s in (1, 2)])
    np.save(out / "so_shots.npy", shots)
    np.save(out / "so_extra.npy", extra)
    classes = ClassSet(m.embedding_dim, m.scale, m.fingerprint)
    for label, e in zip(labels, shots):
        classes.learn(label, e)
    data = classes.to_store_data()
    write_store(out / "store_shot_offsets.npz", data)
    k = len(plan)
    raw = ImprintedClassifier(ClassSet.from_store_data(data)).classify(queries, top_k=k)
    calibrated = ImprintedClassifier(classes, shot_offsets=offsets).classify(queries, top_k=k)
    unknown = ImprintedClassifier(ClassSet.from_store_data(data), unknown=UnknownPolicy(**policy), shot_offsets=offsets)
    # What a Recognizer (and the app, and the page) opens this bundle with: its offsets and its unknown policy.
    default = ImprintedClassifier(ClassSet.from_store_data(data),
                                  unknown=bundle_unknown_policy(Manifest.from_dict(manifest)), shot_offsets=offsets)
    grown = ImprintedClassifier(ClassSet.from_store_data(data), shot_offsets=offsets)
    grown.classes.learn("red", extra)
    # The case is only worth its name if the offsets change answers.
    assert [c.top.label for c in raw] != [c.top.label for c in calibrated], "shot offsets change no top-1"
    counts = [0, 1, 2, 3, 4, 5, 7, 10, 14, 20, 30, 1000]
    return {
        "manifest": "manifest_shot_offsets.json", "table": SHOT_OFFSETS, "invalid_tables": INVALID_SHOT_OFFSETS,
        "shot_labels": labels, "store": "store_shot_offsets.npz", "top_k": k,
        "counts": {label: n for label, _, n in plan}, "extra_label": "red",
        "offset_counts": counts, "offset_values": offsets(np.asarray(counts)).tolist(),
        "predictions": [_wire(c) for c in calibrated],
        "predictions_raw": [_wire(c) for c in raw],
        "predictions_unknown": [_wire(c) for c in unknown.classify(queries, top_k=k)],
        "predictions_bundle": [_wire(c) for c in default.classify(queries, top_k=k)],
        "predictions_grown": [_wire(c) for c in grown.classify(queries, top_k=k)],
    }


def unknown_case(out: Path, m, shots: np.ndarray, shot_labels: list[str], queries: np.ndarray) -> dict:
    """The unknown policy a bundle carries by default (bundle_unknown_policy: the manifest's
    calibration.unknown_min_cosine, else the fallback), and predictions with it: the "unknown" alternative enters
    the probabilities, so a single class is not certain against nothing."""
    from imprinting.runtime import ClassSet, ImprintedClassifier, read_store, write_store
    from imprinting.runtime.bundle import Manifest
    from imprinting.runtime.recognizer_options import FALLBACK_MIN_COSINE, bundle_unknown_policy

    def scorer(d, **kw):
        return ImprintedClassifier(ClassSet.from_store_data(d), **kw)

    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))

    def with_calibration(case: dict) -> dict:
        d = {k: v for k, v in manifest.items() if k != "calibration"}
        if "calibration" in case:
            d["calibration"] = case["calibration"]
        return d

    # A calibrated bundle's threshold, as export would choose it: between the top-1 score of the never-taught query
    # (the last) and those of the taught ones, so that only the never-taught one is unknown.
    data = read_store(out / "store.npz")
    tops = [c.score for c in scorer(data).classify(queries, top_k=1)]
    assert tops[-1] < min(tops[:-1]), f"the never-taught query is closer to a class than a taught one: {tops}"
    t = round((tops[-1] + min(tops[:-1])) / 2, 4)
    calibration = {"unknown_min_cosine": t, "unknown_false_accept": 0.05, "unknown_accept": 0.98, "unknown_trials": 400}
    cases = [dict(c, min_cosine=bundle_unknown_policy(Manifest.from_dict(with_calibration(c))).min_cosine)
             for c in [{"calibration": calibration}] + UNKNOWN_CALIBRATIONS]
    assert cases[0]["min_cosine"] == t and cases[1]["min_cosine"] == FALLBACK_MIN_COSINE
    refused = []
    for bad in INVALID_CALIBRATIONS:
        try:
            Manifest.from_dict(with_calibration({"calibration": bad}))
        except ValueError as err:
            refused.append({"calibration": bad, "error": str(err)})
        else:
            raise AssertionError(f"a manifest with calibration {bad!r} was accepted")
    calibrated = with_calibration(cases[0])
    (out / "manifest_unknown.json").write_text(json.dumps(calibrated, indent=1), encoding="utf-8")
    policy = bundle_unknown_policy(Manifest.from_dict(calibrated))
    plain = bundle_unknown_policy(Manifest.from_dict(manifest))  # the fallback for the tiny bundle
    single = ClassSet(m.embedding_dim, m.scale, m.fingerprint)
    for label, e in zip(shot_labels, shots):
        if label == "red":
            single.learn(label, e)
    write_store(out / "store_single.npz", single.to_store_data())
    got = scorer(data, unknown=policy).classify(queries, top_k=3)
    alone = scorer(single.to_store_data(), unknown=policy).classify(queries, top_k=3)
    assert [c.unknown for c in got] == [False, False, False, True], tops
    assert alone[0].top.probability < 1 and alone[0].label == "red"
    return {
        "manifest": "manifest_unknown.json", "fallback_min_cosine": FALLBACK_MIN_COSINE, "cases": cases,
        "refused": refused, "top_k": 3, "single_store": "store_single.npz",
        "predictions": [_wire(c) for c in got],
        "predictions_plain": [_wire(c) for c in scorer(data, unknown=plain).classify(queries, top_k=3)],
        "predictions_single": [_wire(c) for c in alone],
    }


# Tables that evidence_table ignores (the single threshold rules then); every reader must ignore them too.
IGNORED_EVIDENCE_TABLES = [
    None, {}, [0.4], "0.4", {"1": True}, {"0": 0.4}, {"01": 0.4}, {"-1": 0.4}, {"1.5": 0.4}, {"x": 0.4}, {" 1": 0.4},
    {"1": 1.5}, {"1": -1.01}, {"1": "0.4"}, {"1": None}, {"1": [0.4]}, {"1": 0.4, "2": False},
    {"1234567890": 0.4},
]


def unknown_by_shots_case(out: Path) -> dict:
    """The shot-aware unknown policy on the shot-offsets store: Python's parsed tables (and the ones it ignores),
    each class's cosine bar, and predictions with and without the bundle's shot offsets."""
    from imprinting.runtime import ClassSet, ImprintedClassifier, UnknownPolicy, read_store
    from imprinting.runtime.bundle import Manifest
    from imprinting.runtime.recognizer_options import bundle_unknown_policy, evidence_table

    manifest = json.loads((out / "manifest_shot_offsets.json").read_text(encoding="utf-8"))
    data = read_store(out / "store_shot_offsets.npz")
    shots = np.load(out / "so_shots.npy")
    rng = np.random.default_rng(29)
    pairs = rng.integers(0, len(shots), (40, 2))
    mix = rng.uniform(0.2, 1.0, (40, 1))
    q = shots[pairs[:, 0]] * mix + shots[pairs[:, 1]] * (1 - mix) + 0.4 * rng.standard_normal((40, shots.shape[1])) \
        / np.sqrt(shots.shape[1])
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    np.save(out / "us_queries.npy", q)
    offsets = Manifest.from_dict(manifest).shot_offsets
    clf = ImprintedClassifier(ClassSet.from_store_data(data), shot_offsets=offsets)
    ev = [c.top.cosine * clf.classes.count(c.top.label) / np.linalg.norm(clf.classes.arrays()[0][
        clf.classes.labels.index(c.top.label)]) for c in clf.classify(q, top_k=1)]
    mid = float(np.median(ev))
    table = {"1": round(mid - 0.01, 4), "2": round(mid + 0.005, 4), "10": round(mid + 0.01, 4)}
    policy = UnknownPolicy(min_cosine=0.0, min_evidence_by_shots=evidence_table(table))
    _, inv, counts, _ = clf.classes.arrays()
    bars = [policy.cosine_threshold(int(n), float(v)) for n, v in zip(counts, inv)]
    for c in clf.classify(q, top_k=1) + ImprintedClassifier(clf.classes).classify(q, top_k=1):
        k = clf.classes.labels.index(c.top.label)
        assert abs(c.top.cosine - bars[k]) > 1e-4, "a query sits on its class's bar: pick other queries"
    manifest["calibration"] = {"unknown_min_cosine": 0.0, "unknown_false_accept": 0.05,
                               "unknown_min_evidence_by_shots": table}
    (out / "manifest_unknown_shots.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    bundle = bundle_unknown_policy(Manifest.from_dict(manifest))
    assert bundle == policy
    with_offsets = ImprintedClassifier(ClassSet.from_store_data(data), bundle, offsets).classify(q, top_k=3)
    plain = ImprintedClassifier(ClassSet.from_store_data(data), bundle).classify(q, top_k=3)
    single = ImprintedClassifier(ClassSet.from_store_data(data), UnknownPolicy(min_cosine=0.0), offsets)
    flags = [c.unknown for c in with_offsets]
    assert any(flags) and not all(flags), flags
    assert flags != [c.unknown for c in single.classify(q, top_k=3)], "the table changes no decision"
    parsed = [{"table": t, "parsed": None} for t in IGNORED_EVIDENCE_TABLES]
    assert all(evidence_table(t) is None for t in IGNORED_EVIDENCE_TABLES)
    t = evidence_table(table)
    parsed.insert(0, {"table": table, "parsed": {"shots": list(t.shots), "values": list(t.offsets)}})
    return {"manifest": "manifest_unknown_shots.json", "store": "store_shot_offsets.npz", "queries": "us_queries.npy",
            "top_k": 3, "tables": parsed, "labels": list(clf.classes.labels), "bars": bars,
            "predictions": [_wire(c) for c in with_offsets], "predictions_no_offsets": [_wire(c) for c in plain],
            # the score each top class needed (its bar plus its shot offset): the "unknown" alternative's score
            "thresholds": [c._raw[7] for c in with_offsets]}


def merge_case(out: Path, m, embed, queries: np.ndarray) -> dict:
    """Two devices teach overlapping and disjoint classes from the same bundle; Python's combine of their stores in
    every way that matters for idempotence (golden.json "merge" "cases"), and the lines it refuses other stores with.
    Shots are embedded one photo at a time, so that the same photo has the same bits wherever it is taught."""
    import hashlib

    from imprinting.runtime import ClassSet, ImprintedClassifier, StoreData, read_store, write_store
    from imprinting.runtime.store_sync import combine, subset
    from tiny import pattern_image

    cache: dict[tuple[int, int], tuple[np.ndarray, str]] = {}

    def shot(kind: int, seed: int) -> tuple[np.ndarray, str]:
        """The unit embedding of one photo and its digest (the photo's id)."""
        if (kind, seed) not in cache:
            image = pattern_image(kind, seed)
            cache[kind, seed] = (embed([image])[1][0], hashlib.sha256(image.tobytes()).hexdigest()[:32])
        return cache[kind, seed]

    def teach(classes: ClassSet, label: str, kind: int, seeds: list[int]) -> None:
        rows, ids = zip(*(shot(kind, s) for s in seeds))
        classes.learn(label, np.stack(rows), ids=list(ids))

    # The bundle's base class: 20 training images averaged into a unit row w, stored as 20 * w without shots.
    w = embed([pattern_image(3, s) for s in range(70, 75)])[1].sum(0)
    w /= np.linalg.norm(w)
    base = StoreData(labels=("base yellow",), sums=(20 * w[None, :]).astype(np.float32), counts=np.array([20], np.int64),
                     scale=m.scale, extractor_fingerprint=m.fingerprint, shots=np.zeros((0, m.embedding_dim), np.float32),
                     shot_class=np.zeros(0, np.int64), shot_ids=())
    phone = ClassSet.from_store_data(base)
    teach(phone, "base yellow", 3, [60])
    teach(phone, "red", 0, [50, 51])
    teach(phone, "green", 1, [50, 51, 52])
    teach(phone, "red (2)", 0, [56])
    robot = ClassSet.from_store_data(base)
    teach(robot, "base yellow", 3, [61])
    teach(robot, "blue", 2, [50, 51])
    # The phone's photo red/51 recomputed here (another precision, say): other bits, the same id. Then two new ones.
    e51, id51 = shot(0, 51)
    again = e51 + np.float32(1e-3) * np.sin(np.arange(m.embedding_dim, dtype=np.float32))
    robot.learn("red", again, ids=[id51])
    teach(robot, "red", 0, [52, 53])
    # The phone's green/50 without its photo digest: a content id, the same bits.
    robot.learn("green", shot(1, 50)[0])
    teach(robot, "yellow", 3, [50, 51])
    a, b = phone.to_store_data(), robot.to_store_data()
    write_store(out / "merge_a.npz", a)
    write_store(out / "merge_b.npz", b)

    def same(x: StoreData, y: StoreData) -> bool:
        return (x.labels == y.labels and x.sums.tobytes() == y.sums.tobytes() and np.array_equal(x.counts, y.counts)
                and x.shots.tobytes() == y.shots.tobytes() and np.array_equal(x.shot_class, y.shot_class)
                and x.shot_ids == y.shot_ids)

    a, b = read_store(out / "merge_a.npz"), read_store(out / "merge_b.npz")
    merged = combine([a, b])
    write_store(out / "merge_export.npz", subset(merged, ["red", "base yellow"]))
    export = read_store(out / "merge_export.npz")
    plan = [("merged", ["merge_a.npz", "merge_b.npz"], False), ("merged_renamed", ["merge_a.npz", "merge_b.npz"], True),
            ("merged_self", ["merge_a.npz", "merge_a.npz"], False),
            ("merged_twice", ["merge_a.npz", "merge_b.npz", "merge_b.npz"], False),
            ("merged_renamed_twice", ["merge_a.npz", "merge_b.npz", "merge_b.npz"], True),
            ("merged_roundtrip", ["merged.npz", "merge_export.npz"], False)]
    cases, results = [], {}
    for name, inputs, rename in plan:
        c = combine([read_store(out / f) for f in inputs], rename)
        write_store(out / f"{name}.npz", c)
        results[name] = c
        clf = ImprintedClassifier(ClassSet.from_store_data(c))
        cases.append({"name": name, "inputs": inputs, "rename": rename, "store": f"{name}.npz", "labels": list(c.labels),
                      "counts": c.counts.tolist(), "shots": int(len(c.shots)),
                      "predictions": [_wire(x) for x in clf.classify(queries, top_k=3)]})
    # The case is only worth its name if these hold.
    assert merged.labels == ("base yellow", "red", "green", "red (2)", "blue", "yellow"), merged.labels
    counts = dict(zip(merged.labels, merged.counts.tolist()))
    assert counts == {"base yellow": 22, "red": 4, "green": 3, "red (2)": 1, "blue": 2, "yellow": 2}, counts
    g = a.labels.index("green")
    assert merged.sums[2].tobytes() == a.sums[g].tobytes(), "green gained nothing, so it must keep its bits"
    assert same(results["merged_self"], a) and same(results["merged_twice"], merged), "merging is not idempotent"
    assert same(results["merged_renamed_twice"], results["merged_renamed"]) and same(results["merged_roundtrip"], merged)
    renamed = results["merged_renamed"].labels
    assert "red (3)" in renamed and "green (2)" not in renamed and "base yellow (2)" in renamed, renamed
    # Merged, red is (up to float32 rounding) red taught with its four distinct photos on one device.
    one = ClassSet(m.embedding_dim, m.scale, m.fingerprint)
    teach(one, "red", 0, [50, 51, 52, 53])
    np.testing.assert_allclose(merged.sums[1], one.to_store_data().sums[0], atol=2e-3)
    refused = []
    for name, fp, dim, scale, templates in (
            ("merge_other_model.npz", "sha256:" + "0123456789abcdef" * 4, m.embedding_dim, m.scale, 1),
            ("merge_other_dim.npz", m.fingerprint, m.embedding_dim + 1, m.scale, 1),
            ("merge_other_scale.npz", m.fingerprint, m.embedding_dim, m.scale * 1.25, 1),
            ("merge_other_templates.npz", m.fingerprint, m.embedding_dim, m.scale, 2)):
        other = ClassSet(dim, scale, fp, templates_per_class=templates)
        other.learn("red", np.eye(dim, dtype=np.float32)[:1])
        write_store(out / name, other.to_store_data())
        try:
            combine([a, read_store(out / name)])
        except ValueError as err:
            refused.append({"store": name, "error": str(err)})
        else:
            raise AssertionError(f"combine accepted {name}")
    return {"stores": ["merge_a.npz", "merge_b.npz"], "top_k": 3, "cases": cases, "refused": refused,
            "fuzz": merge_fuzz_case(out, m)}


def merge_fuzz_case(out: Path, m, seed: int = 25, pairs: int = 12) -> list[dict]:
    """Random small stores that share photos (the same id with other bits, the same bits under another id), base
    classes (residuals, some equal) and clashing labels, merged by Python's combine with and without
    rename_conflicts, and three at a time: Java and JavaScript must give the same bits (golden.json "merge" "fuzz")."""
    from imprinting.runtime import StoreData, read_store, write_store
    from imprinting.runtime.invariants import content_id
    from imprinting.runtime.store_sync import combine

    rng = np.random.default_rng(seed)
    d = m.embedding_dim

    def unit(n: int) -> np.ndarray:
        x = rng.normal(size=(n, d))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    photos = unit(12)  # a pool of photos: their ids are "photo-i"
    residuals = [(int(r), (r * unit(1)[0]).astype(np.float64)) for r in (3, 7, 20)]

    def store() -> StoreData:
        labels = [lab for lab in ("a", "b", "c", "a (2)") if rng.random() < 0.7] or ["a"]
        sums, counts, shots, cls, ids = [], [], [], [], []
        for k, _ in enumerate(labels):
            acc, count, seen = np.zeros(d), 0, set()
            if rng.random() < 0.5:
                r, res = residuals[rng.integers(len(residuals))]
                acc, count = acc + res, r
            for p in rng.choice(len(photos), size=rng.integers(0 if count else 1, 5), replace=False):
                row, sid = photos[p], f"photo-{p}"
                kind = rng.random()
                if kind < 0.2:  # the same photo, recomputed: other bits
                    row = row + np.float32(1e-4) * unit(1)[0]
                    row = (row / np.linalg.norm(row)).astype(np.float32)
                elif kind < 0.4:  # the same bits without the photo's id
                    sid = content_id(row)
                if sid in seen:
                    continue
                seen.add(sid)
                acc, count = acc + row, count + 1
                shots.append(row)
                cls.append(k)
                ids.append(sid)
            sums.append(acc.astype(np.float32))
            counts.append(count)
        return StoreData(tuple(labels), np.asarray(sums, np.float32), np.asarray(counts, np.int64), m.scale, m.fingerprint,
                         shots=np.asarray(shots, np.float32).reshape(-1, d), shot_class=np.asarray(cls, np.int64),
                         shot_ids=tuple(ids))

    cases = []
    for i in range(pairs):
        names = []
        for j in range(3):
            names.append(f"fuzz_{i}_{j}.npz")
            write_store(out / names[-1], store())
        for inputs in (names[:2], names):
            for rename in (False, True):
                c = combine([read_store(out / f) for f in inputs], rename)
                name = f"fuzz_{i}_{len(inputs)}{'_renamed' if rename else ''}_merged.npz"
                write_store(out / name, c)
                cases.append({"inputs": inputs, "rename": rename, "store": name})
    return cases


def hostile_case(out: Path) -> list[dict]:
    """Broken and hostile class stores (issue 25's poison among them) and whether the Python runtime's read_store
    accepts each: every reader must give the same verdict (golden.json "hostile")."""
    from imprinting.runtime import read_store

    base = {"format": "imprinting-class-store", "format_version": 1, "labels": ["a", "b"], "scale": 10.0, "embedding_dim": 2,
            "extractor_fingerprint": "fp", "templates_per_class": 1}
    sums, counts = [[1.6, 0.8], [0.0, 3.0]], [2, 3]
    shots, cls = [[1, 0], [0.6, 0.8], [0, 1]], [0, 0, 1]

    def meta(**kw) -> dict:
        return {**base, **kw}

    deep = json.dumps(base)[:-1] + ', "x": ' + "[" * 100000 + "]" * 100000 + "}"
    cases = [  # name, meta (dict or text), sums, counts, shots (None: no shots), shot_class
        ("good", meta(), sums, counts, shots, cls),
        ("good without shots", meta(), sums, counts, None, None),
        ("good with ids and nulls", meta(shot_ids=["p1", None, "p3"]), sums, counts, shots, cls),
        ("legacy shot_digests, one of a missing class", meta(shot_digests={"a": ["d1"], "zz": ["d2"]}), sums, counts, shots, cls),
        ("shot_ids without shots", meta(shot_ids=["x"]), sums, counts, None, None),
        ("integer scale, float dim", json.dumps(meta(scale=10)).replace('"embedding_dim": 2', '"embedding_dim": 2.0'),
         sums, counts, shots, cls),
        ("count 2^40", meta(), [[1.6, 0.8], [0, 3]], [2, 2**40], [[1, 0], [0.6, 0.8]], [0, 0]),
        ("a shot 0.9e-3 off unit", meta(), [[1.6009, 0.8], [0, 3]], counts, [[1.0009, 0], [0.6, 0.8], [0, 1]], cls),
        ("an emoji label", meta(labels=["a", "b\U0001F600"]), sums, counts, shots, cls),
        ("count 0", meta(), sums, [2, 0], None, None),
        ("count 2^40 + 1", meta(), sums, [2, 2**40 + 1], None, None),
        ("count 2^63 - 1", meta(), sums, [2, 2**63 - 1], None, None),
        ("an absurd sum (3e38)", meta(), [[1.6, 0.8], [0, 3e38]], counts, None, None),
        ("a sum longer than its count", meta(), [[1.6, 0.8], [0, 3.01]], counts, None, None),
        ("an infinite sum", meta(), [[1.6, 0.8], [0, np.inf]], counts, None, None),
        ("a shot of norm 1e30", meta(), sums, counts, [[1, 0], [0.6, 0.8], [0, 1e30]], cls),
        ("a shot of norm 1.01", meta(), sums, counts, [[1, 0], [0.6, 0.8], [0, 1.01]], cls),
        ("a NaN shot", meta(), sums, counts, [[1, 0], [0.6, 0.8], [0, np.nan]], cls),
        ("more shots than the count", meta(), sums, counts, shots, [0, 0, 0]),
        ("all shots kept, another sum", meta(), [[1.5, 0.8], [0, 3]], counts, shots, cls),
        ("a shot of no class", meta(), sums, counts, shots, [0, 0, 2]),
        ("the same shot twice without ids", meta(), [[2, 0], [0, 3]], counts, [[1, 0], [1, 0]], [0, 0]),
        ("the same id twice in a class", meta(shot_ids=["p1", "p1", "p3"]), sums, counts, shots, cls),
        ("a non-NFC label", meta(labels=["Cafe\u0301", "b"]), sums, counts, shots, cls),
        ("a label with a space at its end", meta(labels=["a ", "b"]), sums, counts, shots, cls),
        ("an invisible label", meta(labels=["a\u200b", "b"]), sums, counts, shots, cls),
        ("labels the same after NFC", meta(labels=["\u00e9", "e\u0301"]), sums, counts, shots, cls),
        ("duplicate labels", meta(labels=["a", "a"]), sums, counts, shots, cls),
        ("scale Infinity", json.dumps(meta()).replace('"scale": 10.0', '"scale": Infinity'), sums, counts, shots, cls),
        ("scale NaN", json.dumps(meta()).replace('"scale": 10.0', '"scale": NaN'), sums, counts, shots, cls),
        ("scale 1e999", json.dumps(meta()).replace('"scale": 10.0', '"scale": 1e999'), sums, counts, shots, cls),
        ("scale 1000.5", meta(scale=1000.5), sums, counts, shots, cls),
        ("scale 0", meta(scale=0.0), sums, counts, shots, cls),
        ("scale true", meta(scale=True), sums, counts, shots, cls),
        ("templates 65", meta(templates_per_class=65), sums, counts, shots, cls),
        ("templates 10**30", meta(templates_per_class=10**30), sums, counts, shots, cls),
        ("templates 2.0", meta(templates_per_class=2.0), sums, counts, shots, cls),
        ("templates true", meta(templates_per_class=True), sums, counts, shots, cls),
        ("shot_ids of another length", meta(shot_ids=["p1", "p2"]), sums, counts, shots, cls),
        ("a shot id of 65 characters", meta(shot_ids=["p1", None, "x" * 65]), sums, counts, shots, cls),
        ("an empty shot id", meta(shot_ids=["p1", None, ""]), sums, counts, shots, cls),
        ("a numeric shot id", meta(shot_ids=["p1", None, 7]), sums, counts, shots, cls),
        ("malformed shot_digests", meta(shot_digests={"a": "d1"}), sums, counts, shots, cls),
        ("a fingerprint that is a number", meta(extractor_fingerprint=7), sums, counts, shots, cls),
        ("labels that are numbers", meta(labels=[1, 2]), sums, counts, shots, cls),
        ("metadata nested 100000 deep", deep, sums, counts, shots, cls),
    ]
    out_cases = []
    for i, (name, m, s, c, sh, sc) in enumerate(cases):
        text = m if isinstance(m, str) else json.dumps(m, ensure_ascii=False)
        arrays = {"meta": np.frombuffer(text.encode("utf-8"), np.uint8), "sums": np.asarray(s, np.float32),
                  "counts": np.asarray(c, np.int64)}
        if sh is not None:
            arrays.update(shots=np.asarray(sh, np.float32), shot_class=np.asarray(sc, np.int64))
        path = out / f"hostile_{i}.npz"
        with np.errstate(over="ignore"):
            np.savez(path, **arrays)
        try:
            read_store(path)
            verdict = None
        except ValueError as err:
            verdict = str(err)
        out_cases.append({"name": name, "store": path.name, "accepted": verdict is None, "error": verdict})
    verdicts = {c["name"]: c["accepted"] for c in out_cases}
    assert verdicts["good"] and not verdicts["an absurd sum (3e38)"] and not verdicts["count 2^63 - 1"], verdicts
    return out_cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="directory to write (created)")
    ap.add_argument("--bundle", type=Path, help="a bundle directory (default: build the tiny test bundle)")
    args = ap.parse_args(argv)

    import cv2

    from imprinting.runtime import ClassSet, ImprintedClassifier, UnknownPolicy, load_bundle, preprocess, write_store
    from tiny import pattern_image, write_tiny_bundle

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    bundle_dir = args.bundle or write_tiny_bundle(out / "bundle")
    bundle = load_bundle(bundle_dir)
    m = bundle.manifest
    entry = m.select("onnx")
    spec = m.preprocess
    shutil.copy(bundle_dir / "manifest.json", out / "manifest.json")
    ex = bundle.open_extractor("onnx", entry.precision)

    def embed(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        x = preprocess(images, spec, ex.layout)
        e = ex.run(x).astype(np.float32)
        return x, e / np.linalg.norm(e, axis=1, keepdims=True)

    golden: dict = {
        "bundle": str(bundle_dir.resolve()), "extractor": entry.file, "layout": ex.layout,
        "input_size": spec.input_size, "embedding_dim": m.embedding_dim, "scale": m.scale,
        "fingerprint": m.fingerprint, "frames": [],
    }
    for name, rgb in frames(spec).items():
        h, w = rgb.shape[:2]
        (out / f"frame_{name}.rgb").write_bytes(rgb.tobytes())
        nv21 = nv21_from_rgb(rgb)
        (out / f"frame_{name}.nv21").write_bytes(nv21)
        np.save(out / f"input_nv21_{name}.npy", preprocess([rgb_from_nv21(nv21, w, h)], spec, ex.layout))
        cv2.imwrite(str(out / f"frame_{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        x, e = embed([rgb])
        np.save(out / f"input_{name}.npy", x)
        np.save(out / f"embedding_{name}.npy", e[0])
        golden["frames"].append({"name": name, "width": w, "height": h, "resampled": name != "exact"})

    # Three classes taught from a few shots each; the shots are saved so that the Java core can imprint
    # them itself and must arrive at the same sums.
    names = ["red", "green", "blue"]
    shot_labels, shot_images = [], []
    for kind, name in enumerate(names):
        for seed in range(3):
            shot_labels.append(name)
            shot_images.append(pattern_image(kind, seed))
    _, shots = embed(shot_images)
    np.save(out / "shots.npy", shots)
    classes = ClassSet(m.embedding_dim, m.scale, m.fingerprint)
    for label, e in zip(shot_labels, shots):
        classes.learn(label, e)
    write_store(out / "store.npz", classes.to_store_data())
    clf = ImprintedClassifier(classes)

    kept = ClassSet(m.embedding_dim, m.scale, m.fingerprint, templates_per_class=2)
    for label, e in zip(shot_labels, shots):
        kept.learn(label, e)
    write_store(out / "store_shots.npz", kept.to_store_data())

    # Queries: unseen images of the taught kinds plus one kind that was never taught (yellow).
    _, queries = embed([pattern_image(kind, 20 + kind) for kind in range(4)])
    np.save(out / "queries.npy", queries)
    policy = {"min_cosine": 0.95, "min_margin": 0.05}
    strict = ImprintedClassifier(ClassSet.from_store_data(classes.to_store_data()), unknown=UnknownPolicy(**policy))
    edited = ImprintedClassifier(ClassSet.from_store_data(classes.to_store_data()))
    edited.classes.rename("red", "Rot ß 赤")
    edited.classes.remove("green")
    golden.update(
        shot_labels=shot_labels, top_k=3, unknown_policy=policy,
        predictions=[_wire(c) for c in clf.classify(queries, top_k=3)],
        predictions_unknown=[_wire(c) for c in strict.classify(queries, top_k=3)],
        predictions_edited=[_wire(c) for c in edited.classify(queries, top_k=3)],
        edited_labels=list(edited.classes.labels),
    )
    golden["shot_offsets"] = shot_offsets_case(out, m, embed, queries, policy)
    golden["unknown"] = unknown_case(out, m, shots, shot_labels, queries)
    golden["unknown"]["by_shots"] = unknown_by_shots_case(out)
    golden["merge"] = merge_case(out, m, embed, queries)
    golden["hostile"] = hostile_case(out)
    (out / "golden.json").write_text(json.dumps(golden, indent=1, ensure_ascii=False), encoding="utf-8")
    ex.close()
    print(f"golden vectors in {out} ({len(golden['frames'])} frames, {len(shots)} shots, {len(queries)} queries, "
          f"shot offsets {golden['shot_offsets']['table']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
