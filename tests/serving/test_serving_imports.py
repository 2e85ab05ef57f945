"""The core and the CLI import no web stack; a missing [serve] package names the extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys
    import rerank_plugins, rerank_plugins.cli, rerank_plugins.serving.batcher
    web = ("fastapi", "starlette", "uvicorn", "prometheus_client", "httpx")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in web)
    assert not loaded, loaded

    sys.modules["prometheus_client"] = None
    try:
        from rerank_plugins.serving import create_app
    except ImportError as error:
        assert 'pip install "rerank-plugins[serve]"' in str(error), str(error)
        assert "prometheus_client" in str(error), str(error)
    else:
        raise AssertionError("create_app imported without prometheus_client")
    print("ok")
    """
)


def test_no_web_stack_in_core_and_missing_extra_is_named():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
