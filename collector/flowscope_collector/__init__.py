"""flowscope collector: OTLP in, ClickHouse underneath, runs, costs and state out."""

from __future__ import annotations

from .server.app import create_app
from .service import Collector
from .settings import CollectorSettings

__all__ = ["Collector", "CollectorSettings", "create_app"]
