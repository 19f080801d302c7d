"""Portable execution environments: spec -> lock -> content-addressed packed environment.

The pod-side half (fetch, verify, unpack, activate) imports only the standard library,
fsspec and zstandard; nothing here imports Airflow.
"""

from __future__ import annotations
