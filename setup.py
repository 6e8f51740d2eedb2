"""lesspy's C extensions: NumPy's allocator for calls that return an NdArray (lesspy_kernel/allocator.py), and the
SIGBUS guard of the lane mappings (lesspy_kernel/mapping.py).

Everything else about the package is in pyproject.toml. The extensions are Linux only (the allocator moves live
arrays with mremap) and optional: where they cannot be built, results are copied into the reply as before, and a
client that cuts its lane files can kill the server with SIGBUS as before.
"""

import sys

from setuptools import Extension, setup

extensions = []
if sys.platform.startswith("linux"):
    extensions.append(Extension("lesspy_kernel._resultalloc", ["lesspy_kernel/_resultalloc.c"], optional=True))
    # a SIGBUS on a lane mapping (a client cut its file) fails that lane, not the process (mapping.py)
    extensions.append(Extension("lesspy_kernel._sigbusguard", ["lesspy_kernel/_sigbusguard.c"], optional=True))

setup(ext_modules=extensions)
