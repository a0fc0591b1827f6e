"""A fake LLM provider speaking the real OpenAI and Anthropic HTTP wire formats.

Why: flowscope's instrumentation must be tested against what the official ``openai`` and
``anthropic`` clients actually do (retries, stream parsing, usage placement), without
network access, API keys, cost or flakiness. Pointing the unmodified clients at this fake
(``base_url`` + any ``api_key``) exercises their real code paths end to end.

Two carriers share one response implementation (``FakeProvider.handle``):

* a stdlib ``ThreadingHTTPServer`` on an ephemeral 127.0.0.1 port (``with FakeProvider()
  as fp: ...``), which also exercises sockets, keep-alive and client disconnects;
* in-process httpx transports (``fp.transport()`` / ``fp.async_transport()``) with no
  sockets at all, for low-noise benchmarks. They work with both ``httpx`` and ``httpx2``
  clients (openai 3.x accepts either; anthropic 2.x requires ``httpx2``).

Run ``python -m flowscope.testing.fake_provider --port 8400`` for manual curl testing.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import socketserver
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import anyio
import httpx

from . import fake_anthropic, fake_openai
from .fake_common import FakeResponse, RecordedRequest, Reply, ToolCall, json_response

try:  # anthropic>=2 / openai>=3 are built on httpx2; older SDKs only on httpx.
    import httpx2 as _httpx2
except ImportError:  # pragma: no cover - depends on installed SDK generation
    _httpx2 = None  # type: ignore[assignment]

__all__ = [
    "FakeAsyncTransport",
    "FakeProvider",
    "FakeResponse",
    "FakeTransport",
    "RecordedRequest",
    "Reply",
    "ToolCall",
    "main",
]

log = logging.getLogger(__name__)

Renderer = Callable[[RecordedRequest, Reply], FakeResponse]
ReplyRule = Callable[[RecordedRequest], Reply | None]

_ROUTES: dict[tuple[str, str], tuple[str, Renderer]] = {
    ("POST", "/v1/chat/completions"): ("chat.completions", fake_openai.render_chat),
    ("POST", "/v1/responses"): ("responses", fake_openai.render_responses),
    ("POST", "/v1/embeddings"): ("embeddings", fake_openai.render_embeddings),
    ("POST", "/v1/messages"): ("messages", fake_anthropic.render_messages),
    ("POST", "/v1/messages/count_tokens"): ("count_tokens", fake_anthropic.render_count_tokens),
    ("GET", "/v1/models"): ("models", fake_openai.render_models),
}
_PATH_TO_ROUTE = {path: route for (_, path), (route, _) in _ROUTES.items()}
# Utility routes never consume unfiltered scripted replies: a count_tokens probe must not
# eat the reply a test queued for the generation call that follows it.
_UTILITY_ROUTES = frozenset({"count_tokens", "models"})
_ANTHROPIC_ROUTES = frozenset({"messages", "count_tokens"})


@dataclass(frozen=True)
class _Scripted:
    reply: Reply
    model: str | None
    route: str | None

    def matches(self, request: RecordedRequest) -> bool:
        if self.route is None and request.route in _UTILITY_ROUTES:
            return False
        if self.route is not None and self.route != request.route:
            return False
        return self.model is None or self.model == request.model


def _normalise_route(route: str | None) -> str | None:
    if route is None or not route.startswith("/"):
        return route
    path = route.rstrip("/")
    if path not in _PATH_TO_ROUTE:
        raise ValueError(f"unknown route path {route!r}; known: {sorted(_PATH_TO_ROUTE)}")
    return _PATH_TO_ROUTE[path]


class FakeProvider:
    """Fake OpenAI + Anthropic endpoint with scripted replies and request recording.

    Replies are chosen per request: the first queued ``script()`` entry whose filters match
    (FIFO, consumed on use), else the ``set_default()`` reply/rule, else ``Reply()`` (echo
    text with token counts derived from the request, see ``count_input_tokens``).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False) -> None:
        self.host = host
        self.port = port
        self.verbose = verbose
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._queue: list[_Scripted] = []
        self._default: Reply | ReplyRule | None = None
        self._server: _FakeHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeProvider:
        """Bind and serve in a daemon thread. Idempotent; returns self for chaining."""
        if self._server is not None:
            return self
        server = _FakeHTTPServer((self.host, self.port), self)
        self.port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # bounds how long stop() waits for the accept loop
            name=f"flowscope-fake-provider:{self.port}",
            daemon=True,
        )
        self._server, self._thread = server, thread
        thread.start()
        return self

    def stop(self) -> None:
        """Stop promptly: end the accept loop, abort in-flight streams, drop keep-alive sockets."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join(timeout=2.0)

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``; requires ``start()``."""
        if self._server is None:
            raise RuntimeError("FakeProvider is not started; call start() or use it as a context manager")
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    # --- scripting ----------------------------------------------------------------------

    def script(self, *replies: Reply, model: str | None = None, route: str | None = None) -> FakeProvider:
        """Queue one-shot replies (FIFO). ``model``/``route`` restrict which requests may
        consume them; ``route`` is a route name (``"chat.completions"``, ``"responses"``,
        ``"embeddings"``, ``"messages"``, ``"count_tokens"``, ``"models"``) or its path."""
        route = _normalise_route(route)
        with self._lock:
            self._queue.extend(_Scripted(r, model, route) for r in replies)
        return self

    def fail_next(
        self,
        n: int = 1,
        status: int = 429,
        *,
        model: str | None = None,
        route: str | None = None,
        **reply_fields: Any,
    ) -> FakeProvider:
        """Queue ``n`` error replies (default 429 with a 10 ms ``retry-after-ms``)."""
        return self.script(
            *(Reply(status=status, **reply_fields) for _ in range(n)), model=model, route=route
        )

    def set_default(self, reply: Reply | ReplyRule | None) -> FakeProvider:
        """Persistent fallback when no queued reply matches: a Reply, or a rule
        ``fn(request) -> Reply | None`` (``None`` falls through to the built-in echo)."""
        with self._lock:
            self._default = reply
        return self

    @property
    def pending(self) -> int:
        """Number of queued replies not yet consumed (assert 0 to catch unused scripts)."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of every request received, oldest first (credentials redacted)."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget recorded requests, queued replies and the default; the server stays up."""
        with self._lock:
            self._requests.clear()
            self._queue.clear()
            self._default = None

    def _select(self, request: RecordedRequest) -> Reply:
        with self._lock:
            for index, entry in enumerate(self._queue):
                if entry.matches(request):
                    del self._queue[index]
                    return entry.reply
            default = self._default
        if isinstance(default, Reply):
            return default
        if default is not None:
            chosen = default(request)
            if chosen is not None:
                return chosen
        return Reply()

    # --- the one response implementation ------------------------------------------------

    def handle(self, method: str, path: str, headers: Iterable[tuple[str, str]], body: bytes) -> FakeResponse:
        """Record the request, pick a reply and render it. Shared by the socket server and
        the httpx transports so both carriers behave identically."""
        path = path.split("?", 1)[0].rstrip("/") or "/"
        method = method.upper()
        if method == "GET" and path in ("/", "/health"):
            return json_response(200, {"status": "ok"}, [])
        route, renderer = _ROUTES.get((method, path), ("unknown", None))
        parsed: Any = None
        bad_json = False
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                bad_json = True
        request = RecordedRequest(method, path, RecordedRequest.redact(headers), parsed, route)
        with self._lock:
            self._requests.append(request)

        anthropic_style = route in _ANTHROPIC_ROUTES or "anthropic-version" in request.headers
        render_error = fake_anthropic.render_error if anthropic_style else fake_openai.render_error
        if renderer is None:
            return render_error(Reply(status=404), message=f"Unknown route: {method} {path}")
        if bad_json:
            return render_error(Reply(status=400), message="Request body is not valid JSON.")
        reply = self._select(request)
        try:
            return renderer(request, reply)
        except Exception as exc:  # a bad script must surface as an HTTP error, not a dead thread
            log.exception("fake provider failed to render %s", route)
            return render_error(Reply(status=500), message=f"FakeProvider internal error: {exc!r}")

    # --- in-process transports & client helpers -----------------------------------------

    def transport(self) -> FakeTransport:
        """Sync transport for ``httpx.Client``/``httpx2.Client``: no sockets, same replies.
        Works without ``start()``."""
        return FakeTransport(self)

    def async_transport(self) -> FakeAsyncTransport:
        """Async counterpart of ``transport()`` (latency uses ``anyio.sleep``)."""
        return FakeAsyncTransport(self)

    def openai_client(self, *, in_process: bool = False, **kwargs: Any) -> Any:
        """An ``openai.OpenAI`` wired to this fake (over the socket, or in-process)."""
        import openai

        return self._client(openai.OpenAI, "/v1", in_process, False, kwargs)

    def async_openai_client(self, *, in_process: bool = False, **kwargs: Any) -> Any:
        import openai

        return self._client(openai.AsyncOpenAI, "/v1", in_process, True, kwargs)

    def anthropic_client(self, *, in_process: bool = False, **kwargs: Any) -> Any:
        """An ``anthropic.Anthropic`` wired to this fake (over the socket, or in-process)."""
        import anthropic

        return self._client(anthropic.Anthropic, "", in_process, False, kwargs)

    def async_anthropic_client(self, *, in_process: bool = False, **kwargs: Any) -> Any:
        import anthropic

        return self._client(anthropic.AsyncAnthropic, "", in_process, True, kwargs)

    def _client(self, cls: Any, suffix: str, in_process: bool, is_async: bool, kwargs: dict[str, Any]) -> Any:
        kwargs.setdefault("api_key", "fake-key")
        if not in_process:
            kwargs.setdefault("base_url", self.url + suffix)
            return cls(**kwargs)
        kwargs.setdefault("base_url", "http://fake-provider.invalid" + suffix)
        if "http_client" in kwargs:
            return cls(**kwargs)
        # Prefer httpx2 (required by anthropic>=2), fall back to httpx for older SDKs.
        last_error: TypeError | None = None
        for lib in (_httpx2, httpx):
            if lib is None:
                continue
            if is_async:
                http_client = lib.AsyncClient(transport=self.async_transport())
            else:
                http_client = lib.Client(transport=self.transport())
            try:
                return cls(http_client=http_client, **kwargs)
            except TypeError as exc:
                last_error = exc
        raise TypeError(f"{cls.__name__} accepted neither an httpx2 nor an httpx client") from last_error

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self.running else "stopped"
        return f"<FakeProvider {where} requests={len(self._requests)} pending={len(self._queue)}>"


