"""Holds the ``sitecustomize`` that ``flowscope-instrument`` puts first on ``PYTHONPATH``.

A package (not a bare folder) only so that it ships in the wheel.
"""
