"""Decoding OTLP/HTTP trace requests, with the limits and errors the spec asks for.

Both encodings end up as one ``ExportTraceServiceRequest`` protobuf, so the
rest of the collector has a single input type. OTLP/JSON differs from
protobuf's canonical JSON mapping (hex trace/span ids instead of base64), and
that difference is handled here.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import re
import zlib
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from .jsoncaps import JSONCaps
from .limits import LimitReport, RequestLimits

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class OTLPError(Exception):
    """A request we refuse, with the HTTP status and a reason a person can act on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def accepted_media(content_type: str | None) -> str:
    """``PROTOBUF`` or ``JSON`` for a content type OTLP defines; 415 for any other."""
    media = media_type(content_type)
    if media not in (PROTOBUF, JSON):
        raise OTLPError(415, f"unsupported Content-Type {content_type!r}; use {PROTOBUF} or {JSON}")
    return media


# Past this much output the inflation ratio is checked: small bodies may compress very well.
RATIO_FREE_BYTES = 1024 * 1024


def decompress(body: bytes, encoding: str | None, max_bytes: int, max_ratio: int = 0) -> bytes:
    """Inflate gzip/deflate bodies in bounded steps, so a zip bomb is refused
    after ``max_bytes`` of output instead of after filling memory.

    With ``max_ratio``, output past 1 MiB may be at most ``max_ratio`` times
    the body: real OTLP compresses 5-30 times, while a 178 kB body inflating
    to 60 MiB of tiny attributes is built to cost the decoder (413, early).
    """
    limit = max_bytes
    if max_ratio > 0:
        max_bytes = min(max_bytes, max(RATIO_FREE_BYTES, len(body) * max_ratio))
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc not in ("gzip", "deflate", "x-gzip"):
        raise OTLPError(415, f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    wbits = 16 + zlib.MAX_WBITS if enc in ("gzip", "x-gzip") else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    out = bytearray()
    try:
        chunk = inflater.decompress(body, max_bytes + 1 - len(out))
        out += chunk
        while inflater.unconsumed_tail and len(out) <= max_bytes:
            out += inflater.decompress(inflater.unconsumed_tail, max_bytes + 1 - len(out))
        if len(out) > max_bytes:
            raise _too_large(body, max_bytes, limit)
        out += inflater.flush()
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise OTLPError(400, f"body is not valid {enc}: {exc}") from exc
    if not inflater.eof:
        raise OTLPError(400, f"truncated {enc} body")
    if len(out) > max_bytes:
        raise _too_large(body, max_bytes, limit)
    return bytes(out)


def _too_large(body: bytes, max_bytes: int, limit: int) -> OTLPError:
    if max_bytes < limit:
        return OTLPError(413, f"decompressed body exceeds {max_bytes} bytes, the inflation limit for "
                              f"{len(body)} compressed bytes (FLOWSCOPE_MAX_INFLATION_RATIO)")
    return OTLPError(413, f"decompressed body exceeds the {max_bytes} byte limit")


def _hex_to_b64(value: Any, field: str, size: int) -> str:
    if not isinstance(value, str):
        raise OTLPError(400, f"{field} must be a hex string")
    if value == "":
        return ""
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise OTLPError(400, f"{field} {value!r} is not hex (OTLP/JSON encodes ids as hex)") from None
    if len(raw) != size:
        raise OTLPError(400, f"{field} {value!r} must be {size * 2} hex digits")
    return base64.b64encode(raw).decode()


def _fix_ids(doc: dict[str, Any]) -> None:
    for rs in _list(doc, "resourceSpans", "resource_spans"):
        for ss in _list(rs, "scopeSpans", "scope_spans"):
            for span in _list(ss, "spans"):
                for key, size in (("traceId", 16), ("trace_id", 16), ("spanId", 8), ("span_id", 8),
                                  ("parentSpanId", 8), ("parent_span_id", 8)):
                    if key in span:
                        span[key] = _hex_to_b64(span[key], key, size)
                for link in _list(span, "links"):
                    for key, size in (("traceId", 16), ("trace_id", 16), ("spanId", 8), ("span_id", 8)):
                        if key in link:
                            link[key] = _hex_to_b64(link[key], f"link {key}", size)


# protobuf's JSON mapping takes standard or URL-safe base64, padded or not.
_BASE64 = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}")