# --- socket server ----------------------------------------------------------------------------

_DISCONNECTS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class _FakeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], provider: FakeProvider) -> None:
        self.provider = provider
        self.stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse-DNS lookup that can stall
        # for seconds in sandboxes; the fake never needs the name.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._conns_lock:
            if alive:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def close_connections(self) -> None:
        """Unblock handler threads parked on idle keep-alive sockets so stop() leaves none."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (*_DISCONNECTS, TimeoutError)):
            return  # clients hanging up is normal (abandoned streams, stop())
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs; streams use chunked encoding
    server_version = "flowscope-fake-provider/1"
    sys_version = ""
    server: _FakeHTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except _DISCONNECTS:
            pass
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.provider.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        stopping = self.server.stopping
        try:
            body = self._read_body()
            resp = self.server.provider.handle(self.command, self.path, self.headers.items(), body)
            if resp.latency_s and stopping.wait(resp.latency_s):
                self.close_connection = True
                return
            self.send_response(resp.status)
            for key, value in resp.headers:
                self.send_header(key, value)
            if resp.chunks is None:
                self.send_header("content-length", str(len(resp.body)))
                self.end_headers()
                self.wfile.write(resp.body)
                return
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for index, chunk in enumerate(resp.chunks):
                if index and resp.chunk_delay_s and stopping.wait(resp.chunk_delay_s):
                    self.close_connection = True  # stop() mid-stream: hang up like a dying server
                    return
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        except _DISCONNECTS:
            self.close_connection = True  # client abandoned the stream; nothing to clean up


# --- in-process httpx / httpx2 transports ---------------------------------------------------


def _bases(name: str) -> tuple[type, ...]:
    """The same class works for httpx and httpx2 by inheriting from both (their client
    code checks ``isinstance`` against its own library's base classes)."""
    return tuple(getattr(lib, name) for lib in (httpx, _httpx2) if lib is not None)


def _response_lib(request: Any) -> Any:
    if _httpx2 is not None and isinstance(request, _httpx2.Request):
        return _httpx2
    return httpx


class _SyncChunkStream(*_bases("SyncByteStream")):  # type: ignore[misc]
    def __init__(self, chunks: list[bytes], delay: float) -> None:
        self._chunks, self._delay = chunks, delay

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self._chunks):
            if index and self._delay:
                time.sleep(self._delay)
            yield chunk


