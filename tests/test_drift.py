"""The drift statistics both export and the server count: bins, buckets and the population stability index."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pixelserve import drift


def test_pixel_counts_put_each_intensity_in_its_sixteenth() -> None:
    batch = np.array([[0, 15, 16, 255], [128, 127, 31, 32]], dtype=np.uint8)
    counts = drift.pixel_counts(batch)
    assert counts.tolist() == [2, 2, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1]
    assert counts.tolist() == np.histogram(batch, bins=16, range=(0, 256))[0].tolist()


def test_pixel_counts_refuse_float_inputs() -> None:
    with pytest.raises(TypeError, match="uint8"):
        drift.pixel_counts(np.zeros((2, 2), dtype=np.float32))


def test_score_buckets_are_cut_by_the_edges_with_an_edge_value_in_the_lower_bucket() -> None:
    counts = drift.score_counts(np.array([-1.0, 0.1, 0.15, 0.2, 9.0, math.inf]), [0.1, 0.2])
    assert counts.tolist() == [2, 2, 2]


def test_deciles_of_a_baseline_make_ten_equal_buckets_of_it() -> None:
    scores = np.random.default_rng(0).exponential(size=10_000)
    edges = drift.score_edges(scores)
    assert len(edges) == 9 and edges == sorted(edges)
    counts = drift.score_counts(scores, edges)
    assert np.allclose(counts / counts.sum(), drift.score_shares(edges), atol=1e-3)
    assert drift.psi(drift.score_shares(edges), counts) < 1e-5


def test_psi_matches_the_formula_by_hand() -> None:
    expected = [0.5, 0.3, 0.2]
    counts = np.array([30, 30, 40])
    by_hand = sum((a - e) * math.log(a / e) for a, e in zip([0.3, 0.3, 0.4], expected, strict=True))
    assert drift.psi(expected, counts) == pytest.approx(by_hand, rel=1e-9)


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift() -> None:
    expected = [0.25, 0.25, 0.25, 0.25]
    assert drift.psi(expected, np.array([10, 10, 10, 10])) == pytest.approx(0.0, abs=1e-12)
    small, large = drift.psi(expected, np.array([12, 10, 10, 8])), drift.psi(expected, np.array([40, 0, 0, 0]))
    assert 0 < small < drift.MODERATE < drift.SIGNIFICANT < large


def test_an_empty_bin_costs_a_bounded_amount() -> None:
    value = drift.psi([0.5, 0.5, 0.0], np.array([0, 5, 5]))
    assert math.isfinite(value) and value > drift.SIGNIFICANT
