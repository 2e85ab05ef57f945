"""Ray Serve replicas of the rerank app on a local Ray instance: scores, a killed replica, SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("ray.serve", reason='needs the [ray] extra: pip install "rerank-plugins[ray]"')
psutil = pytest.importorskip("psutil")
httpx = pytest.importorskip("httpx")

from server_support import ROOT, free_port  # noqa: E402

WORDS = ["vitamin", "d", "deficiency", "cancer", "risk", "cells", "protein", "gene", "immune"]
#: Seconds for a deployment to come up or recover (model load in a fresh process, on a
#: shared 2-core machine where a cold torch import alone can take 20 s).
READY_S = 300.0


def _documents(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 30)))) for _ in range(n)]


def _replica_pids() -> set[int]:
    """Serve replica processes under this test process (never another session's Ray)."""
    pids = set()
    for process in psutil.Process().children(recursive=True):
        try:
            if "ServeReplica" in " ".join(process.cmdline()):
                pids.add(process.pid)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return pids


def _running_replicas() -> int:
    from ray import serve

    from rerank_plugins.serving.ray import DEPLOYMENT_NAME

    app = serve.status().applications.get("rerank-test")
    if app is None or DEPLOYMENT_NAME not in app.deployments:
        return 0
    return app.deployments[DEPLOYMENT_NAME].replica_states.get("RUNNING", 0)


@pytest.fixture(scope="module")
def serve_url(ray_local, spread_ce_path):
    from ray import serve

    from rerank_plugins.serving.ray import build_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app(spread_ce_path, num_replicas=2), name="rerank-test", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


def test_deployment_options_fixed_or_autoscaling_and_checked(spread_ce_path):
    from rerank_plugins.serving.ray import _deployment_options, build_app

    base = {"num_gpus": 0.5, "num_cpus": 2, "max_ongoing_requests": 4}
    fixed = _deployment_options(
        num_replicas=3, min_replicas=None, max_replicas=None, target_ongoing_requests=None, **base
    )
    assert fixed == {
        "ray_actor_options": {"num_cpus": 2, "num_gpus": 0.5},
        "max_ongoing_requests": 4,
        "num_replicas": 3,
    }
    scaled = _deployment_options(
        num_replicas=1, min_replicas=None, max_replicas=6, target_ongoing_requests=3, **base
    )
    assert "num_replicas" not in scaled
    assert scaled["autoscaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 6,
        "target_ongoing_requests": 3,
    }
    for kwargs, message in (
        ({"min_replicas": 4, "max_replicas": 2}, "min_replicas=4 is above max_replicas=2"),
        ({"min_replicas": 2}, "needs max_replicas"),
        ({"target_ongoing_requests": 2}, "needs autoscaling"),
        ({"max_replicas": 2, "target_ongoing_requests": 9}, "target_ongoing_requests"),
        ({"num_replicas": 0}, "num_replicas must be a positive int"),
        ({"num_gpus_per_replica": -1}, "num_gpus_per_replica"),
    ):
        with pytest.raises(ValueError, match=message):
            build_app(spread_ce_path, **kwargs)


@pytest.mark.ray
def test_two_replicas_answer_the_in_process_scores(serve_url, local_reranker):
    assert _running_replicas() == 2
    rng = np.random.default_rng(0)
    with httpx.Client(base_url=serve_url, timeout=60.0) as client:
        for query in ("vitamin d deficiency", "cancer risk", "immune cells"):
            documents = _documents(rng, 12)
            expected = local_reranker.score(query, documents)
            for _ in range(4):  # Serve spreads these over both replicas
                response = client.post("/v2/rerank", json={"query": query, "documents": documents})
                assert response.status_code == 200, response.text
                got = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
                np.testing.assert_allclose(
                    [got[i] for i in range(len(documents))], expected, atol=1e-4
                )
            assert np.ptp(expected) > 0.05  # the model tells these documents apart


async def _load(url: str, bodies: list[dict], kill_after: int, victim: int) -> tuple[list, int]:
    """Send every body at once; SIGKILL ``victim`` once ``kill_after`` answers are in."""
    answered = 0
    pending_at_kill = -1

    async def one(client: httpx.AsyncClient, body: dict):
        nonlocal answered, pending_at_kill
        try:
            return await client.post("/v2/rerank", json=body)
        finally:
            answered += 1
            if answered == kill_after:
                pending_at_kill = len(bodies) - answered
                psutil.Process(victim).send_signal(signal.SIGKILL)

    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=120.0, limits=limits) as client:
        results = await asyncio.wait_for(
            asyncio.gather(*(one(client, b) for b in bodies), return_exceptions=True), 240.0
        )
    return results, pending_at_kill


