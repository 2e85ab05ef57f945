"""HybridRetriever under concurrent use: searches see whole states, saves serialize.

Bounded: a fixed number of write rounds; searcher threads stop when the writer is done and
every join has a timeout. The hashing embedder keeps it cheap.
"""

from __future__ import annotations

import threading

from rerank_plugins.hybrid import HybridRetriever

QUERIES = ["alpha beta", "gamma 3", "delta doc"]


def _texts(ids: list[str]) -> list[str]:
    # The text starts with its id: a hit whose text does not is credited to the wrong document.
    return [f"{doc_id} alpha beta gamma {int(doc_id[3:]) % 5} delta" for doc_id in ids]


def _run(threads: list[threading.Thread], timeout: float = 60.0) -> None:
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
        assert not thread.is_alive(), "a thread is stuck"


def test_search_while_adding_and_deleting_sees_consistent_documents(fake_embedder):
    ids = [f"doc{i}" for i in range(80)]
    retriever = HybridRetriever.from_texts(
        _texts(ids),
        ids=ids,
        metadatas=[{"n": int(i[3:])} for i in ids],
        embedder=fake_embedder,
        show_progress=False,
    )
    done = threading.Event()
    errors: list[BaseException] = []
    searches = [0]

    def search() -> None:
        try:
            while not done.is_set():
                for flt in (None, {"n": {"$gte": 40}}):
                    for hits in retriever.search_many(QUERIES, k=12, filter=flt):
                        for hit in hits:
                            assert hit.text.startswith(f"{hit.id} "), (hit.id, hit.text)
                            assert hit.metadata["n"] == int(hit.id[3:])
                            if flt is not None:
                                assert hit.metadata["n"] >= 40
                searches[0] += 1
        except BaseException as error:  # collected and re-raised in the main thread
            errors.append(error)

    def write() -> None:
        try:
            for round_ in range(25):
                new = [f"doc{1000 + round_ * 10 + j}" for j in range(10)]
                retriever.add(_texts(new), ids=new, metadatas=[{"n": int(i[3:])} for i in new])
                # delete from the front: every later position shifts
                retriever.delete(retriever.ids[:10])
        except BaseException as error:
            errors.append(error)
        finally:
            done.set()

    _run([threading.Thread(target=search) for _ in range(4)] + [threading.Thread(target=write)])
    if errors:
        raise errors[0]
    assert searches[0] > 0
    assert len(retriever) == 80


def test_concurrent_saves_to_one_path_serialize(tmp_path, fake_embedder):
    ids = [f"doc{i}" for i in range(40)]
    retriever = HybridRetriever.from_texts(
        _texts(ids), ids=ids, embedder=fake_embedder, show_progress=False
    )
    path = tmp_path / "index"
    errors: list[BaseException] = []

    def save() -> None:
        try:
            for _ in range(3):
                retriever.save(path)
        except BaseException as error:
            errors.append(error)

    def add() -> None:
        try:
            for round_ in range(5):
                new = [f"doc{500 + round_}"]
                retriever.add(_texts(new), ids=new)
        except BaseException as error:
            errors.append(error)

    _run([threading.Thread(target=save) for _ in range(4)] + [threading.Thread(target=add)])
    if errors:
        raise errors[0]
    loaded = HybridRetriever.load(path, embedder=fake_embedder)  # verified: a whole state
    assert 40 <= len(loaded) <= 45
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index"]
    retriever.save(path)
    assert HybridRetriever.load(path, embedder=fake_embedder).ids == retriever.ids
