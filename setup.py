"""Builds the optional compiled core (src/sharq_fast/_core_c.pyx) with Cython.

SHARQ_FAST_NO_EXTENSIONS=1 builds a pure-Python wheel. Otherwise a failed compile fails
the build: a wheel silently missing its extension would be slow without saying so.
"""

import os
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent
PYX = Path("src", "sharq_fast", "_core_c.pyx")


def extensions():
    if os.environ.get("SHARQ_FAST_NO_EXTENSIONS") or not (HERE / PYX).exists():
        return []
    from Cython.Build import cythonize
    from setuptools import Extension

    return cythonize(
        [Extension("sharq_fast._core_c", [str(PYX)])],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
    )


setup(ext_modules=extensions())
