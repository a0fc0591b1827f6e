"""The path graph's edges: the linear frontier gives exactly the edges of the definition."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flowscope.core import views
from flowscope.core.views import SpanRecord


def by_definition(nodes: list[SpanRecord]) -> list[tuple[int, int]]:
    """A node follows every finished node that no other finished node started after (the old, cubic code)."""
    edges: list[tuple[int, int]] = []
    for i, n in enumerate(nodes):
        done = [j for j in range(i) if nodes[j].end_ns <= n.start_ns]
        if not done:
            edges.append((-1, i))
            continue
        edges.extend((j, i) for j in done if not any(nodes[k].start_ns >= nodes[j].end_ns for k in done))
    return edges


node = st.tuples(st.integers(0, 60), st.sampled_from([0, 1, 2, 5, 10, 30]), st.integers(0, 9))


@settings(max_examples=400, deadline=None)
@given(st.lists(node, min_size=1, max_size=14))
def test_edges_match_the_definition(timings: list[tuple[int, int, int]]) -> None:
    spans = [SpanRecord(run_id="r", trace_id="t", span_id=f"{i:016x}", parent_span_id="", name=f"n{i}",
                        start_ns=start, duration_ns=dur, kind="node", node_step=step)
             for i, (start, dur, step) in enumerate(timings)]
    nodes, edges = views.path_edges(spans)
    assert edges == by_definition(nodes)


def test_a_sequence_is_a_chain_and_a_fan_out_joins() -> None:
    def n(i: int, start: int, end: int) -> SpanRecord:
        return SpanRecord(run_id="r", trace_id="t", span_id=f"{i:016x}", parent_span_id="", name=f"n{i}",
                          start_ns=start, duration_ns=end - start, kind="node", node_step=i)

    _, chain = views.path_edges([n(0, 0, 10), n(1, 10, 20), n(2, 20, 30)])
    assert chain == [(-1, 0), (0, 1), (1, 2)]
    _, fan = views.path_edges([n(0, 0, 10), n(1, 11, 20), n(2, 11, 25), n(3, 30, 40)])
    assert fan == [(-1, 0), (0, 1), (0, 2), (1, 3), (2, 3)]
