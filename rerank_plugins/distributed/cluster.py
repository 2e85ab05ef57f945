"""What the Ray pieces share: joining or starting Ray, and a reranker's settings per actor.

:func:`ray_instance` joins a cluster or starts a local instance, and undoes exactly what was
done on exit.

The CLI commands (``eval --engine ray``, ``serve --engine ray``) and the benchmark share this
rule: with an ``address`` the command *joins* that cluster and only disconnects from it at
the end; without one it *starts* a local Ray instance (``address="local"``, never a cluster
someone else started on this machine) and shuts it down at the end, on errors too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any


def actor_reranker_kwargs(
    reranker_kwargs: Mapping[str, Any], *, num_gpus: float, num_cpus: float
) -> dict[str, Any]:
    """CrossEncoderReranker settings for an actor with these resources (a Ray Data actor or
    a Serve replica): device ``"cuda"`` with GPUs, else ``"cpu"`` with one torch thread per
    reserved CPU, unless the caller chose. Explicit, because a CPU actor on a GPU node must
    not pick up a GPU it did not reserve, and torch would otherwise use every core of the
    node in every actor."""
    kwargs = dict(reranker_kwargs)
    kwargs.setdefault("device", "cuda" if num_gpus > 0 else "cpu")
    if num_gpus == 0 and kwargs.get("backend", "torch") == "torch":
        kwargs.setdefault("num_threads", max(1, int(num_cpus)))
    return kwargs


@contextlib.contextmanager
def ray_instance(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    object_store_memory: int | None = None,
    quiet: bool = False,
    **init_kwargs: Any,
) -> Iterator[bool]:
    """Connect for the ``with`` block; yields True when this call started the Ray instance.

    Args:
        address: ``"auto"``, ``"HOST:PORT"`` or ``"ray://HOST:PORT"`` to join a running
            cluster; None to start a local instance (no dashboard).
        num_cpus: CPUs of the local instance (all cores by default); not allowed with
            ``address`` (the cluster has its own).
        num_gpus: GPUs of the local instance (the detected ones by default).
        object_store_memory: Bytes of the local instance's object store.
        quiet: Hide Ray Data's progress bars and worker logs in the driver.
        **init_kwargs: Further ``ray.init`` arguments.
    """
    import ray

    if ray.is_initialized():  # the caller owns the connection: leave it alone
        yield False
        return
    if address is not None and any(
        v is not None for v in (num_cpus, num_gpus, object_store_memory)
    ):
        raise ValueError(
            "num_cpus, num_gpus and object_store_memory size a local Ray instance; "
            f"a cluster joined at address={address!r} brings its own"
        )
    local = address is None
    options: dict[str, Any] = {"log_to_driver": not quiet, **init_kwargs}
    if local:
        options.update(address="local", include_dashboard=False)
        for name, value in (
            ("num_cpus", num_cpus),
            ("num_gpus", num_gpus),
            ("object_store_memory", object_store_memory),
        ):
            if value is not None:
                options[name] = value
    else:
        options["address"] = address
    ray.init(**options)
    try:
        if quiet:
            import ray.data

            ray.data.DataContext.get_current().enable_progress_bars = False
        yield local
    finally:
        # For a local instance this stops its processes; for a joined cluster it only
        # disconnects this driver.
        ray.shutdown()
