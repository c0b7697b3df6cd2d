"""Build of fastreg's compiled extensions: fastreg._digest (Cython over OpenSSL's libcrypto) and
fastreg._fsio (durable small-file writes without the GIL).

Project metadata lives in pyproject.toml; this file only declares the extension.
`pip install .`, `pip install -e .` and `python setup.py build_ext --inplace` all build it.
Set FASTREG_NO_EXTENSIONS=1 at build time for a pure-Python install (fastreg.digest then
uses its pure twin, fastreg._digest_py; the filesystem driver fastreg._fsio_py).
"""
from __future__ import annotations

import os

from setuptools import Extension, setup


def extensions() -> list[Extension]:
    if os.environ.get("FASTREG_NO_EXTENSIONS", "") == "1":
        return []
    from Cython.Build import cythonize

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
    )


# Cython's generated C and annotation page stay out of the wheel (the web page's
# fastreg/webui/index.html is package data and must stay in).
setup(ext_modules=extensions(), exclude_package_data={"fastreg": ["*.c", "_digest.html", "_fsio.html"]})
