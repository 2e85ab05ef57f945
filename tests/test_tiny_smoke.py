def test_tiny(tiny_reranker):
    s = tiny_reranker.score("vitamin d", ["the cell", "vitamin d deficiency", "brain"])
    assert s.shape == (3,)
