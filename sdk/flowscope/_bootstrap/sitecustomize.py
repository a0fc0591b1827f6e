"""Loaded by Python at start-up when ``flowscope-instrument`` runs a program.

Starts flowscope from environment variables, then hands over to whatever
``sitecustomize`` this one shadows, so an app's own start-up hook still runs.
"""

from __future__ import annotations


def _run() -> None:
    try:
        from flowscope.auto import initialize

        initialize()
    except Exception:  # never stop the app from starting
        import logging

        logging.getLogger("flowscope").warning("flowscope: zero-code start-up failed", exc_info=True)
    try:
        from flowscope.auto import load_shadowed_sitecustomize

        load_shadowed_sitecustomize(__file__)
    except Exception:
        import logging

        logging.getLogger("flowscope").warning("flowscope: the app's sitecustomize failed", exc_info=True)


_run()
