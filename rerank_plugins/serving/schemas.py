"""Request bodies of the rerank APIs the server speaks, and errors that name the bad field.

* Cohere v1 / v2 (``POST /v1/rerank``, ``POST /v2/rerank``), as sent by the ``cohere`` SDK,
  LangChain's ``CohereRerank``, LiteLLM and infinity clients: ``query``, ``documents``
  (strings, or objects with a ``text`` field or the ``rank_fields`` named), ``top_n``,
  ``return_documents``, ``model``, ``max_tokens_per_doc``, ``max_chunks_per_doc``,
  ``rank_fields``, ``priority``. Both versions take the same body (older v2 clients still send
  v1 fields); they differ in the response's ``meta.api_version`` and document shape.
* Hugging Face TEI (``POST /rerank``): ``query``, ``texts``, ``raw_scores``, ``return_text``,
  ``truncate``, ``truncation_direction``.

Types are strict (no ``"3"`` for an int, no ``1`` for a bool) and unknown fields are refused,
so a typo such as ``topn`` fails loudly instead of being ignored.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

PositiveInt = Annotated[StrictInt, Field(ge=1)]


class FieldError(ValueError):
    """A request field is wrong; ``field`` is its path in the body (``documents[3].text``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("query", check_fields=False)
    @classmethod
    def _query_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty or whitespace")
        return value


class CohereRerankRequest(_Body):
    """Cohere ``/v1/rerank`` and ``/v2/rerank`` body."""

    query: StrictStr
    """The search query."""
    documents: Annotated[list[StrictStr | dict[str, Any]], Field(min_length=1)]
    """Texts, or objects with a string ``text`` (or the ``rank_fields``) to rerank."""
    model: StrictStr | None = None
    """Accepted and echoed nowhere: the server serves one model (see ``GET /v1/models``)."""
    top_n: PositiveInt | None = None
    """Return only the best ``top_n`` results (all when absent)."""
    return_documents: StrictBool | None = None
    """Include each result's document (``{"text": ...}``; v1 keeps a given object whole)."""
    rank_fields: list[StrictStr] | None = None
    """For object documents: the keys whose values are ranked, in this order."""
    max_tokens_per_doc: PositiveInt | None = None
    """Cut each document to this many tokens before scoring (below the model's window)."""
    max_chunks_per_doc: PositiveInt | None = None
    """Accepted; chunking is the server's ``--long-passages`` setting."""
    priority: Annotated[StrictInt, Field(ge=0)] | None = None
    """Accepted; requests are served in arrival order."""


class TEIRerankRequest(_Body):
    """TEI ``/rerank`` body."""

    query: StrictStr
    texts: Annotated[list[StrictStr], Field(min_length=1)]
    raw_scores: StrictBool = False
    """``true``: raw logits; ``false`` (default): sigmoid of the logits, 0..1."""
    return_text: StrictBool = False
    truncate: StrictBool | None = None
    """Accepted; the server always truncates long texts to the model window (or chunks)."""
    truncation_direction: Literal["right", "Right", "left", "Left"] = "right"


# ---------------------------------------------------------------------- parsing
#: Union member tags pydantic puts in an error's location (``documents.3.str``).
_UNION_TAGS = {"str", "dict[str,any]"}


def parse_body(model: type[_Body], raw: bytes) -> _Body:
    """Decode JSON ``raw`` into ``model``; raise :class:`FieldError` naming the bad field."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FieldError("body", f"the request body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise FieldError("body", f"the request body must be a JSON object, got {_kind(data)}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise _describe(error, model) from None


def _describe(error: ValidationError, model: type[_Body]) -> FieldError:
    first = error.errors(include_url=False)[0]
    loc = first["loc"]
    if any(isinstance(part, str) and part in _UNION_TAGS for part in loc):
        index = loc[: [isinstance(p, int) for p in loc].index(True) + 1]
        path = _path(index)
        return FieldError(
            path,
            f"{path} must be a string or an object with a string 'text' "
            f"(or the rank_fields), got {_kind(first['input'])}",
        )
    path = _path(loc)
    kind = first["type"]
    if kind == "missing":
        message = f"{path} is required"
    elif kind == "extra_forbidden":
        accepted = ", ".join(model.model_fields)
        message = f"{path} is not a field of this API (fields: {accepted})"
    elif kind == "too_short" and path in ("documents", "texts"):
        message = f"{path} must hold at least one text"
    else:
        text = first["msg"].removeprefix("Value error, ")
        message = f"{path}: {text[0].lower()}{text[1:]}"
        if kind.endswith("_type"):
            message += f", got {_kind(first['input'])}"
    return FieldError(path, message)


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in _UNION_TAGS:
            out += f".{part}" if out else str(part)
    return out or "body"


def _kind(value: Any) -> str:
    return {
        type(None): "null",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


# ---------------------------------------------------------------------- documents
def document_texts(request: CohereRerankRequest) -> list[str]:
    """The text to score for each Cohere document (a string, its ``text``, or rank_fields)."""
    texts: list[str] = []
    for position, document in enumerate(request.documents):
        if isinstance(document, str):
            texts.append(document)
            continue
        where = f"documents[{position}]"
        if request.rank_fields:
            lines = [
                f"{key}: {_field_text(document[key])}"
                for key in request.rank_fields
                if key in document
            ]
            if not lines:
                raise FieldError(
                    where, f"{where} has none of the rank_fields {request.rank_fields}"
                )
            texts.append("\n".join(lines))
            continue
        text = document.get("text")
        if not isinstance(text, str):
            problem = (
                "has no 'text'" if text is None else f"has a non-string 'text' ({_kind(text)})"
            )
            raise FieldError(
                f"{where}.text", f"{where} {problem}; send a string, or name rank_fields"
            )
        texts.append(text)
    return texts


def _field_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
