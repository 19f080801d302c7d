"""Resolution: an ``EnvSpec`` becomes a ``Lock`` (exact versions and hashes), whose hash is the env id."""

from __future__ import annotations

import os
import platform as platform_module
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from env_builder.errors import BuildError, ResolutionError
from env_builder.lock import Lock, parse_pins
from env_builder.spec import EnvSpec

# uv knows manylinux targets from 2_17 to 2_40; a newer glibc still runs 2_40 wheels.
_MANYLINUX_RANGE = (17, 40)


def find_uv() -> str:
    """The uv executable: the one shipped by the ``uv`` package, else the first on PATH."""
    try:
        import uv

        return str(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if not found:
            raise BuildError("uv is not installed: install the 'uv' package (pip install uv)") from None
        return found


def uv_env() -> dict[str, str]:
    """Environment for uv subprocesses: never download interpreters, never read a project's uv config."""
    env = dict(os.environ)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["UV_NO_CONFIG"] = "1"
    env.pop("VIRTUAL_ENV", None)
    return env


def run_uv(args: Sequence[str], *, cwd: str | Path | None = None, what: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([find_uv(), *args], cwd=cwd, env=uv_env(), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip()
        raise BuildError(f"{what} failed (uv {args[0]} {args[1] if len(args) > 1 else ''}): {message}")
    return proc


def host_platform() -> str:
    """uv's ``--python-platform`` name for this machine (manylinux at the host's glibc on Linux)."""
    machine = platform_module.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    system = platform_module.system()
    if system == "Linux":
        libc, version = platform_module.libc_ver()
        if libc == "glibc" and version:
            minor = int(version.split(".")[1])
            minor = max(_MANYLINUX_RANGE[0], min(_MANYLINUX_RANGE[1], minor))
            return f"{machine}-manylinux_2_{minor}"
        return f"{machine}-unknown-linux-musl" if libc != "glibc" else f"{machine}-unknown-linux-gnu"
    if system == "Darwin":
        return f"{machine}-apple-darwin"
    raise ResolutionError(f"cannot name a uv target platform for {system}/{machine}; pass EnvSpec(platform=...)")


def _explain_uv_failure(spec: EnvSpec, message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    detail = " ".join(line for line in lines if not line.startswith("hint:")) or message
    names = [req for req in spec.pip if req.split("[")[0].split("=")[0].split("<")[0].split(">")[0] in detail]
    named = f" (the requirements at fault: {', '.join(names)})" if names else ""
    return f"cannot resolve pip requirements {list(spec.pip)} for Python {spec.python}{named}: {detail}"


def resolve_pip(spec: EnvSpec, *, target_platform: str | None = None) -> Lock:
    """Resolve the spec's pip requirements with ``uv pip compile`` for its Python version and platform."""
    target = target_platform or spec.platform or host_platform()
    with tempfile.TemporaryDirectory(prefix="mlp-env-resolve-") as tmp:
        requirements_in = Path(tmp, "requirements.in")
        requirements_in.write_text("".join(f"{req}\n" for req in spec.pip))
        args = [
            "pip",
            "compile",
            str(requirements_in),
            "--python-version",
            spec.python,
            "--python-platform",
            target,
            "--no-header",
            "--no-annotate",
            "--generate-hashes",
            "--quiet",
            "--output-file",
            str(Path(tmp, "requirements.txt")),
        ]
        try:
            run_uv(args, cwd=tmp, what="resolution")
        except BuildError as exc:
            raise ResolutionError(_explain_uv_failure(spec, str(exc).split(": ", 1)[-1])) from None
        text = Path(tmp, "requirements.txt").read_text()
    return Lock(kind="pip", python=spec.python, platform=target, requirements=text, packages=parse_pins(text))


def resolve(spec: EnvSpec, *, target_platform: str | None = None) -> Lock:
    """Lock a spec: pip specs with uv; conda specs with the conda solver (py-rattler), then uv for pip extras."""
    if spec.kind == "conda":
        from env_builder.conda import resolve_conda

        return resolve_conda(spec, target_platform=target_platform)
    return resolve_pip(spec, target_platform=target_platform)
