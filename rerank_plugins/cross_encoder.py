"""Batched cross-encoder reranking: score every (query, passage) pair with full attention."""

from __future__ import annotations

import inspect
import itertools
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from ._cache import ScoreCache, pair_key
from ._models import DEFAULT_CROSS_ENCODER, load_pretrained, pretrained_kwargs, resolve_model_source
from ._validation import NonFiniteScoreError, check_finite_scores, check_positive_int
from .backends import ScoringBackend
from .rerankers.base import BaseReranker

Activation = Literal["none", "sigmoid"]
LongPassages = Literal["truncate", "chunk"]

DEFAULT_MODEL = DEFAULT_CROSS_ENCODER
#: A query must leave at least this many tokens of the window for the passage.
MIN_PASSAGE_TOKENS = 16
#: Default padded-token budget per forward pass on CPU in fp32 and int8 (see
#: ``max_tokens_per_batch``): 4 pairs of 256 tokens keep a MiniLM's activations within a
#: core's L2 cache; measured 5-25% faster per pair than 16 x 256 (docs/benchmarks.md).
CPU_TOKENS_PER_BATCH = 1024
#: The same for bf16/fp16 on CPU: AMX/AVX512-BF16 kernels want bigger matrices.
CPU_HALF_TOKENS_PER_BATCH = 4096
#: The fp32 torch budget while the CPU is contended (more runnable tasks than cores, see
#: :func:`~rerank_plugins._device.cpu_contended`) and the forward pass runs on several
#: threads: every small forward pass ends in thread barriers that a preempted thread stalls,
#: so fewer, bigger passes win (about sentence-transformers' 32 x 256; measured on a 2-core
#: EPYC: 1.08-1.09x sentence-transformers where 1024 fell to 0.61-0.76x, docs/benchmarks.md).
CPU_CONTENDED_TOKENS_PER_BATCH = 8192