class _AsyncChunkStream(*_bases("AsyncByteStream")):  # type: ignore[misc]
    def __init__(self, chunks: list[bytes], delay: float) -> None:
        self._chunks, self._delay = chunks, delay

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index, chunk in enumerate(self._chunks):
            if index and self._delay:
                await anyio.sleep(self._delay)
            yield chunk


class FakeTransport(*_bases("BaseTransport")):  # type: ignore[misc]
    """Sync in-process transport; see ``FakeProvider.transport()``."""

    def __init__(self, provider: FakeProvider) -> None:
        self._provider = provider

    def handle_request(self, request: Any) -> Any:
        lib = _response_lib(request)
        resp = self._provider.handle(
            request.method, request.url.path, request.headers.items(), request.read()
        )
        if resp.latency_s:
            time.sleep(resp.latency_s)
        if resp.chunks is None:
            return lib.Response(resp.status, headers=resp.headers, content=resp.body)
        return lib.Response(
            resp.status, headers=resp.headers, stream=_SyncChunkStream(resp.chunks, resp.chunk_delay_s)
        )


class FakeAsyncTransport(*_bases("AsyncBaseTransport")):  # type: ignore[misc]
    """Async in-process transport; see ``FakeProvider.async_transport()``."""

    def __init__(self, provider: FakeProvider) -> None:
        self._provider = provider

    async def handle_async_request(self, request: Any) -> Any:
        lib = _response_lib(request)
        body = await request.aread()
        resp = self._provider.handle(request.method, request.url.path, request.headers.items(), body)
        if resp.latency_s:
            await anyio.sleep(resp.latency_s)
        if resp.chunks is None:
            return lib.Response(resp.status, headers=resp.headers, content=resp.body)
        return lib.Response(
            resp.status, headers=resp.headers, stream=_AsyncChunkStream(resp.chunks, resp.chunk_delay_s)
        )


# --- CLI ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the fake in the foreground until Ctrl-C (for curl / manual client testing)."""
    parser = argparse.ArgumentParser(
        prog="python -m flowscope.testing.fake_provider", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8400)
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    fp = FakeProvider(args.host, args.port, verbose=not args.quiet).start()
    print(f"FakeProvider listening on {fp.url}", flush=True)
    print(f"  OpenAI:    base_url={fp.openai_base_url}", flush=True)
    print(f"  Anthropic: base_url={fp.anthropic_base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fp.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
