"""Attribute values as the strings ``otel_traces`` stores.

Values are stringified the way the OpenTelemetry Collector ClickHouse exporter
does it (``pcommon.Value.AsString``), so rows are indistinguishable whichever
of the two wrote them.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def _native(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which == "bool_value":
        return v.bool_value
    if which == "int_value":
        return v.int_value
    if which == "double_value":
        return v.double_value
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    if which == "array_value":
        return [_native(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _native(kv.value) for kv in v.kvlist_value.values}
    return None


def _float_str(d: float) -> str:
    if d != d:  # NaN: spelled as the OTel Collector exporter spells it (Go)
        return "NaN"
    if d in (math.inf, -math.inf):
        return "+Inf" if d > 0 else "-Inf"
    if d == int(d) and abs(d) < 1e16:
        return str(int(d)) if d != 0 or str(d)[0] != "-" else "0"
    return repr(d)


def value_str(v: AnyValue) -> str:
    which = v.WhichOneof("value")
    if which == "string_value":
        return v.string_value
    if which == "int_value":
        return str(v.int_value)
    if which == "bool_value":
        return "true" if v.bool_value else "false"
    if which == "double_value":
        return _float_str(v.double_value)
    if which == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    if which is None:
        return ""
    return json.dumps(_native(v), separators=(",", ":"), ensure_ascii=False)
