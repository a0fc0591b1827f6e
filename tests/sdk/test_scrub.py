"""The export-time credential scrubber: the shortest secrets it knows are still caught."""

from __future__ import annotations

import pytest

from flowscope._export import REDACTED, scrub_value


@pytest.mark.parametrize("secret", ["Bearer abcdefgh", "xoxb-0123456789", "sk-" + "a" * 16, "AKIA" + "A" * 16])
def test_shortest_secrets_are_scrubbed(secret: str) -> None:
    value, changed = scrub_value(secret)
    assert changed and REDACTED in value and secret not in value


@pytest.mark.parametrize("plain", ["gpt-4o-mini", "Bearer abc", "chat gpt-4o", ""])
def test_ordinary_values_are_left_alone(plain: str) -> None:
    assert scrub_value(plain) == (plain, False)