def plan_batches(lengths: np.ndarray, batch_size: int, max_tokens: int) -> list[np.ndarray]:
    """Split pair indices into batches, longest first, bounded by count and padded tokens.

    Pairs are sorted by token length (descending) so each batch pads to its first pair's
    length; a batch holds at most ``batch_size`` pairs and at most ``max_tokens`` padded
    tokens (a single pair longer than the budget still gets a batch of its own).
    """
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    total = len(order)
    while start < total:
        longest = int(lengths[order[start]])
        size = max(1, min(batch_size, max_tokens // max(longest, 1)))
        batches.append(order[start : start + size])
        start += size
    return batches


def _pad(rows: Sequence[Sequence[int]], lengths: np.ndarray, pad_value: int) -> np.ndarray:
    """Right-pad ragged token rows into an int64 matrix without a per-row Python loop."""
    width = int(lengths.max())
    flat = np.fromiter(
        itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum())
    )
    out = np.full((len(rows), width), pad_value, dtype=np.int64)
    out[np.arange(width) < lengths[:, None]] = flat
    return out


class CrossEncoderReranker(BaseReranker):
    """Score and rerank passages for a query with a cross-encoder.

    Loads any Hugging Face / sentence-transformers sequence-classification cross-encoder by
    hub id or local directory. Pairs are tokenized once, sorted by token length and cut into
    batches by a pair count *and* a padded-token budget, so padding stays small and memory
    stays bounded whatever the passage lengths; scores come back in input order.

    Scores are the model's raw logits (higher is more relevant) unless
    ``activation="sigmoid"``, which maps them to 0..1 so a fixed threshold can be set. For
    two-label models the score is the positive-minus-negative logit (the log-odds).

    Args:
        model: Hub id or local directory of the cross-encoder.
        device: ``"auto"`` (CUDA, then MPS, then CPU), or any torch device string.
        dtype: ``"auto"`` (bf16/fp16 on CUDA, fp32 elsewhere), or ``"float32"``, ``"float16"``,
            ``"bfloat16"``.
        batch_size: Most pairs per forward pass (default 64 on CPU, 128 on CUDA).
        max_tokens_per_batch: Most padded tokens per forward pass. Default on CPU:
            ``CPU_TOKENS_PER_BATCH`` (1024, e.g. 4 pairs of 256 tokens or 64 of 16) in fp32
            and int8, ``CPU_HALF_TOKENS_PER_BATCH`` (4096) in bf16/fp16: on an idle CPU a
            forward pass is fastest when its activations stay in cache, so the budget, not the
            pair count, sets the batch. While the CPU is contended (more runnable tasks than
            cores) fp32 torch on several threads uses ``CPU_CONTENDED_TOKENS_PER_BATCH``
            (8192) instead, decided per call (measured in docs/benchmarks.md). Default
            elsewhere: ``batch_size * max_length`` (never splits a batch more than a
            count-only batcher).
        max_length: Token window per pair; defaults to the model's limit. The query is never
            truncated: only the passage is (``only_second``).
        activation: ``"none"`` for raw logits, ``"sigmoid"`` for 0..1 scores.
        long_passages: ``"truncate"`` keeps the passage's first window; ``"chunk"`` scores
            overlapping windows and keeps the best one (MaxP). Chunking sees the whole passage
            but costs one forward per window.
        chunk_overlap: Tokens shared by consecutive windows in ``"chunk"`` mode.
        cache_size: Entries in an LRU cache of scores keyed by (model, query, passage)
            hashes; 0 (the default) turns it off.
        backend: ``"torch"``, or ``"onnx"`` for an ONNX Runtime CPU session exported once and
            cached (needs the ``[onnx]`` extra).
        backend_options: Further keyword arguments for the backend, e.g.
            ``{"keep_fp32": "none"}`` (every MatMul int8) or ``{"spin": True}`` for
            ``backend="onnx"`` (see :class:`~rerank_plugins.backends.onnx.OnnxBackend`).
            Unknown names raise a ``ValueError`` that lists the accepted ones.
        quantize: ``"int8"`` for dynamic int8 quantization (``backend="onnx"`` only).
        cache_dir: Where ``backend="onnx"`` caches exports (default
            ``$RERANK_PLUGINS_CACHE/onnx`` or ``~/.cache/rerank-plugins/onnx``).
        num_threads: CPU intra-op threads for torch (or ONNX Runtime with ``backend="onnx"``);
            ``None``: the process's torch count capped at the physical cores this process may
            use (ONNX Runtime: the physical cores). For torch it applies to this reranker's
            forward passes only: the process-wide count is restored after each one.
        show_progress: Show a tqdm bar over batches.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        device: str | None = "auto",
        dtype: str | None = "auto",
        batch_size: int | None = None,
        max_tokens_per_batch: int | None = None,
        max_length: int | None = None,
        activation: Activation | None = "none",
        long_passages: LongPassages = "truncate",
        chunk_overlap: int = 64,
        cache_size: int = 0,
        backend: str = "torch",
        backend_options: Mapping[str, Any] | None = None,
        quantize: Literal["int8"] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        num_threads: int | None = None,
        show_progress: bool = False,
        revision: str | None = None,
        local_files_only: bool | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        if activation is None:
            activation = "none"
        if activation not in ("none", "sigmoid"):
            raise ValueError(f"activation must be 'none' or 'sigmoid', got {activation!r}")
        if long_passages not in ("truncate", "chunk"):
            raise ValueError(f"long_passages must be 'truncate' or 'chunk', got {long_passages!r}")
        batch_size = check_positive_int(batch_size, "batch_size", allow_none=True)
        max_tokens_per_batch = check_positive_int(
            max_tokens_per_batch, "max_tokens_per_batch", allow_none=True
        )
        if chunk_overlap < 0:
            raise ValueError(f"chunk_overlap must be >= 0, got {chunk_overlap}")
        if quantize is not None and backend != "onnx":
            raise ValueError(f"quantize={quantize!r} needs backend='onnx', got {backend!r}")
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")

        self.model_name = os.fspath(model)
        source = resolve_model_source(model, what="cross-encoder")
        self.tokenizer = self._load_tokenizer(source, revision, local_files_only, trust_remote_code)
        self.backend: ScoringBackend = self._load_backend(
            backend,
            source,
            device=device,
            dtype=dtype,
            revision=revision,
            local_files_only=local_files_only,
            trust_remote_code=trust_remote_code,
            num_threads=num_threads,
            **({"quantize": quantize, "cache_dir": cache_dir} if backend == "onnx" else {}),
            options=backend_options,
        )
        if self.backend.num_labels > 2:
            raise ValueError(
                f"{self.model_name!r} has {self.backend.num_labels} output labels; a reranker "
                "needs a cross-encoder with 1 (relevance logit) or 2 (not relevant/relevant)"
            )
        self.model_max_length = self._model_limit()
        if max_length is None:
            max_length = self.model_max_length
        if max_length > self.model_max_length:
            raise ValueError(
                f"max_length={max_length} exceeds the model's limit of {self.model_max_length} tokens"
            )
        special = self.tokenizer.num_special_tokens_to_add(pair=True)
        if max_length < special + MIN_PASSAGE_TOKENS + 1:
            raise ValueError(f"max_length={max_length} is too small to hold a query and a passage")
        self.max_length = int(max_length)
        self.activation: Activation = activation
        self.long_passages: LongPassages = long_passages
        self.chunk_overlap = chunk_overlap
        on_cpu = self.device == "cpu"
        self.batch_size = batch_size or (64 if on_cpu else 128)
        self.max_tokens_per_batch = (
            self._default_token_budget() if max_tokens_per_batch is None else max_tokens_per_batch
        )
        # The default fp32 torch budget on CPU follows contention per call (see _call_budget).
        self._adaptive_budget = (
            max_tokens_per_batch is None
            and on_cpu
            and backend == "torch"
            and self.max_tokens_per_batch == CPU_TOKENS_PER_BATCH
        )
        self.show_progress = show_progress
        self.cache = ScoreCache(cache_size)
        backend_tag = f"{backend}-{quantize}" if quantize else backend
        if backend_options:
            backend_tag += "|" + ",".join(
                f"{k}={backend_options[k]!r}" for k in sorted(backend_options)
            )
        self._cache_namespace = (
            f"{self.model_name}|{backend_tag}|{self.max_length}|{long_passages}|{chunk_overlap}"
        )
        # Fast tokenizers are not safe to call from several threads at once.
        self._tokenizer_lock = threading.Lock()

    # ------------------------------------------------------------------ loading
    @staticmethod
    def _load_tokenizer(
        source: str, revision: str | None, local_files_only: bool | None, trust_remote_code: bool
    ) -> Any:
        from transformers import AutoTokenizer

        kwargs = pretrained_kwargs(
            revision=revision,
            local_files_only=local_files_only,
            trust_remote_code=trust_remote_code,
        )
        tokenizer = load_pretrained(
            AutoTokenizer.from_pretrained, source, "cross-encoder", **kwargs
        )
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(
                f"{source!r} has no fast (Rust) tokenizer; rerank-plugins needs one for "
                "batched tokenization and overlapping windows"
            )
        return tokenizer

    @staticmethod
    def _load_backend(
        backend: str, source: str, *, options: Mapping[str, Any] | None, **kwargs: Any
    ) -> ScoringBackend:
        backend_class: Callable[..., ScoringBackend]
        if backend == "torch":
            from .backends.torch_backend import TorchBackend

            backend_class = TorchBackend
        elif backend == "onnx":
            from .backends.onnx import OnnxBackend

            backend_class = OnnxBackend
        else:
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        options = dict(options or {})
        accepted = set(inspect.signature(backend_class).parameters) - set(kwargs) - {"source"}
        unknown = sorted(set(options) - accepted)
        if unknown:
            taken = [name for name in unknown if name in kwargs]
            hint = f"pass {', '.join(taken)} to CrossEncoderReranker directly; " if taken else ""
            raise ValueError(
                f"backend_options {unknown} not accepted by backend={backend!r}; {hint}"
                f"options it takes: {sorted(accepted)}"
            )
        return backend_class(source, **kwargs, **options)

    def _model_limit(self) -> int:
        config = self.backend.config
        limits = []
        tokenizer_limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 100_000:
            limits.append(tokenizer_limit)
        positions = getattr(config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            # RoBERTa-style models reserve padding_idx + 1 positions.
            offset = (
                2
                if getattr(config, "model_type", "") in {"roberta", "xlm-roberta", "camembert"}
                else 0
            )
            limits.append(positions - offset)
        return min(limits) if limits else 512

    def _default_token_budget(self) -> int:
        if self.device != "cpu":
            return self.batch_size * self.max_length
        dtype = str(self.backend.dtype)
        half = dtype.endswith(("bfloat16", "float16"))
        return CPU_HALF_TOKENS_PER_BATCH if half else CPU_TOKENS_PER_BATCH

    def _call_budget(self) -> int:
        """This call's token budget: the default fp32 torch budget grows to
        ``CPU_CONTENDED_TOKENS_PER_BATCH`` while the CPU is contended and the forward pass
        runs on more than one thread; an explicit ``max_tokens_per_batch`` never changes."""
        if not self._adaptive_budget or self.max_tokens_per_batch != CPU_TOKENS_PER_BATCH:
            return self.max_tokens_per_batch
        import torch

        from ._device import cpu_contended, torch_threads_for_call

        threads = torch_threads_for_call(getattr(self.backend, "num_threads", None))
        if (threads or torch.get_num_threads()) > 1 and cpu_contended():
            return CPU_CONTENDED_TOKENS_PER_BATCH
        return self.max_tokens_per_batch

    @property
    def device(self) -> str:
        device = self.backend.device
        return str(getattr(device, "type", device))

    def __repr__(self) -> str:
        return (
            f"CrossEncoderReranker(model={self.model_name!r}, device={self.device!r}, "
            f"max_length={self.max_length}, batch_size={self.batch_size}, "
            f"activation={self.activation!r}, long_passages={self.long_passages!r})"
        )

    # ------------------------------------------------------------------ internals
    def _score_checked(self, queries: list[str], passages: list[str]) -> np.ndarray:
        raw = np.empty(len(passages), dtype=np.float32)
        if not passages:
            return raw
        if self.cache.maxsize:
            keys = [
                pair_key(self._cache_namespace, q, p)
                for q, p in zip(queries, passages, strict=True)
            ]
            cached = self.cache.get_many(keys)
            missing = [i for i, value in enumerate(cached) if value is None]
            hit = [i for i, value in enumerate(cached) if value is not None]
            raw[hit] = [cached[i] for i in hit]
        else:
            missing = list(range(len(passages)))
        if missing:
            fresh = self._score_uncached(
                [queries[i] for i in missing], [passages[i] for i in missing]
            )
            self._check_logits(fresh, missing, queries)  # before anything is cached
            raw[missing] = fresh
            if self.cache.maxsize:
                self.cache.put_many(zip([keys[i] for i in missing], fresh.tolist(), strict=True))
        if self.activation == "sigmoid":
            return (1.0 / (1.0 + np.exp(-raw.astype(np.float64)))).astype(np.float32)
        return raw

    def _check_logits(self, logits: np.ndarray, positions: list[int], queries: list[str]) -> None:
        """Raise NonFiniteScoreError naming the input whose logit is NaN or infinite."""
        if np.isfinite(logits).all():
            return
        what = "passage" if len(set(queries)) <= 1 else "pair"
        try:
            check_finite_scores(
                logits,
                len(positions),
                what=what,
                positions=positions,
                source=f"cross-encoder {self.model_name!r}",
            )
        except NonFiniteScoreError as error:
            raise NonFiniteScoreError(
                f"{error}: its logits overflowed or are NaN (with dtype='float16' try "
                "'bfloat16' or 'float32')"
            ) from None

    def _check_query_lengths(self, queries: list[str]) -> int:
        """Raise if a query leaves the passage too little room; return the longest query's tokens."""
        unique = list(dict.fromkeys(queries))
        with self._tokenizer_lock:
            encoded = self.tokenizer(unique, add_special_tokens=False)["input_ids"]
        special = self.tokenizer.num_special_tokens_to_add(pair=True)
        room = self.max_length - special - MIN_PASSAGE_TOKENS
        for query, ids in zip(unique, encoded, strict=True):
            if len(ids) > room:
                preview = query[:60] + ("..." if len(query) > 60 else "")
                raise ValueError(
                    f"query {preview!r} is {len(ids)} tokens; with max_length={self.max_length} "
                    f"it must be at most {room} tokens so the passage keeps "
                    f"{MIN_PASSAGE_TOKENS}. The query is never truncated: shorten it or raise "
                    "max_length."
                )
        return max((len(ids) for ids in encoded), default=0)

    def _encode(self, queries: list[str], passages: list[str]) -> tuple[Any, np.ndarray]:
        """Tokenize pairs (no padding); returns the encoding and the pair index of each row."""
        longest_query = self._check_query_lengths(queries)
        chunk = self.long_passages == "chunk"
        kwargs: dict[str, Any] = {
            "truncation": "only_second",
            "max_length": self.max_length,
            "padding": False,
        }
        if chunk:
            special = self.tokenizer.num_special_tokens_to_add(pair=True)
            room = self.max_length - special - longest_query
            kwargs["return_overflowing_tokens"] = True
            kwargs["stride"] = min(self.chunk_overlap, max(room // 2, 0))
        with self._tokenizer_lock:
            encoding = self.tokenizer(queries, passages, **kwargs)
        if chunk:
            owners = np.asarray(encoding["overflow_to_sample_mapping"], dtype=np.int64)
        else:
            owners = np.arange(len(passages), dtype=np.int64)
        return encoding, owners

    def _score_uncached(self, queries: list[str], passages: list[str]) -> np.ndarray:
        encoding, owners = self._encode(queries, passages)
        input_ids = encoding["input_ids"]
        lengths = np.fromiter((len(row) for row in input_ids), dtype=np.int64, count=len(input_ids))
        names = [n for n in self.backend.input_names if n in encoding]
        pad_values = {
            "input_ids": self.tokenizer.pad_token_id or 0,
            "attention_mask": 0,
            "token_type_ids": getattr(self.tokenizer, "pad_token_type_id", 0) or 0,
        }
        window_scores = np.empty(len(input_ids), dtype=np.float32)
        batches = plan_batches(lengths, self.batch_size, self._call_budget())
        if self.show_progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="rerank", unit="batch")
        for batch in batches:
            batch_lengths = lengths[batch]
            features = {
                name: _pad([encoding[name][i] for i in batch], batch_lengths, pad_values[name])
                for name in names
            }
            if "attention_mask" in self.backend.input_names and "attention_mask" not in features:
                width = int(batch_lengths.max())
                features["attention_mask"] = (np.arange(width) < batch_lengths[:, None]).astype(
                    np.int64
                )
            logits = self.backend(features)
            window_scores[batch] = _logits_to_scores(logits)
        if len(owners) == len(passages) and self.long_passages == "truncate":
            return window_scores
        best = np.full(len(passages), -np.inf, dtype=np.float32)
        np.maximum.at(best, owners, window_scores)
        return best


def _logits_to_scores(logits: np.ndarray) -> np.ndarray:
    if logits.ndim == 1:
        return logits.astype(np.float32)
    if logits.shape[1] == 1:
        return logits[:, 0].astype(np.float32)
    return (logits[:, 1] - logits[:, 0]).astype(np.float32)
