from __future__ import annotations

import threading

import numpy as np
import pytest

from imprinting.runtime import ClassSet, ImprintedClassifier, UnknownPolicy, normalize_embeddings

D = 32


def unit(rng: np.random.Generator, n: int, d: int = D) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make(scale: float = 10.0, templates_per_class: int = 1, **kw) -> ImprintedClassifier:
    return ImprintedClassifier(ClassSet(D, scale, "fp-test", templates_per_class=templates_per_class), **kw)


def weights(clf: ImprintedClassifier) -> np.ndarray:
    """The imprinted rows (K, D): each class's normalized sum."""
    sums, inv_norms, _, _ = clf.classes.arrays()
    return sums * inv_norms[:, None]


def test_one_shot_weight_is_the_normalized_embedding(rng):
    clf = make()
    e = rng.normal(size=D).astype(np.float32) * 7.0  # not unit length: the class set normalizes
    learned = clf.classes.learn("a", e)
    assert learned.label == "a" and len(learned.added) == 1 and learned.repeats == 0 and learned.shots == 1
    np.testing.assert_allclose(weights(clf)[0], e / np.linalg.norm(e), rtol=1e-6, atol=1e-7)
    rows, ids = clf.classes.shots("a")
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-6)
    assert ids == learned.added
    for batch in (e, np.stack([e, -e])):
        out = normalize_embeddings(batch.astype(np.float64), D)
        assert out.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)


def test_adding_shots_later_equals_imprinting_all_at_once(rng):
    shots = unit(rng, 7)
    a, b = make(), make()
    a.classes.learn("x", shots)
    b.classes.learn("x", shots[:2])
    b.classes.learn("x", shots[2:5])
    b.classes.learn("x", shots[5])
    b.classes.learn("x", shots[6])
    np.testing.assert_allclose(weights(a), weights(b), atol=1e-6)
    assert a.classes.count("x") == b.classes.count("x") == 7
    mean = shots.mean(0)
    np.testing.assert_allclose(weights(a)[0], mean / np.linalg.norm(mean), atol=1e-6)


def test_a_repeated_shot_is_counted_once(rng):
    shots = unit(rng, 3)
    classes = make().classes
    first = classes.learn("x", shots)
    again = classes.learn("x", np.concatenate([shots[1:], unit(rng, 1)]))
    assert len(first.added) == 3 and again.repeats == 2 and len(again.added) == 1 and again.shots == 4
    twice = classes.learn("y", np.stack([shots[0], shots[0]]))  # repeats within one call too
    assert twice.repeats == 1 and twice.shots == 1
    named = classes.learn("z", shots[:2], ids=["photo-1", "photo-1"])  # ids: photo digests
    assert named.added == ("photo-1",) and named.repeats == 1
    assert classes.learn("z", shots[2], ids=["photo-1"]).added == ()
    with pytest.raises(ValueError, match="shot ids"):
        classes.learn("z", shots[:2], ids=["only-one"])


def test_cosine_argmax_is_the_nearest_template_by_euclidean_distance(rng):
    clf = make()
    for i in range(20):
        clf.classes.learn(f"c{i}", unit(rng, 3))
    queries = unit(rng, 200)
    cos = clf.cosines(queries)
    dist = np.linalg.norm(queries[:, None, :] - weights(clf)[None], axis=2)
    np.testing.assert_array_equal(cos.argmax(1), dist.argmin(1))
    np.testing.assert_array_equal(clf.scores(queries), cos)  # no shot offsets: the scores are the cosines


def test_scale_changes_probabilities_but_never_the_ranking(rng):
    protos = unit(rng, 10)
    queries = unit(rng, 50)
    results = []
    for scale in (1.0, 10.0, 64.0):
        clf = make(scale)
        for i, p in enumerate(protos):
            clf.classes.learn(f"c{i}", p)
        results.append(clf.classify(queries, top_k=3))
    for r1, r16, r64 in zip(*results):
        assert [c.label for c in r1.categories] == [c.label for c in r16.categories] == [c.label for c in r64.categories]
        assert r64.top.probability > r1.top.probability


def test_classify_returns_sorted_topk_with_softmax_over_all_classes(rng):
    clf = make()
    protos = unit(rng, 6)
    for i, p in enumerate(protos):
        clf.classes.learn(f"c{i}", p)
    (res,) = clf.classify(protos[4], top_k=3)
    assert res.label == "c4" and res.top.label == "c4"
    scores = [c.score for c in res.categories]
    assert scores == sorted(scores, reverse=True) and scores == [c.cosine for c in res.categories]
    assert [c.shots for c in res.categories] == [1, 1, 1]
    logits = 10.0 * (protos @ protos[4])
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose([c.probability for c in res.categories], np.sort(expected)[::-1][:3], rtol=1e-5)
    assert len(clf.classify(protos[0], top_k=100)[0].categories) == 6
    with pytest.raises(ValueError, match="top_k"):
        clf.classify(protos[0], top_k=0)


