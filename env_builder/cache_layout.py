"""Names in a node's environment cache, shared by rehydration (which reads them) and unpacking
(which must never let an archive write them)."""

from __future__ import annotations

# Written last into an extracted environment: its presence (with the right env id and sha256)
# is what makes an environment ready to use.
READY_MARKER = ".mlp-ready"
