"""Native build of airflow-provider-mlp: the nanoarrow-based C extension in ``native/``.

Everything declarative lives in pyproject.toml; this file only adds the C extension, whose
nanoarrow sources are fetched from the pinned sdist and verified at build time
(see native/nanoarrow_source.py).

Environment switches:
- ``MLP_NATIVE_SANITIZE=address,undefined`` builds with AddressSanitizer/UBSan (tests then
  need ``LD_PRELOAD`` of libasan; scripts/test.sh --sanitize does both).
- ``MLP_NATIVE_DEBUG=1`` builds with -O0 -g.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "native"))

import nanoarrow_source  # noqa: E402  (build-time helper beside the C sources)


class NanoarrowBuildExt(build_ext):
    """Adds nanoarrow's verified C sources to each extension before compiling."""

    def run(self) -> None:
        sources, include_dirs = nanoarrow_source.extract_sources(Path(self.build_temp))
        for ext in self.extensions:
            ext.sources = [*ext.sources, *sources]
            ext.include_dirs = [*ext.include_dirs, *include_dirs]
        super().run()


def _compile_args() -> tuple[list[str], list[str]]:
    compile_args = ["-std=c99", "-pthread", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"]
    link_args: list[str] = ["-pthread"]
    if os.environ.get("MLP_NATIVE_DEBUG") == "1":
        compile_args += ["-O0", "-g"]
    else:
        compile_args += ["-O3"]
    sanitize = os.environ.get("MLP_NATIVE_SANITIZE", "").strip()
    if sanitize:
        flags = [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
        compile_args += [*flags, "-g", "-O1"]
        link_args += flags
    return compile_args, link_args


compile_args, link_args = _compile_args()

setup(
    ext_modules=[
        Extension(
            "airflow_provider_mlp.kernels._native",
            sources=sorted(str(p.relative_to(HERE)) for p in (HERE / "native").glob("*.c")),
            include_dirs=["native"],
            define_macros=[("NANOARROW_NAMESPACE", nanoarrow_source.NANOARROW_NAMESPACE)],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
            # dlopen (zstd_library.c): in libdl before glibc 2.34, in libc itself since.
            libraries=["dl"] if sys.platform.startswith("linux") else [],
        )
    ],
    cmdclass={"build_ext": NanoarrowBuildExt},
)
