"""Every place flowscope leans on the OpenTelemetry SDK's internals, and nowhere else.

The SDK's public calls are correct but, on the paths that run for every LLM call
and every node, measurably slow (re-validation of attributes we built ourselves)
or noisy (a detach in another context logs an error). Each shortcut here reads
an internal the SDK does not promise to keep, so each one checks the shape it
expects and falls back to the public call when the shape differs; the tests in
``tests/sdk/test_otel_internals.py`` run both paths. Supported: opentelemetry-sdk
1.30 and newer (the internals used here have been stable across that range).

Nothing else in the SDK may touch ``span._lock``, ``_attributes``,
``_span_processors``, ``_RUNTIME_CONTEXT`` or sampler internals.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from ._version import __version__
from .core import semconv

try:
    from opentelemetry.attributes import BoundedAttributes as _BoundedAttributes
except ImportError:  # pragma: no cover - every supported SDK has it
    _BoundedAttributes = None  # type: ignore[assignment,misc]

logger = logging.getLogger("flowscope")

# Span processors that set this class attribute true promise that reading a span's
# attributes in ``on_start`` gives the same result whether an LLM span's attributes
# are passed to ``start_span`` or set right after it (see :func:`start_policy`).
START_ATTRIBUTES_INDIFFERENT = "flowscope_start_attributes_indifferent"


# --- tracer ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def tracer() -> trace.Tracer:
    """flowscope's tracer from the global provider.

    Cached: a ProxyTracer follows the global provider once one is set, and
    ``get_tracer()`` per span is a measurable share of per-node overhead.
    """
    return trace.get_tracer("flowscope", __version__)


def tracer_from(tracer_provider: trace.TracerProvider | None) -> trace.Tracer:
    """flowscope's tracer from ``tracer_provider`` (``instrument(tracer_provider=...)``), else the global one."""
    if tracer_provider is None:
        return tracer()
    return trace.get_tracer("flowscope", __version__, tracer_provider=tracer_provider)


# --- attributes -----------------------------------------------------------------------

_PLAIN_TYPES = frozenset({str, bool, int, float})


def set_attributes(span: Span, attrs: Mapping[str, Any]) -> None:
    """``span.set_attributes(attrs)`` for attributes flowscope built itself, without the re-validation.

    The SDK's ``set_attributes`` runs every value through its generic cleaning
    (a chain of type checks per value, a new dict, a tuple per sequence) on the
    caller's thread. Values that are already what the cleaning would produce
    (exact str, bool, int, float, or a tuple of str), on an SDK span with no
    value-length limit and room under its attribute-count limit, go straight
    into its attribute store under the same locks; anything else takes the
    ordinary path. The stored attributes are the same either way.
    """
    bounded = getattr(span, "_attributes", None)
    if bounded is not None and type(bounded) is _BoundedAttributes:
        try:
            store = bounded._dict
            maxlen = bounded.maxlen
            fast = bounded.max_value_len is None and (maxlen is None or len(store) + len(attrs) <= maxlen)
            if fast:
                plain = _PLAIN_TYPES
                for value in attrs.values():
                    kind = type(value)
                    if kind in plain:
                        continue
                    if kind is tuple and all(type(v) is str for v in value):
                        continue
                    fast = False
                    break
            if fast:
                with span._lock:  # type: ignore[attr-defined]
                    if span._end_time is None:  # type: ignore[attr-defined]
                        with bounded._lock:
                            store.update(attrs)
                        return
        except AttributeError:  # an SDK whose internals differ: the ordinary way
            pass
    span.set_attributes(attrs)


def attribute_dict(attributes: Any) -> Any:
    """The plain dict inside an SDK ``BoundedAttributes`` (read-only use), else ``attributes`` itself."""
    if _BoundedAttributes is not None and type(attributes) is _BoundedAttributes:
        inner = getattr(attributes, "_dict", None)
        if isinstance(inner, dict):
            return inner
    return attributes


def span_attribute_store(span: Any) -> Any:
    """A finished SDK span's own attribute store (not the read-only proxy ``.attributes`` builds), else ``.attributes``."""
    raw = getattr(span, "_attributes", None)
    if _BoundedAttributes is not None and type(raw) is _BoundedAttributes:
        return raw
    return span.attributes


# --- when start attributes may be set after start ---------------------------------------

# (span processors, sampler, whether start attributes can be set after start): see start_policy.
_start_policy: tuple[Any, Any, bool] = ((), None, False)


def _sampler_ignores_attributes(sampler: Any) -> bool:
    """The SDK's own samplers decide on the trace id and the parent alone, never on attributes."""
    from opentelemetry.sdk.trace import sampling

    kind = type(sampler)
    if kind is sampling.StaticSampler or kind is sampling.TraceIdRatioBased:
        return True
    if kind is sampling.ParentBased:
        return all(
            _sampler_ignores_attributes(getattr(sampler, name, None))
            for name in ("_root", "_remote_parent_sampled", "_remote_parent_not_sampled",
                         "_local_parent_sampled", "_local_parent_not_sampled")
        )
    return False


