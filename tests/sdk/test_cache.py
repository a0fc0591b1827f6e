"""The exact-match response cache: same type back, free, and the saving recorded."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import anthropic
import openai
import pytest
from anthropic.types import Message
from openai.types.chat import ChatCompletion
from pydantic import BaseModel

import flowscope
from flowscope.cache import MemoryBackend, RedisBackend, SQLiteBackend, request_key
from flowscope.core import semconv
from flowscope.testing import FakeProvider, Reply
from tests._llm_kit import (
    ANTHROPIC_MODEL,
    CLAUDE_HAIKU_35,
    GPT_4O_MINI,
    MSGS,
    OPENAI_MODEL,
    Capture,
    attrs,
    cost_of,
)


def oai(fp: FakeProvider) -> openai.OpenAI:
    return openai.OpenAI(base_url=fp.openai_base_url, api_key="k", max_retries=0)


def ask(client: openai.OpenAI, **kw: object) -> ChatCompletion:
    args: dict[str, object] = {"model": OPENAI_MODEL, "messages": MSGS, "temperature": 0}
    args.update(kw)
    return client.chat.completions.create(**args)  # type: ignore[call-overload, no-any-return]


def assert_hit(span, want_saved: Decimal) -> None:  # type: ignore[no-untyped-def]
    a = attrs(span)
    assert a[semconv.CACHE_HIT] is True
    assert a[semconv.COST_USD] == "0"
    assert a[semconv.COST_SOURCE] == "computed"
    assert Decimal(a[semconv.CACHE_SAVED_USD]) == want_saved
    assert semconv.GEN_AI_USAGE_INPUT_TOKENS not in a  # nothing was consumed


def test_memory_hit_is_the_same_type_free_and_records_the_saving(cap: Capture, fake_provider) -> None:
    flowscope.cache.enable()
    fake_provider.set_default(Reply(text="cached!", input_tokens=1000, cached_tokens=200, output_tokens=100))
    client = oai(fake_provider)
    with flowscope.run("cache") as run:
        first = ask(client)
        second = ask(client)
    assert len(fake_provider.requests) == 1
    assert type(second) is ChatCompletion and second == first
    assert second is not first
    miss, hit = cap.llm()
    full = GPT_4O_MINI.cost(1000, 100, cached=200)
    assert cost_of(miss) == full and semconv.CACHE_HIT not in attrs(miss)
    assert_hit(hit, full)
    assert run.cost_usd == full and run.llm_calls == 2


def test_key_covers_what_changes_the_answer(cap: Capture, fake_provider) -> None:
    flowscope.cache.enable()
    client = oai(fake_provider)
    ask(client)
    ask(client, temperature=0.7)
    ask(client, messages=[*MSGS, {"role": "user", "content": "and Spain?"}])
    ask(client, model="gpt-4o")
    ask(client, tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    assert len(fake_provider.requests) == 5
    ask(client, user="someone-else", timeout=30, extra_headers={"x-trace": "1"})  # transport only
    assert len(fake_provider.requests) == 5
    key = request_key("openai", "chat.completions", {"model": "m", "messages": MSGS})
    assert key != request_key("anthropic", "chat.completions", {"model": "m", "messages": MSGS})
    assert key != request_key("openai", "messages", {"model": "m", "messages": MSGS})


def test_anthropic_hit_and_system_prompt_in_key(cap: Capture, fake_provider) -> None:
    flowscope.cache.enable()
    fake_provider.set_default(Reply(text="claude", input_tokens=500, cached_tokens=100, cache_write_tokens=50,
                                    output_tokens=20))
    c = anthropic.Anthropic(base_url=fake_provider.anthropic_base_url, api_key="k")
    m1 = c.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, system="terse", messages=MSGS)
    m2 = c.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, system="terse", messages=MSGS)
    c.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, system="verbose", messages=MSGS)
    assert type(m2) is Message and m2 == m1
    assert len(fake_provider.requests) == 2
    assert_hit(cap.llm()[1], CLAUDE_HAIKU_35.cost(500, 20, cached=100, write=50))


async def test_async_hit(cap: Capture, fake_provider) -> None:
    flowscope.cache.enable()
    c = openai.AsyncOpenAI(base_url=fake_provider.openai_base_url, api_key="k")
    a = await c.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
    b = await c.chat.completions.create(model=OPENAI_MODEL, messages=MSGS)
    assert a == b and len(fake_provider.requests) == 1
    assert attrs(cap.llm()[1])[semconv.CACHE_HIT] is True


class Capital(BaseModel):
    city: str


def test_parse_hit_returns_the_callers_class(cap: Capture, fake_provider) -> None:
    flowscope.cache.enable()
    fake_provider.set_default(Reply(text='{"city": "Paris"}'))
    client = oai(fake_provider)
    first = client.chat.completions.parse(model=OPENAI_MODEL, messages=MSGS, response_format=Capital)
    second = client.chat.completions.parse(model=OPENAI_MODEL, messages=MSGS, response_format=Capital)
    plain = ask(client)  # create() with the same messages is another entry
    assert len(fake_provider.requests) == 2
    assert second.choices[0].message.parsed == Capital(city="Paris")
    assert second == first and type(plain) is ChatCompletion


def test_streams_and_raw_responses_bypass_the_cache(cap: Capture, fake_provider) -> None:
    flowscope.cache.enable()
    client = oai(fake_provider)
    for _ in range(2):
        list(client.chat.completions.create(model=OPENAI_MODEL, messages=MSGS, stream=True))
        client.chat.completions.with_raw_response.create(model=OPENAI_MODEL, messages=MSGS).parse()
    assert len(fake_provider.requests) == 4
    assert not any(attrs(s).get(semconv.CACHE_HIT) for s in cap.llm())


def test_hits_are_served_over_budget(cap: Capture, fake_provider) -> None:
    flowscope.cache.enable()
    fake_provider.set_default(Reply(text="pricey", input_tokens=50_000, output_tokens=5_000))
    client = oai(fake_provider)
    with flowscope.run("budget", budget_usd="0.001") as run:
        ask(client, max_tokens=10)  # spends the budget (its worst case, 10 output tokens, fitted)
        ask(client, max_tokens=10)  # free: served from the cache
        with pytest.raises(flowscope.BudgetExceeded):
            ask(client, max_tokens=10, temperature=1)  # a miss would cost money: refused before sending
    assert len(fake_provider.requests) == 1
    assert run.cost_usd == GPT_4O_MINI.cost(50_000, 5_000)


def test_sqlite_persists_across_enable_and_evicts_lru(cap: Capture, fake_provider, tmp_path: Path) -> None:
    db = tmp_path / "llm-cache.db"
    flowscope.cache.enable(f"sqlite:///{db}", max_size=2)
    client = oai(fake_provider)
    ask(client, temperature=0)
    ask(client, temperature=0.1)
    flowscope.cache.disable()
    flowscope.cache.enable(f"sqlite:///{db}", max_size=2)  # as a new process would
    ask(client, temperature=0)
    assert len(fake_provider.requests) == 2
    ask(client, temperature=0.2)  # third entry evicts the least recently used (0.1)
    ask(client, temperature=0.1)
    assert len(fake_provider.requests) == 4
    backend = SQLiteBackend(db)
    assert len(backend) == 2


def test_memory_backend_ttl_and_lru() -> None:
    backend = MemoryBackend(max_size=2)
    backend.set("a", "1", None)
    backend.set("b", "2", None)
    assert backend.get("a") == "1"  # a is now most recent
    backend.set("c", "3", None)
    assert backend.get("b") is None and backend.get("a") == "1" and backend.get("c") == "3"
    backend.set("short", "x", 0.05)
    assert backend.get("short") == "x"
    time.sleep(0.1)
    assert backend.get("short") is None


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="sqlite"):
        flowscope.cache.enable("mysql://nope")


def test_broken_backend_is_a_miss_not_an_error(cap: Capture, fake_provider) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    flowscope.cache.enable(f"redis://127.0.0.1:{port}/0")  # nothing listens there
    client = oai(fake_provider)
    ask(client)
    ask(client)
    assert len(fake_provider.requests) == 2
    assert all(semconv.CACHE_HIT not in attrs(s) for s in cap.llm())


# --- Redis, for real ---------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary not installed (apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    import redis

    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)


def test_redis_hit_ttl_and_max_size(cap: Capture, fake_provider, redis_url: str) -> None:
    flowscope.cache.enable(redis_url, ttl_s=60, max_size=2)
    flowscope.cache.clear()
    fake_provider.set_default(Reply(text="from redis", input_tokens=300, output_tokens=30))
    client = oai(fake_provider)
    first = ask(client)
    second = ask(client)
    assert second == first and type(second) is ChatCompletion
    assert len(fake_provider.requests) == 1
    assert_hit(cap.llm()[1], GPT_4O_MINI.cost(300, 30))

    backend = RedisBackend(redis_url, max_size=2)
    ttl = backend._client.pttl(next(k for k in backend._client.scan_iter(match=backend.prefix + "*")
                                    if not k.endswith(b"index")))
    assert 0 < ttl <= 60_000
    ask(client, temperature=0.3)
    ask(client, temperature=0.4)  # third entry: the oldest is evicted
    assert len(backend) == 2
    ask(client)  # evicted: a miss again
    assert len(fake_provider.requests) == 4


def test_redis_entries_are_shared_between_caches(cap: Capture, fake_provider, redis_url: str) -> None:
    flowscope.cache.enable(redis_url)
    flowscope.cache.clear()
    client = oai(fake_provider)
    ask(client)
    flowscope.cache.enable(redis_url)  # another process, same Redis
    ask(client)
    assert len(fake_provider.requests) == 1