def _check_bytes_values(node: Any) -> None:
    """400 for an AnyValue ``bytesValue`` that is not base64.

    protobuf's JSON parser decodes leniently: characters outside the alphabet
    are skipped, so ``"bytesValue": "not base64!"`` was stored as other bytes
    (or none) and the client never heard of it.
    """
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in ("bytesValue", "bytes_value"):
                    if not isinstance(value, str) or not _BASE64.fullmatch(value) \
                            or len(value.rstrip("=")) % 4 == 1:
                        raise OTLPError(400, f"bytesValue {str(value)[:60]!r} is not base64 "
                                             "(OTLP/JSON encodes bytes as base64)")
                elif isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, (dict, list)))


def _list(obj: Any, *keys: str) -> list[Any]:
    if not isinstance(obj, dict):
        raise OTLPError(400, "expected a JSON object")
    for key in keys:
        if key in obj:
            val = obj[key]
            if val is None:
                return []
            if not isinstance(val, list):
                raise OTLPError(400, f"{key} must be a JSON array")
            return val
    return []


def parse(body: bytes, content_type: str, limits: RequestLimits | None = None,
          report: LimitReport | None = None) -> ExportTraceServiceRequest:
    """The request in ``body``; ``content_type`` is what :func:`accepted_media` returned.

    With ``limits``, OTLP/JSON is cut to the count limits before protobuf
    parses it (what was dropped is added to ``report``): the work of parsing
    is then bounded by the limits, not by the request.
    """
    req = ExportTraceServiceRequest()
    if content_type == PROTOBUF:
        try:
            req.ParseFromString(body)
        except DecodeError as exc:
            raise OTLPError(400, f"body is not a valid OTLP ExportTraceServiceRequest protobuf: {exc}") from exc
        # Fields this collector does not know are kept by the parser and written
        # back out with each span; ClickHouse's Protobuf input skips most of them
        # but refuses some (wire type *group*), so such a request would be
        # acknowledged here and then set aside at insert: lost. OTLP tells
        # receivers to ignore unknown fields, so they are dropped before the
        # request goes any further, whatever message they hide in.
        req.DiscardUnknownFields()
        return req
    if content_type == JSON:
        try:
            doc = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError as exc:
            raise OTLPError(400, f"body is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise OTLPError(400, "OTLP/JSON body must be a JSON object with resourceSpans")
        _fix_ids(doc)
        if limits is not None:
            JSONCaps(limits, report if report is not None else LimitReport()).request(doc)
        if b"bytesValue" in body or b"bytes_value" in body:
            _check_bytes_values(doc)
        try:
            json_format.ParseDict(doc, req, ignore_unknown_fields=True)
        except (json_format.ParseError, binascii.Error, ValueError) as exc:
            raise OTLPError(400, f"body is not a valid OTLP/JSON ExportTraceServiceRequest: {exc}") from exc
        return req
    raise ValueError(f"not an OTLP media type: {content_type!r} (accepted_media checks the request's)")


def count_spans(req: ExportTraceServiceRequest, max_spans: int) -> int:
    """Count spans; 413 past ``max_spans``."""
    count = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
    if count > max_spans:
        raise OTLPError(413, f"request has {count} spans; the limit is {max_spans} per request")
    return count


def check_span(span: Any) -> None:
    """Reject a span the store could not represent faithfully (ids of the wrong length)."""
    if len(span.trace_id) != 16 or len(span.span_id) != 8:
        raise OTLPError(400, f"span {span.name!r} has an invalid trace_id or span_id length")
    if span.parent_span_id and len(span.parent_span_id) != 8:
        raise OTLPError(400, f"span {span.name!r} has an invalid parent_span_id length")


def validate(req: ExportTraceServiceRequest, max_spans: int) -> int:
    """Count spans and reject requests the store could not represent faithfully.

    Ingest does the same per span inside :meth:`.rows.RowBuilder.build`, which
    reads the ids of nearly every span off its bytes instead.
    """
    count = count_spans(req, max_spans)
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                check_span(span)
    return count


def response(content_type: str, rejected: int = 0, message: str = "") -> bytes:
    resp = ExportTraceServiceResponse()
    if rejected or message:
        resp.partial_success.rejected_spans = rejected
        resp.partial_success.error_message = message
    if content_type == JSON:
        return json_format.MessageToJson(resp, indent=None).encode() if (rejected or message) else b"{}"
    return resp.SerializeToString()
