"""The core never imports a framework; a missing framework names the extra to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys
    import rerank_plugins, rerank_plugins.integrations
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("langchain_core", "llama_index"))
    assert not loaded, loaded

    # Pretend each framework is not installed.
    for blocked, module, extra in (
        ("langchain_core", "rerank_plugins.integrations.langchain", "[langchain]"),
        ("llama_index", "rerank_plugins.integrations.llama_index", "[llamaindex]"),
    ):
        sys.modules[blocked] = None
        try:
            __import__(module)
        except ImportError as error:
            assert f'pip install "rerank-plugins{extra}"' in str(error), str(error)
        else:
            raise AssertionError(f"{module} imported without {blocked}")
    print("ok")
    """
)


def test_core_does_not_import_frameworks_and_missing_extra_is_named():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (
            "rerank_plugins.integrations.langchain",
            ["CrossEncoderCompressor", "HybridRetriever", "RerankPluginsCrossEncoder"],
        ),
        ("rerank_plugins.integrations.llama_index", ["CrossEncoderRerank", "HybridRetriever"]),
    ],
)
def test_public_names(module, names):
    imported = pytest.importorskip(module)
    assert sorted(imported.__all__) == sorted(names)
