"""The count limits applied to an OTLP/JSON document before protobuf parses it.

Parsing JSON into protobuf costs Python work per attribute: a small gzip body
inflating to millions of tiny attributes took 19 s and over a gigabyte before
:class:`~.limits.SpanLimiter` could drop all but 256 of them. Cutting the
lists in the decoded document first bounds that work by the limits, not by
what a client sends. The cut is the limiter's own (same kept items, same
``dropped_*_count`` and the same marker attribute), so the stored result is
identical to cutting after parsing (``tests/collector/test_ingest_fairness.py``
checks both ways against each other).
"""

from __future__ import annotations

from typing import Any

from .limits import DROPPED_ATTRIBUTES, LimitReport, RequestLimits

_VALUE_LISTS = ("arrayValue", "array_value", "kvlistValue", "kvlist_value")


def _count(obj: dict[str, Any], *keys: str) -> tuple[str, int] | None:
    """The dropped-count field present in ``obj`` (or the first name) and its value; None if unusable."""
    for key in keys:
        if key in obj:
            raw = obj[key]
            if isinstance(raw, bool):
                return None
            if isinstance(raw, int):
                return key, raw
            if isinstance(raw, str) and raw.isdigit():
                return key, int(raw)
            return None  # protobuf refuses it later, with the reason
    return keys[0], 0


def _cut(owner: Any, list_keys: tuple[str, ...], keep: int, count_keys: tuple[str, ...]) -> int:
    """Cut ``owner``'s list to ``keep`` items, adding what was dropped to its count; how many were dropped."""
    if not isinstance(owner, dict):
        return 0
    for key in list_keys:
        items = owner.get(key)
        if isinstance(items, list) and len(items) > keep:
            found = _count(owner, *count_keys)
            if found is None:
                return 0
            extra = len(items) - keep
            del items[keep:]
            owner[found[0]] = found[1] + extra
            return extra
    return 0


class JSONCaps:
    """Cut one OTLP/JSON document to ``limits``, counting what was dropped into ``report``."""

    def __init__(self, limits: RequestLimits, report: LimitReport) -> None:
        self.lim = limits
        self.report = report

    def attributes(self, owner: Any) -> None:
        lim = self.lim
        if not isinstance(owner, dict):
            return
        attrs = owner.get("attributes")
        if isinstance(attrs, list) and len(attrs) > lim.max_attributes:
            keep = max(0, lim.max_attributes - 1)  # room for the marker, as SpanLimiter leaves it
            extra = _cut(owner, ("attributes",), keep, ("droppedAttributesCount", "dropped_attributes_count"))
            self.report.dropped_attributes += extra
            if extra and lim.max_attributes:
                attrs.append({"key": DROPPED_ATTRIBUTES, "value": {"stringValue": str(extra)}})
        if isinstance(attrs, list):
            for kv in attrs:
                if isinstance(kv, dict):
                    self.values(kv.get("value"))

    def values(self, value: Any) -> None:
        """Arrays and kvlists keep one item past the limit, so the limiter still sees (and counts) the cut."""
        stack = [value]
        while stack:
            v = stack.pop()
            if not isinstance(v, dict):
                continue
            for key in _VALUE_LISTS:
                inner = v.get(key)
                if isinstance(inner, dict) and isinstance(inner.get("values"), list):
                    items = inner["values"]
                    del items[self.lim.max_array_items + 1:]
                    for item in items:
                        stack.append(item.get("value") if isinstance(item, dict) and "key" in item else item)

    def request(self, doc: dict[str, Any]) -> None:
        lim = self.lim
        for rs in _items(doc, "resourceSpans", "resource_spans"):
            self.attributes(rs.get("resource"))
            for ss in _items(rs, "scopeSpans", "scope_spans"):
                self.attributes(ss.get("scope"))
                for span in _items(ss, "spans"):
                    self.attributes(span)
                    self.report.dropped_events += _cut(span, ("events",), lim.max_events,
                                                       ("droppedEventsCount", "dropped_events_count"))
                    for ev in _items(span, "events"):
                        self.attributes(ev)
                    self.report.dropped_links += _cut(span, ("links",), lim.max_links,
                                                      ("droppedLinksCount", "dropped_links_count"))
                    for link in _items(span, "links"):
                        self.attributes(link)


def _items(obj: Any, *keys: str) -> list[dict[str, Any]]:
    """The dict items of ``obj``'s list under ``keys`` (anything malformed is protobuf's to refuse)."""
    if not isinstance(obj, dict):
        return []
    for key in keys:
        val = obj.get(key)
        if isinstance(val, list):
            return [v for v in val if isinstance(v, dict)]
    return []
