"""Fixtures for the LangChain / LlamaIndex adapters: a small corpus indexed offline."""

from __future__ import annotations

import pytest
from integration_corpus import CORPUS, QUERY, HashEmbedder, build_core_retriever


@pytest.fixture(scope="session")
def corpus() -> list[tuple[str, str, str]]:
    return list(CORPUS)


@pytest.fixture(scope="session")
def query() -> str:
    return QUERY


@pytest.fixture()
def hash_embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture(scope="session")
def core_retriever():
    return build_core_retriever()