def test_growth_is_amortized_and_keeps_every_row(rng):
    classes = ClassSet(D, 10.0, "fp-test")
    shots = unit(rng, 300)
    buffers = set()
    for i, s in enumerate(shots):
        classes.learn(f"c{i}", s)
        buffers.add(id(classes._sums))
    # Doubling from 64 to 512 rows: 3 reallocations for 300 classes, not one per class.
    assert len(buffers) <= 4
    assert classes._sums.shape[0] == 512
    np.testing.assert_allclose(weights(ImprintedClassifier(classes)), shots, atol=1e-6)


def test_remove_and_rename(rng):
    clf = make()
    classes = clf.classes
    protos = unit(rng, 4)
    for i, p in enumerate(protos):
        classes.learn(f"c{i}", p)
    classes.remove("c1")
    assert classes.labels == ("c0", "c2", "c3")
    np.testing.assert_allclose(weights(clf), protos[[0, 2, 3]], atol=1e-6)
    assert clf.classify(protos[3])[0].label == "c3"
    classes.rename("c3", "  three ")
    assert classes.labels == ("c0", "c2", "three")
    assert clf.classify(protos[3])[0].label == "three"
    assert classes.shots("three")[0].shape == (1, D)  # a rename keeps the shots
    classes.learn("c1", protos[1])  # the freed label can be used again
    assert clf.classify(protos[1])[0].label == "c1"
    with pytest.raises(ValueError, match="no class named 'nope'"):
        classes.remove("nope")
    with pytest.raises(ValueError, match="exists already"):
        classes.rename("c0", "c2")
    # Learning an existing label adds shots to it; the same shot again is a repeat.
    again = classes.learn("c0", protos[0])
    assert again.added == () and again.repeats == 1 and classes.count("c0") == 1


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full(D, np.nan, np.float32), "NaN or infinity"),
        (np.zeros(D, np.float32), "all zeros"),
        (np.ones(D + 1, np.float32), r"expected embeddings of shape \(32,\)"),
        (np.ones((2, 3, D), np.float32), "expected embeddings of shape"),
        (np.ones(D, np.int32), "floating point"),
        (np.zeros((0, D), np.float32), "empty batch"),
    ],
)
def test_bad_embeddings_are_refused_and_nothing_enters_the_matrix(rng, bad, message):
    classes = make().classes
    good = unit(rng, 1)[0]
    classes.learn("a", good)
    before = classes.to_store_data()
    with pytest.raises(ValueError, match=message):
        classes.learn("b", bad)
    with pytest.raises(ValueError, match=message):
        mixed = np.stack([good, bad]) if bad.shape == (D,) and bad.dtype.kind == "f" else bad
        classes.learn("a", mixed)
    after = classes.to_store_data()
    assert after.labels == ("a",)
    np.testing.assert_array_equal(after.sums, before.sums)
    np.testing.assert_array_equal(after.counts, before.counts)
    assert after.shot_ids == before.shot_ids


@pytest.mark.parametrize("label, message", [("", "must not be empty"), ("   ", "must not be empty"),
                                            ("x" * 101, "at most 100"), ("a\nb", "control"), (3, "must be a string")])
def test_bad_labels(rng, label, message):
    with pytest.raises(ValueError, match=message):
        make().classes.learn(label, unit(rng, 1))


def test_classify_without_classes_is_a_clear_error(rng):
    with pytest.raises(ValueError, match="no classes yet"):
        make().classify(unit(rng, 1))


def test_unknown_policy_threshold_and_margin(rng):
    protos = unit(rng, 2)
    clf = make(unknown=UnknownPolicy(min_cosine=0.9))
    clf.classes.learn("a", protos[0])
    clf.classes.learn("b", protos[1])
    assert not clf.classify(protos[0])[0].unknown
    far = unit(rng, 1)[0]
    res = clf.classify(far)[0]
    assert res.unknown and res.label is None and res.top.label in ("a", "b")
    # Halfway between two classes: confident cosine, no margin.
    mid = protos[0] + protos[1]
    clf.unknown = UnknownPolicy(min_margin=0.05)
    assert clf.classify(mid)[0].unknown
    assert not clf.classify(protos[0])[0].unknown
    with pytest.raises(ValueError, match="min_cosine"):
        UnknownPolicy(min_cosine=2.0)


