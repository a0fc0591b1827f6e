"""Transparent proxies for streaming responses.

The caller keeps the exact object the client returned (isinstance checks,
``.response``, ``close()``, ``with`` and ``async with`` all work); we only watch
the chunks go by and end the span when the stream is exhausted, closed, fails,
or is dropped half way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import wrapt

from ..llm import LLMCall

logger = logging.getLogger("flowscope")


class StreamObserver:
    """Per-provider logic: what to learn from each chunk, and how to finish."""

    def __init__(self, call: LLMCall) -> None:
        self.call = call

    def on_chunk(self, chunk: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def on_end(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def on_error(self, exc: BaseException) -> None:
        self.call.fail(exc)


def _safe(fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:  # observability must never break the caller's stream
        logger.debug("flowscope: stream observer failed", exc_info=True)


class _ObservedStream(wrapt.ObjectProxy):  # type: ignore[misc]
    """What both proxies share: the observer and ending the span exactly once."""

    def __init__(self, wrapped: Any, observer: StreamObserver) -> None:
        super().__init__(wrapped)
        self._self_observer = observer
        self._self_done = False

    def _self_finish(self, exc: BaseException | None = None, abandoned: bool = False) -> None:
        if self._self_done:
            return
        self._self_done = True
        obs = self._self_observer
        if exc is not None:
            _safe(obs.on_error, exc)
        else:
            if abandoned:
                _safe(obs.call.abandon)
            _safe(obs.on_end)

    def __del__(self) -> None:
        if not self._self_done:
            self._self_finish(abandoned=True)


class SyncStreamProxy(_ObservedStream):

    def __iter__(self) -> SyncStreamProxy:
        return self

    def __next__(self) -> Any:
        try:
            chunk = self.__wrapped__.__next__()
        except StopIteration:
            self._self_finish()
            raise
        except BaseException as exc:
            self._self_finish(exc)
            raise
        _safe(self._self_observer.on_chunk, chunk)
        return chunk

    def __enter__(self) -> SyncStreamProxy:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._self_finish(abandoned=True)

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_finish(abandoned=True)



class AsyncStreamProxy(_ObservedStream):

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        try:
            chunk = await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            self._self_finish()
            raise
        except BaseException as exc:
            self._self_finish(exc)
            raise
        _safe(self._self_observer.on_chunk, chunk)
        return chunk

    async def __aenter__(self) -> AsyncStreamProxy:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            self._self_finish(abandoned=True)

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_finish(abandoned=True)

    async def aclose(self) -> None:
        try:
            closer = getattr(self.__wrapped__, "aclose", None) or self.__wrapped__.close
            await closer()
        finally:
            self._self_finish(abandoned=True)



def end_if_proxy(stream: Any) -> None:
    """A helper stream built on our proxy was closed behind its back: end the span too."""
    if isinstance(stream, (SyncStreamProxy, AsyncStreamProxy)):
        stream._self_finish(abandoned=True)


def helper_close_sync(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """For ``ChatCompletionStream.close`` and friends, which close the HTTP response
    directly instead of the raw stream we handed them."""
    try:
        return wrapped(*args, **kwargs)
    finally:
        _safe(end_if_proxy, getattr(instance, "_raw_stream", None))


async def helper_close_async(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return await wrapped(*args, **kwargs)
    finally:
        _safe(end_if_proxy, getattr(instance, "_raw_stream", None))
