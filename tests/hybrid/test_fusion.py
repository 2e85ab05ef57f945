"""Fusion maths against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from rerank_plugins.hybrid import fusion

# Two retrievers over docs 10, 20, 30 (positions). bm25 ranks: 10, 20; dense ranks: 30, 10.
BM25 = (np.array([10, 20]), np.array([4.0, 2.0]))
DENSE = (np.array([30, 10]), np.array([0.9, 0.5]))


def aligned():
    return fusion.align([BM25[0], DENSE[0]], [BM25[1], DENSE[1]])


def test_align():
    union, scores, ranks = aligned()
    assert union.tolist() == [10, 20, 30]
    assert ranks.tolist() == [[1, 2, 0], [2, 0, 1]]
    np.testing.assert_array_equal(scores[0], [4.0, 2.0, np.nan])
    np.testing.assert_array_equal(scores[1], [0.5, np.nan, 0.9])


def test_rrf_weighted_by_hand():
    _, _, ranks = aligned()
    got = fusion.rrf(ranks, np.array([2.0, 1.0]), k=60)
    expected = [2 / 61 + 1 / 62, 2 / 62, 1 / 61]
    np.testing.assert_allclose(got, expected)
    got_k1 = fusion.rrf(ranks, np.array([1.0, 1.0]), k=1)
    np.testing.assert_allclose(got_k1, [1 / 2 + 1 / 3, 1 / 3, 1 / 2])


def test_minmax_weighted_by_hand():
    _, scores, _ = aligned()
    got = fusion.minmax(scores, np.array([1.0, 3.0]))
    # bm25: (4,2) -> (1,0); dense: (0.5, 0.9) -> (0, 1); missing -> 0
    np.testing.assert_allclose(got, [1.0 + 3 * 0.0, 0.0, 3 * 1.0])


def test_minmax_constant_list_gives_one():
    scores = np.array([[2.0, 2.0, np.nan]])
    np.testing.assert_allclose(fusion.minmax(scores, np.array([0.5])), [0.5, 0.5, 0.0])


def test_zscore_weighted_by_hand():
    scores = np.array([[4.0, 2.0, np.nan, 0.0], [0.5, np.nan, 0.9, 0.7]])
    # bm25: mean 2, std sqrt(8/3) -> z = (1.2247, 0, ., -1.2247); missing -> min z = -1.2247
    # dense: mean 0.7, std sqrt(0.08/3) -> z = (-1.2247, ., 1.2247, 0); missing -> -1.2247
    z = np.sqrt(1.5)
    got = fusion.zscore(scores, np.array([1.0, 2.0]))
    np.testing.assert_allclose(got, [z - 2 * z, 0 - 2 * z, -z + 2 * z, -z + 0], atol=1e-9)


def test_zscore_constant_list_contributes_zero():
    scores = np.array([[3.0, 3.0]])
    np.testing.assert_allclose(fusion.zscore(scores, np.array([1.0])), [0.0, 0.0])


@pytest.mark.parametrize("method", fusion.FUSION_METHODS)
def test_weights_change_the_winner(method):
    union, scores, ranks = aligned()
    bm25_heavy = fusion.fuse(method, scores, ranks, np.array([10.0, 0.1]))
    dense_heavy = fusion.fuse(method, scores, ranks, np.array([0.1, 10.0]))
    assert union[np.argmax(bm25_heavy)] == 10
    assert union[np.argmax(dense_heavy)] == 30


def test_weight_vector_validation():
    np.testing.assert_array_equal(fusion.weight_vector(None, ("bm25", "dense")), [1, 1])
    np.testing.assert_array_equal(fusion.weight_vector({"dense": 2}, ("bm25", "dense")), [1, 2])
    with pytest.raises(ValueError, match="colbert"):
        fusion.weight_vector({"colbert": 1.0}, ("bm25", "dense"))
    with pytest.raises(ValueError, match=">= 0"):
        fusion.weight_vector({"bm25": -1.0}, ("bm25", "dense"))
    with pytest.raises(ValueError, match="at least one"):
        fusion.weight_vector({"bm25": 0, "dense": 0}, ("bm25", "dense"))
    with pytest.raises(ValueError, match="unknown fusion"):
        fusion.fuse("max", np.zeros((1, 1)), np.ones((1, 1), dtype=int), np.ones(1))


def test_floor_score():
    _, scores, _ = aligned()
    assert fusion.floor_score("rrf", scores, np.ones(2)) == 0.0
    assert fusion.floor_score("minmax", scores, np.ones(2)) == 0.0
    assert fusion.floor_score("zscore", scores, np.ones(2)) == pytest.approx(-2.0)
