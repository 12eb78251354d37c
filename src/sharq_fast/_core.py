"""Picks the core: the compiled ``_core_c`` unless SHARQ_FAST_NO_EXTENSIONS is set, the
interpreter is not CPython, or the extension was not built; then the pure ``_core_py``."""

import os
import platform

from ._constants import NO_EXTENSIONS_ENV

USE_EXTENSIONS = False
if not os.environ.get(NO_EXTENSIONS_ENV) and platform.python_implementation() == "CPython":
    try:
        from . import _core_c as core
    except ImportError:
        from . import _core_py as core
    else:
        USE_EXTENSIONS = True
else:
    from . import _core_py as core

__all__ = ["USE_EXTENSIONS", "core"]
