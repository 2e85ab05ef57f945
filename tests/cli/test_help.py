"""--help states every default; only the demo falls back to ../shared for its model."""

from __future__ import annotations

import argparse

from rerank_plugins import cli
from rerank_plugins.cli import _common


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_option_with_a_default_says_it_in_help():
    for name, command in _subcommands().items():
        formatter = command._get_formatter()
        for action in command._actions:
            default = action.default
            if not action.option_strings or action.dest == "help":
                continue
            if default in (None, False) or (isinstance(default, list) and not default):
                continue
            text = formatter._get_help_string(action) or ""
            assert "default" in text, f"{name} {action.option_strings[0]}: {text!r}"
        rendered = command.format_help()
        assert "%(default)" not in rendered
    assert "(default: test)" in _subcommands()["eval"].format_help()


def test_only_the_demo_guesses_the_shared_model(tmp_path, monkeypatch):
    model = tmp_path / "shared" / "models" / "minilm-l6-scifact-ce"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    monkeypatch.delenv("RERANK_PLUGINS_CE_MODEL", raising=False)
    monkeypatch.setattr(_common, "_shared_dirs", lambda: [tmp_path / "shared"])
    assert _common.default_reranker(shared=True) == str(model)
    assert _common.default_reranker() == _common.DEFAULT_CROSS_ENCODER
    bench_help = _subcommands()["bench"].format_help()
    assert "../shared" not in bench_help and "as for demo" not in bench_help