def test_several_templates_per_class_capture_a_bimodal_class(rng):
    # Class "two" has two far-apart modes; its average template sits between them.
    modes = unit(rng, 3)
    shots = np.concatenate([modes[0] + 0.05 * unit(rng, 5), modes[1] + 0.05 * unit(rng, 5)])
    single, multi = make(), make(templates_per_class=2)
    for clf in (single, multi):
        clf.classes.learn("two", shots)
        clf.classes.learn("other", modes[2] * 0.6 + modes[0] * 0.5)
    query = modes[0] + 0.02 * unit(rng, 1)[0]
    assert multi.classify(query)[0].label == "two"
    assert multi.cosines(query)[0, 0] > single.cosines(query)[0, 0] + 0.1
    # Adding shots later rebuilds the templates; a round trip through the store keeps the shots.
    before = multi.cosines(modes[1])
    multi.classes.learn("two", modes[1])
    assert multi.cosines(modes[1])[0, 0] > before[0, 0]
    again = ImprintedClassifier(ClassSet.from_store_data(multi.classes.to_store_data()))
    assert again.classes.templates_per_class == 2
    np.testing.assert_allclose(again.cosines(query), multi.cosines(query), atol=1e-6)
    assert again.classes.to_store_data().shots.shape == (12, D)
    # from_store_data's templates_per_class overrides the store's setting.
    one = ImprintedClassifier(ClassSet.from_store_data(multi.classes.to_store_data(), templates_per_class=1))
    assert one.classes.templates_per_class == 1
    assert one.cosines(query)[0, 0] < again.cosines(query)[0, 0] - 0.1


def test_teaching_from_another_thread_never_tears_a_read(rng):
    clf = make()
    classes = clf.classes
    protos = unit(rng, 1)
    classes.learn("anchor", protos[0])
    stop = threading.Event()
    errors: list[BaseException] = []

    def teach() -> None:
        r = np.random.default_rng(1)
        for i in range(300):
            classes.learn(f"t{i}", unit(r, 2))
            if i % 3 == 0:
                classes.remove(f"t{i}")
        stop.set()

    t = threading.Thread(target=teach)
    t.start()
    while not stop.is_set():
        try:
            res = clf.classify(protos[0], top_k=1)[0]
            assert res.top.label == "anchor" and abs(res.cosine - 1.0) < 1e-5
        except BaseException as err:  # noqa: BLE001 - any failure is what we look for
            errors.append(err)
            break
    t.join()
    assert not errors
    assert len(classes) == 1 + 300 - 100


def test_forget_undoes_the_last_teach(rng):
    clf = make()
    classes = clf.classes
    first, later = unit(rng, 3), unit(rng, 2)
    classes.learn("a", first)
    taught = classes.learn("a", later)
    assert classes.forget("a", taught.added) == 2
    assert classes.count("a") == 3
    mean = first.mean(0)
    np.testing.assert_allclose(weights(clf)[0], mean / np.linalg.norm(mean), atol=1e-5)
    assert classes.forget("a", ["not-a-shot"]) == 0 and classes.count("a") == 3
    assert classes.forget("a", classes.shots("a")[1]) == 3
    assert len(classes) == 0


def test_nearest_shots(rng):
    clf = make()
    shots = unit(rng, 4)
    clf.classes.learn("a", shots)
    near = clf.nearest_shots(shots[2], "a", k=2)
    assert near[0][0] == 3 and near[0][1] == pytest.approx(1.0, abs=1e-6) and len(near) == 2
    with pytest.raises(ValueError, match="no class named"):
        clf.nearest_shots(shots[0], "b")


def test_a_single_class_is_not_certain_against_nothing():
    e = np.zeros(D, np.float32)
    e[0] = 1.0
    far = np.zeros(D, np.float32)
    far[0], far[1] = 0.25, np.sqrt(1 - 0.25**2)  # cosine 0.25 to the only class
    clf = make(unknown=UnknownPolicy(min_cosine=0.47))
    clf.classes.learn("only", e)
    res = clf.classify(far)[0]
    assert res.unknown and res.label is None and res.cosine == pytest.approx(0.25, abs=1e-6)
    # softmax over the class and "unknown" at the threshold: 1 / (1 + e^(10 (0.47 - 0.25)))
    assert res.top.probability == pytest.approx(1 / (1 + np.exp(10 * 0.22)), rel=1e-5)
    assert clf.classify(e)[0].top.probability == pytest.approx(1 / (1 + np.exp(10 * (0.47 - 1))), rel=1e-5)
    never = make()  # no threshold: the softmax is over the classes alone
    never.classes.learn("only", e)
    assert never.classify(far)[0].top.probability == pytest.approx(1.0)
