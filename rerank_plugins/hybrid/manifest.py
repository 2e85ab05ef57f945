"""The schema of a saved index's ``manifest.json`` (pydantic), and its own checksum.

Format 2 (written since rerank-plugins 0.2) adds ``files`` (size and sha256 of every data
file) and ``content_sha256`` (sha256 of the manifest itself, see :func:`content_digest`).
Format 1 manifests (no checksums) still load, unverified, with a warning to re-save.

``settings`` holds the constructor arguments the index was built with. Keys beyond the
known ones are accepted when their values are plain JSON (scalars, or lists/dicts of
scalars) and are passed back to ``HybridRetriever(...)`` on load, so a new constructor
setting (e.g. a fusion option) is saved and restored without touching this schema.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Annotated, Any, Literal

try:
    from pydantic import (
        BaseModel,
        ConfigDict,
        Field,
        StrictBool,
        StrictFloat,
        StrictInt,
        StrictStr,
        ValidationError,
        field_validator,
        model_validator,
    )
except ImportError as _error:  # pragma: no cover - pydantic is in the [hybrid] extra
    raise ImportError(
        f"saving and loading a HybridRetriever needs pydantic ({_error}); "
        'install it with: pip install "rerank-plugins[hybrid]"'
    ) from _error

from .._validation import check_text

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
#: Most embedding dimensions a saved index may declare (guards allocations on load).
MAX_DIM = 1 << 16

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Count = Annotated[StrictInt, Field(ge=0)]
Number = StrictInt | StrictFloat
Scalar = StrictStr | StrictBool | StrictInt | StrictFloat | None


class FileRecord(BaseModel):
    """Size and content hash of one data file, path relative to the index directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: Count
    sha256: Sha256


class IndexSettings(BaseModel):
    """The constructor settings saved with an index (extra keys: plain JSON, passed back)."""

    model_config = ConfigDict(extra="allow")

    retrievers: list[Literal["bm25", "dense"]] = Field(min_length=1, max_length=2)
    fusion: StrictStr
    weights: dict[StrictStr, Number] | None = None
    rrf_k: Number = 60
    stemmer: StrictStr | None = None
    stopwords: StrictStr | list[StrictStr] | None = None
    custom_tokenizer: StrictBool = False
    faiss_index: StrictStr = "flat"
    batch_size: Annotated[StrictInt, Field(ge=1)] = 64
    bm25_engine: StrictStr = "bm25s"

    @field_validator("rrf_k")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"rrf_k must be a finite number >= 0, got {value!r}")
        return value

    @field_validator("weights")
    @classmethod
    def _finite_weights(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for name, weight in (value or {}).items():
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"weights[{name!r}] must be finite and >= 0, got {weight!r}")
        return value

    @model_validator(mode="after")
    def _plain_extras(self) -> IndexSettings:
        for key, value in (self.model_extra or {}).items():
            if not _plain_json(value):
                raise ValueError(
                    f"setting {key!r} must be a JSON scalar or a flat list/dict of scalars"
                )
        return self

    def constructor_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``HybridRetriever(...)`` (``custom_tokenizer`` is not one)."""
        known = self.model_dump(exclude={"custom_tokenizer"}, exclude_unset=False)
        known["retrievers"] = tuple(known["retrievers"])
        return known


def _plain_json(value: Any) -> bool:
    def scalar(item: Any) -> bool:
        return (
            item is None
            or isinstance(item, (str, bool, int))
            or (isinstance(item, float) and math.isfinite(item))
        )

    if isinstance(value, list):
        return all(scalar(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and scalar(v) for k, v in value.items())
    return scalar(value)


class Manifest(BaseModel):
    """Everything in ``manifest.json``; validated before any data file is opened."""

    model_config = ConfigDict(extra="forbid")

    format_version: Literal[1, 2]
    settings: IndexSettings
    embedder: StrictStr | None = None
    count: Count
    dim: Annotated[StrictInt, Field(ge=0, le=MAX_DIM)] | None = None
    next_auto_id: Count = 0
    ids: list[StrictStr]
    texts: list[StrictStr]
    metadatas: list[dict[StrictStr, Any]]
    files: dict[StrictStr, FileRecord] = Field(default_factory=dict)
    content_sha256: Sha256 | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        for key in ("ids", "texts", "metadatas"):
            found = len(getattr(self, key))
            if found != self.count:
                raise ValueError(f"'{key}' has {found} entries but count is {self.count}")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("'ids' must be unique")
        if any(not doc_id for doc_id in self.ids):
            raise ValueError("'ids' must be non-empty strings")
        for position, text in enumerate(self.texts):
            check_text(text, where=f"texts[{position}]")
        if self.format_version >= 2 and self.content_sha256 is None:
            raise ValueError("format_version 2 needs 'content_sha256'")
        return self


def encode(manifest: dict[str, Any]) -> bytes:
    """The one serialisation used to write and to checksum a manifest (UTF-8 JSON bytes)."""
    try:
        text = json.dumps(manifest, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode("utf-8")
    except (TypeError, ValueError) as error:  # objects, NaN, lone surrogates
        raise TypeError(
            f"metadata must be JSON-serialisable to save the index ({error})"
        ) from error


def content_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest without its ``content_sha256`` key (stable across JSON round trips)."""
    body = {key: value for key, value in manifest.items() if key != "content_sha256"}
    return hashlib.sha256(encode(body)).hexdigest()


def describe(error: ValidationError, limit: int = 3) -> str:
    """A short, readable summary of a pydantic error: the first few fields and problems."""
    parts = []
    for item in error.errors()[:limit]:
        where = ".".join(str(p) for p in item["loc"]) or "manifest"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
