"""The export-time unknown threshold: a quantile of never-taught top-1 cosines, at the stated false-accept rate."""

import numpy as np
import pytest

from imprinting.export.unknown_threshold import ThresholdOptions, choose_threshold


def clusters(rng, sources=12, views=10, d=64, spread=0.3):
    centres = rng.standard_normal((sources, d))
    e = np.repeat(centres, views, axis=0) + spread * rng.standard_normal((sources * views, d))
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32), np.repeat(np.arange(sources), views)


def test_threshold_keeps_the_stated_share_of_never_taught_images_and_most_taught_ones():
    rng = np.random.default_rng(0)
    e, g = clusters(rng)
    t = choose_threshold(e, g, ThresholdOptions(false_accept=0.05, trials=30))
    # Recompute the false-accept rate on fresh splits, independently of the function's own bookkeeping.
    fa, n = 0, 0
    for trial in range(30):
        order = np.random.default_rng(100 + trial).permutation(12)
        taught, rest = order[:6], order[6:]
        w = np.stack([e[g == s][0] for s in taught])
        top = (e[np.isin(g, rest)] @ w.T).max(1)
        fa += int((top >= t.min_cosine).sum())
        n += top.size
    assert 0.0 < fa / n < 0.12
    assert t.accept > 0.9 and t.sources == 12 and t.negatives > 0


def test_a_stricter_false_accept_rate_raises_the_threshold_and_costs_accepts():
    e, g = clusters(np.random.default_rng(1), spread=0.9)
    ts = [choose_threshold(e, g, ThresholdOptions(false_accept=f)) for f in (0.2, 0.05, 0.01)]
    assert ts[0].min_cosine < ts[1].min_cosine < ts[2].min_cosine
    assert ts[0].accept >= ts[1].accept >= ts[2].accept and ts[0].accept > ts[2].accept


def test_too_few_sources_is_a_clear_error():
    rng = np.random.default_rng(2)
    e, g = clusters(rng, sources=3)
    with pytest.raises(ValueError, match="at least 4 sources"):
        choose_threshold(e, g)
    with pytest.raises(ValueError, match="false_accept"):
        ThresholdOptions(false_accept=0.7)