def indifferent_to_start_attributes(processor: Any) -> bool:
    """True for a span processor known not to read a span's attributes in ``on_start``
    (or whose reading gives the same result either way)."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    if type(processor) in (BatchSpanProcessor, SimpleSpanProcessor):
        return True
    return getattr(processor, START_ATTRIBUTES_INDIFFERENT, False) is True


def start_policy(tracer_: trace.Tracer) -> tuple[Any, bool]:
    """The tracer to start LLM spans with, and whether their start attributes may go in after start.

    Attributes passed to ``start_span`` are validated one by one by the SDK; set
    right after start through :func:`set_attributes` they are not. The span ends
    up with the same attributes either way; the only difference is that a
    sampler or an ``on_start`` processor would not see them. So they are
    deferred only while the provider's sampler is one of the SDK's own (which
    never look at attributes) and every span processor is one known not to read
    them at start; any other set-up gets them at start as before. The check is
    redone only when the processors or the sampler change.
    """
    global _start_policy
    try:
        # a ProxyTracer (asked for before a provider was installed) hands over to the provider's
        real: Any = tracer_._tracer if isinstance(tracer_, trace.ProxyTracer) else tracer_  # type: ignore[attr-defined]
        processors = real.span_processor._span_processors
        sampler = real.sampler
    except AttributeError:
        return tracer_, False
    policy = _start_policy
    if policy[0] is processors and policy[1] is sampler:
        return real, policy[2]
    try:
        multi = type(real.span_processor).__name__ == "SynchronousMultiSpanProcessor"
        defer = multi and _sampler_ignores_attributes(sampler) and all(
            indifferent_to_start_attributes(p) for p in processors
        )
    except Exception:
        defer = False
    _start_policy = (processors, sampler, defer)
    return real, defer


def span_processors(provider: Any) -> tuple[Any, ...]:
    """The span processors registered on an SDK ``TracerProvider`` (empty if it is not one)."""
    active = getattr(provider, "_active_span_processor", None)
    return tuple(getattr(active, "_span_processors", ()))


def has_processor(provider: Any, kind: type) -> bool:
    """Whether ``provider`` already has a span processor of class ``kind``."""
    return any(isinstance(p, kind) for p in span_processors(provider))


def propagators_of(textmap: Any) -> list[Any]:
    """The members of a composite propagator, or ``[textmap]`` for a single one."""
    return list(getattr(textmap, "_propagators", [textmap]))


# --- context ----------------------------------------------------------------------------


def detach(token: object) -> None:
    """Detach without the OTel error log when the token was made in another context
    (a generator finished in another task, a stream closed by another thread)."""
    try:
        otel_context._RUNTIME_CONTEXT.detach(token)  # type: ignore[attr-defined,arg-type]
    except Exception:
        pass


def traced_gen(gen: Any, ctx: otel_context.Context, on_end: Callable[[BaseException | None], None]) -> Any:
    """:func:`traced_agen` for plain generators: ``ctx`` attached only while ``gen`` runs."""
    exc: BaseException | None = None
    try:
        while True:
            token = otel_context.attach(ctx)
            try:
                item = next(gen)
            except StopIteration:
                return
            finally:
                detach(token)
            yield item
    except GeneratorExit:
        token = otel_context.attach(ctx)
        try:
            gen.close()
        finally:
            detach(token)
        raise
    except BaseException as e:
        exc = e
        raise
    finally:
        on_end(exc)


async def traced_agen(
    agen: Any, ctx: otel_context.Context, on_end: Callable[[BaseException | None], None]
) -> Any:
    """Yield from ``agen`` with ``ctx`` attached only while ``agen`` runs.

    The span stays open across yields, but the caller's context is never left
    pointing at it between items (no "Failed to detach context"). A consumer
    that stops early gets the inner generator closed at once, under ``ctx``,
    rather than whenever it is collected. ``on_end`` gets the error, if any.
    """
    exc: BaseException | None = None
    try:
        while True:
            token = otel_context.attach(ctx)
            try:
                item = await agen.__anext__()
            except StopAsyncIteration:
                return
            finally:
                detach(token)
            yield item
    except GeneratorExit:
        token = otel_context.attach(ctx)
        try:
            await agen.aclose()
        finally:
            detach(token)
        raise
    except BaseException as e:
        exc = e
        raise
    finally:
        on_end(exc)


def suppress_instrumentation() -> object | None:
    """Attach a context in which OTel instrumentations record nothing (our exporter's own HTTP
    call must not be traced); returns the token to detach, or None on an API without the key."""
    key = getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", None)
    if key is None:
        return None
    return otel_context.attach(otel_context.set_value(key, True))


# --- errors and ending ------------------------------------------------------------------


def error_type(exc: BaseException) -> str:
    """``error.type`` of an exception: its own code where it has one (``TRACE_CANCELLED``), else its class."""
    code = getattr(exc, "error_type", None) or getattr(exc, "code", None)
    if isinstance(code, str) and code:
        return code
    return type(exc).__qualname__


def record_error(span: Span, exc: BaseException) -> None:
    """The exception event, an ERROR status with the message, and ``error.type`` on ``span``."""
    if not span.is_recording():
        return
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:1000]))
    span.set_attribute(semconv.ERROR_TYPE, error_type(exc))


def end_span(span: Span, exc: BaseException | None = None) -> None:
    """End a span, recording ``exc`` as its error; never raises."""
    try:
        if exc is not None and not isinstance(exc, GeneratorExit):
            record_error(span, exc)
        span.end()
    except Exception:
        logger.debug("flowscope: could not end span", exc_info=True)
