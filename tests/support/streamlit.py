"""A real ``streamlit run`` of an app on 127.0.0.1 (free port), in its own process group, always stopped
(the main job's own launcher, airflow_provider_mlp.demo.services)."""

from __future__ import annotations

from pathlib import Path

from airflow_provider_mlp.demo.services import BackgroundService, free_port, streamlit_app


class StreamlitProcess:
    def __init__(self, app: Path, log_path: Path, *, args: list[str] | None = None, env: dict[str, str] | None = None):
        self.app = app
        self.log_path = log_path
        self.args = list(args or [])
        self.env = dict(env or {})
        self.port = free_port()
        self.service: BackgroundService | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> StreamlitProcess:
        self.service = streamlit_app(str(self.app), self.log_path, args=self.args, env=self.env, port=self.port)
        self.service.start(timeout)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()

    def __enter__(self) -> StreamlitProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
