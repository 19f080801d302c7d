"""One clear line for a pod that failed: the reason, the container, the last lines of its log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _state_text(status: Any) -> str | None:
    state = getattr(status, "state", None)
    terminated = getattr(state, "terminated", None)
    if terminated is not None:
        reason = terminated.reason or "Error"
        detail = f" ({terminated.message.strip()})" if terminated.message else ""
        return f"container {status.name!r} {reason} (exit code {terminated.exit_code}){detail}"
    waiting = getattr(state, "waiting", None)
    if waiting is not None and waiting.reason not in (None, "ContainerCreating", "PodInitializing"):
        detail = f": {waiting.message.strip()}" if waiting.message else ""
        return f"container {status.name!r} stuck waiting: {waiting.reason}{detail}"
    return None


def explain_pod_failure(pod: Any, container: str = "base", last_log_lines: Sequence[str] = ()) -> str:
    """``pod ns/name failed: <why>; last log lines: ...`` from a ``V1Pod``'s status."""
    name = f"{pod.metadata.namespace}/{pod.metadata.name}" if pod is not None and pod.metadata else "(unknown)"
    status = getattr(pod, "status", None)
    reasons: list[str] = []
    if status is not None:
        if status.reason:  # Evicted, DeadlineExceeded, ...
            reasons.append(f"pod {status.reason}" + (f" ({status.message.strip()})" if status.message else ""))
        statuses = [*(status.init_container_statuses or []), *(status.container_statuses or [])]
        ordered = sorted(statuses, key=lambda s: s.name != container)
        reasons += [text for text in (_state_text(s) for s in ordered) if text]
        if not reasons and status.phase:
            reasons.append(f"phase {status.phase}")
    why = "; ".join(reasons) or "no status reported"
    tail = " | ".join(line.rstrip() for line in last_log_lines if line.strip())
    return f"pod {name} failed: {why}" + (f"; last log lines: {tail}" if tail else "")
