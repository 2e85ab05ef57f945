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
    assert fusion.floor_score("dbsf", scores, np.ones(2)) == 0.0
    assert fusion.floor_score("zscore", scores, np.ones(2)) == pytest.approx(-2.0)


# ---------------------------------------------------------------------------- DBSF
# Two scores a, b: mean (a+b)/2, sample std |a-b|/sqrt(2), so they map to 0.5 +- 1/(6 sqrt 2).
HALF_GAP = 1 / (6 * np.sqrt(2))


def test_dbsf_weighted_by_hand():
    _, scores, _ = aligned()  # docs 10, 20, 30; bm25 (4, 2, -), dense (0.5, -, 0.9)
    got = fusion.dbsf(scores, np.array([1.0, 1.0]))
    np.testing.assert_allclose(
        got, [(0.5 + HALF_GAP) + (0.5 - HALF_GAP), 0.5 - HALF_GAP, 0.5 + HALF_GAP]
    )
    got = fusion.dbsf(scores, np.array([2.0, 1.0]))
    np.testing.assert_allclose(
        got, [2 * (0.5 + HALF_GAP) + (0.5 - HALF_GAP), 2 * (0.5 - HALF_GAP), 0.5 + HALF_GAP]
    )


def test_dbsf_one_document_or_constant_list_gives_half_and_missing_gives_zero():
    one = np.array([[7.0, np.nan, np.nan]])
    np.testing.assert_allclose(fusion.dbsf(one, np.array([1.0])), [0.5, 0.0, 0.0])
    constant = np.array([[3.0, 3.0, np.nan]])
    np.testing.assert_allclose(fusion.dbsf(constant, np.array([2.0])), [1.0, 1.0, 0.0])


def test_dbsf_does_not_clip_beyond_three_std():
    # [a, 0 x (n-1)]: sample std a / sqrt(n), so the top z is (n - 1) / sqrt(n) (> 3 for n=11).
    n = 11
    scores = np.array([[10.0] + [0.0] * (n - 1)])
    got = fusion.dbsf(scores, np.array([1.0]))
    top_z = (n - 1) / np.sqrt(n)
    np.testing.assert_allclose(got[0], 0.5 + top_z / 6)
    assert got[0] > 1.0
    np.testing.assert_allclose(got[1:], 0.5 - (1 / np.sqrt(n)) / 6)


# ---------------------------------------------------------------------------- edge cases
def test_a_retriever_that_returns_nothing_contributes_nothing():
    union, scores, ranks = fusion.align(
        [np.array([10, 20]), np.array([], dtype=np.int64)], [np.array([4.0, 2.0]), np.array([])]
    )
    assert union.tolist() == [10, 20] and ranks[1].tolist() == [0, 0]
    weights = np.array([1.0, 5.0])
    expected = {
        "rrf": [1 / 61, 1 / 62],
        "minmax": [1.0, 0.0],
        "zscore": [1.0, -1.0],  # bm25: mean 3, population std 1; dense: nothing, 0
        "dbsf": [0.5 + HALF_GAP, 0.5 - HALF_GAP],
    }
    for method, values in expected.items():
        got = fusion.fuse(method, scores, ranks, weights)
        np.testing.assert_allclose(got, values, err_msg=method)


@pytest.mark.parametrize("method", fusion.FUSION_METHODS)
def test_no_retriever_returns_anything(method):
    union, scores, ranks = fusion.align(
        [np.array([], dtype=np.int64)] * 2, [np.array([]), np.array([])]
    )
    assert union.size == 0
    assert fusion.fuse(method, scores, ranks, np.ones(2)).shape == (0,)


@pytest.mark.parametrize("method", fusion.FUSION_METHODS)
def test_weights_that_sum_to_anything_rank_alike(method):
    union, scores, ranks = aligned()
    big = fusion.fuse(method, scores, ranks, np.array([3.0, 1.0]))
    small = fusion.fuse(method, scores, ranks, np.array([0.75, 0.25]))
    np.testing.assert_allclose(big, 4 * small)  # every method is linear in the weights
    assert fusion.top_order(big, union, 3).tolist() == fusion.top_order(small, union, 3).tolist()
    only_dense = fusion.fuse(method, scores, ranks, np.array([0.0, 1.0]))
    assert only_dense[1] == fusion.floor_score(method, scores[1:], np.ones(1))  # doc 20: bm25 only


def test_ties_break_by_document_position():
    # bm25 ranks 7 then 5; dense ranks 5 then 7: RRF gives both 1/61 + 1/62.
    union, scores, ranks = fusion.align(
        [np.array([7, 5]), np.array([5, 7])], [np.array([2.0, 1.0]), np.array([0.9, 0.8])]
    )
    fused = fusion.rrf(ranks, np.ones(2), 60)
    assert fused[0] == fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert union[fusion.top_order(fused, union, 2)].tolist() == [5, 7]
    # the same holds for score methods when the lists mirror each other
    mirrored = fusion.minmax(scores, np.ones(2))
    assert union[fusion.top_order(mirrored, union, 2)].tolist() == [5, 7]


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan"), float("inf"), True, "60", None])
def test_bad_rrf_k_is_refused(bad):
    _, _, ranks = aligned()
    with pytest.raises(ValueError, match="rrf_k"):
        fusion.rrf(ranks, np.ones(2), bad)
    with pytest.raises(ValueError, match="rrf_k"):
        fusion.check_rrf_k(bad)
    assert fusion.check_rrf_k(0) == 0.0  # 1 / rank: allowed


@pytest.mark.parametrize("method", fusion.FUSION_METHODS)
@pytest.mark.parametrize("bad", [[float("nan"), 1.0], [-1.0, 1.0], [1.0, float("inf")], [1.0]])
def test_bad_weight_arrays_are_refused(method, bad):
    _, scores, ranks = aligned()
    with pytest.raises(ValueError, match="weights"):
        fusion.fuse(method, scores, ranks, np.array(bad))


def test_bad_weight_mappings_are_refused():
    for bad in (float("nan"), float("inf"), -0.1):
        with pytest.raises(ValueError, match=r"weights\['dense'\]"):
            fusion.weight_vector({"dense": bad}, ("bm25", "dense"))
    with pytest.raises(TypeError, match="number"):
        fusion.weight_vector({"dense": "1"}, ("bm25", "dense"))
    with pytest.raises(TypeError, match="dict"):
        fusion.weight_vector([1.0, 2.0], ("bm25", "dense"))


def test_bad_scores_and_ranks_are_refused():
    with pytest.raises(ValueError, match="non-finite score at rank 2"):
        fusion.align([np.array([1, 2])], [np.array([1.0, np.nan])])
    with pytest.raises(ValueError, match="non-finite"):
        fusion.align([np.array([1, 2])], [np.array([np.inf, 1.0])])
    with pytest.raises(ValueError, match="same document twice"):
        fusion.align([np.array([1, 1])], [np.array([2.0, 1.0])])
    with pytest.raises(ValueError, match="2 positions but 1 scores"):
        fusion.align([np.array([1, 2])], [np.array([1.0])])
    with pytest.raises(ValueError, match="ranks must be >= 0"):
        fusion.rrf(np.array([[1, -2]]), np.ones(1))
    for method in fusion.SCORE_METHODS:
        with pytest.raises(ValueError, match="finite"):
            fusion.fuse(method, np.array([[1.0, np.inf]]), np.array([[1, 2]]), np.ones(1))
