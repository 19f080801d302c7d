"""`mlp demo`: generated sample data and the runner of the main job. Not part of the runtime library."""

from __future__ import annotations
