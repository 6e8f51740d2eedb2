"""lesspy's one C extension: NumPy's allocator for calls that return an NdArray (lesspy_kernel/allocator.py).

Everything else about the package is in pyproject.toml. The extension is Linux only (it moves live arrays with
mremap) and optional: where it cannot be built, results are copied into the reply as before.
"""

import sys

from setuptools import Extension, setup

extensions = []
if sys.platform.startswith("linux"):
    extensions.append(Extension("lesspy_kernel._resultalloc", ["lesspy_kernel/_resultalloc.c"], optional=True))

setup(ext_modules=extensions)
