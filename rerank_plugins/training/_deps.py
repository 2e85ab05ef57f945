"""The ``[train]`` extra, imported lazily, with an error that says what to install."""

from __future__ import annotations

import functools
from importlib import metadata
from types import SimpleNamespace

INSTALL_HINT = 'pip install "rerank-plugins[train]"'
#: CrossEncoderTrainer and its losses arrived in sentence-transformers 4.0.
MIN_SENTENCE_TRANSFORMERS = 4


@functools.lru_cache(maxsize=1)
def require_train() -> SimpleNamespace:
    """sentence-transformers' cross-encoder trainer stack and ``datasets.Dataset``.

    Raises ImportError naming the extra when sentence-transformers (>= 4), datasets or
    accelerate is missing.
    """
    for package in ("sentence-transformers", "datasets", "accelerate"):
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            raise ImportError(
                f"rerank_plugins.training needs {package!r}, which is not installed; "
                f"install the extra: {INSTALL_HINT}"
            ) from None
        if package == "sentence-transformers":
            major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
            if major < MIN_SENTENCE_TRANSFORMERS:
                raise ImportError(
                    f"rerank_plugins.training needs sentence-transformers >= "
                    f"{MIN_SENTENCE_TRANSFORMERS} (CrossEncoderTrainer), found {version}; "
                    f"install the extra: {INSTALL_HINT}"
                )
    try:
        from datasets import Dataset
        from sentence_transformers.cross_encoder import (
            CrossEncoder,
            CrossEncoderTrainer,
            CrossEncoderTrainingArguments,
            losses,
        )
    except ImportError as error:
        raise ImportError(
            f"rerank_plugins.training could not import its trainer stack ({error}); "
            f"install the extra: {INSTALL_HINT}"
        ) from error
    return SimpleNamespace(
        CrossEncoder=CrossEncoder,
        CrossEncoderTrainer=CrossEncoderTrainer,
        CrossEncoderTrainingArguments=CrossEncoderTrainingArguments,
        losses=losses,
        Dataset=Dataset,
    )