@pytest.mark.ray
def test_a_killed_replica_fails_few_requests_explicitly_and_is_replaced(serve_url, local_reranker):
    before = _replica_pids()
    assert len(before) == 2, before
    rng = np.random.default_rng(1)
    bodies = [{"query": "vitamin d", "documents": _documents(rng, 200)} for _ in range(32)]
    results, pending_at_kill = asyncio.run(_load(serve_url, bodies, 3, victim=min(before)))

    assert pending_at_kill >= 8, "the replica died after the load was over: nothing was tested"
    transport_errors = [r for r in results if isinstance(r, BaseException)]
    assert not transport_errors, transport_errors  # every request got an HTTP answer
    statuses = [r.status_code for r in results]
    assert statuses.count(200) >= 30, statuses
    assert all(s == 200 or s >= 500 for s in statuses), statuses  # the rest: explicit errors
    for body, response in zip(bodies, results, strict=True):
        if response.status_code == 200:  # answers that came back are right
            got = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
            expected = local_reranker.score(body["query"], body["documents"])
            np.testing.assert_allclose([got[i] for i in range(200)], expected, atol=1e-4)

    deadline = time.monotonic() + READY_S  # Serve replaces the dead replica
    while time.monotonic() < deadline and not (
        _running_replicas() == 2 and len(_replica_pids() - before) == 1
    ):
        time.sleep(1.0)
    assert _running_replicas() == 2 and len(_replica_pids() - before) == 1
    documents = bodies[0]["documents"][:10]
    response = httpx.post(
        f"{serve_url}/v2/rerank", json={"query": "cancer", "documents": documents}, timeout=60
    )
    assert response.status_code == 200, response.text
    got = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
    np.testing.assert_allclose(
        [got[i] for i in range(10)], local_reranker.score("cancer", documents), atol=1e-4
    )


@pytest.mark.ray
def test_cli_sigterm_stops_serve_and_the_ray_it_started(spread_ce_path, tmp_path):
    port = free_port()
    log_path = tmp_path / "serve-ray.log"
    command = [sys.executable, "-m", "rerank_plugins", "serve", str(spread_ce_path)]
    command += ["--engine", "ray", "--port", str(port), "--log-level", "warning"]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1.0)
        assert process.poll() is None, log_path.read_text()[-3000:]
        response = httpx.post(
            f"http://127.0.0.1:{port}/rerank",
            json={"query": "vitamin d", "texts": ["cancer risk", "vitamin d deficiency"]},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        tree = psutil.Process(process.pid).children(recursive=True)
        assert any("raylet" in " ".join(p.cmdline()) for p in tree)  # it started its own Ray
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0, log_path.read_text()[-3000:]
        _, alive = psutil.wait_procs(tree, timeout=30)
        assert not alive, [p.pid for p in alive]  # no Ray process outlives the command
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def test_serve_engine_ray_flags_reach_build_app(spread_ce_path, monkeypatch):
    """Every --engine ray flag lands in build_app (recorded; nothing starts)."""
    import rerank_plugins.serving.ray as serving_ray
    from rerank_plugins import cli

    seen: dict = {}

    class Stop(Exception):
        pass

    def recorder(model, **kwargs):
        seen.update(kwargs, model=model)
        raise Stop

    monkeypatch.setattr(serving_ray, "build_app", recorder)
    argv = ["serve", str(spread_ce_path), "--engine", "ray", "--min-replicas", "2"]
    argv += ["--max-replicas", "5", "--target-ongoing-requests", "1.5"]
    argv += ["--num-gpus-per-replica", "0.5", "--num-cpus-per-replica", "3"]
    argv += ["--max-ongoing-requests", "4", "--max-documents", "50", "--drain-timeout", "7"]
    with pytest.raises(Stop):
        cli.main(argv)
    assert seen["model"] == str(spread_ce_path)
    assert (seen["min_replicas"], seen["max_replicas"], seen["target_ongoing_requests"]) == (
        2,
        5,
        1.5,
    )
    assert (seen["num_gpus_per_replica"], seen["num_cpus_per_replica"]) == (0.5, 3.0)
    assert seen["max_ongoing_requests"] == 4
    assert seen["app_kwargs"]["max_documents"] == 50
    assert seen["deployment_options"]["graceful_shutdown_timeout_s"] == 7
    assert "device" not in seen  # "auto": each replica's resources decide
