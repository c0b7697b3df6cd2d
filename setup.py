"""Build of fastreg's compiled extensions: fastreg._digest (Cython over OpenSSL's libcrypto) and
fastreg._fsio (durable small-file writes without the GIL).

Project metadata lives in pyproject.toml; this file only declares the extensions.
`pip install .`, `pip wheel .`, `pip install -e .` and `python setup.py build_ext --inplace` all
build them.  They are optional, as in the Python packages with C speedups: when one cannot be
built (no C compiler, no OpenSSL headers, no Python headers) the install goes on with its
pure-Python twin (fastreg._digest_py, fastreg._fsio_py), and the build prints one warning saying
which engines were left out and why; `fastreg version` says which engine runs.
Set FASTREG_NO_EXTENSIONS=1 at build time for a pure-Python install without trying;
set FASTREG_REQUIRE_EXTENSIONS=1 to make a failed extension build fail the install (for wheels
meant for distribution).
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# What a compiler that is missing or fails raises (setuptools' vendored distutils).
from setuptools.errors import CCompilerError, ExecError, PlatformError

BUILD_ERRORS = (CCompilerError, ExecError, PlatformError, OSError)


def warn(message: str) -> None:
    bar = "*" * 78
    print(f"\n{bar}\nWARNING: {message}\n{bar}\n", file=sys.stderr, flush=True)


def required() -> bool:
    return os.environ.get("FASTREG_REQUIRE_EXTENSIONS", "") == "1"


class optional_build_ext(build_ext):
    """build_ext that leaves out an extension it cannot build and warns once for all of them."""

    def run(self) -> None:
        self.failed: list[tuple[str, str]] = []
        try:
            super().run()
        except BUILD_ERRORS as exc:          # e.g. no compiler at all: nothing was built
            if required():
                raise
            self.failed = [(ext.name, first_line(exc)) for ext in self.extensions]
        if self.failed:
            names = ", ".join(name for name, _ in self.failed)
            reasons = "; ".join(f"{name}: {reason}" for name, reason in self.failed)
            warn(f"fastreg's compiled engines could not be built ({names}): {reasons}.\n"
                 "fastreg is installed with its pure-Python engines instead: the same behaviour, "
                 "slower hashing and file writes.\nFor the compiled engines install a C compiler and "
                 "the OpenSSL and Python headers (Debian: apt-get install gcc libssl-dev python3-dev) "
                 "and install fastreg again.\nSet FASTREG_NO_EXTENSIONS=1 to install the pure engines "
                 "without trying.")

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except BUILD_ERRORS as exc:
            if required():
                raise
            self.failed.append((ext.name, first_line(exc)))


def first_line(exc: BaseException) -> str:
    """The error in one short line: a compiler command is named by its program only."""
    text = str(exc).strip() or type(exc).__name__
    text = re.sub(r"Command '\[('[^']*')[^\]]*\]'", r"command \1", text.splitlines()[0])
    return text[:200]


def extensions() -> list[Extension]:
    if os.environ.get("FASTREG_NO_EXTENSIONS", "") == "1":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if required():
            raise
        warn("Cython is not installed, so fastreg's compiled engines are not built; fastreg is "
             "installed with its pure-Python engines (pip installs Cython itself unless "
             "--no-build-isolation is given).")
        return []

    digest = Extension(
        "fastreg._digest",
        ["fastreg/_digest.pyx"],
        libraries=["crypto"],
        extra_compile_args=["-O2", "-Wno-deprecated-declarations"],
    )
    fsio = Extension("fastreg._fsio", ["fastreg/_fsio.pyx"], extra_compile_args=["-O2"])
    return cythonize(
        [digest, fsio],
        compiler_directives={"language_level": 3, "boundscheck": False, "wraparound": False},
        quiet=True,
    )


# Cython's generated C and annotation page stay out of the wheel (the web page's
# fastreg/webui/index.html is package data and must stay in).
setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": optional_build_ext},
    exclude_package_data={"fastreg": ["*.c", "_digest.html", "_fsio.html"]},
)
