"""lesspy's C extensions: NumPy's allocator for calls that return an NdArray (lesspy_kernel/allocator.py), and the
SIGBUS guard of the lane mappings (lesspy_kernel/transport/mapping.py).

Everything else about the package is in pyproject.toml. The extensions are Linux only (the allocator moves live
arrays with mremap) and optional: where they cannot be built (or NumPy is not there to build against), results are
copied into the reply, and a client that cuts its lane files can kill the server with SIGBUS.
"""

import sys

from setuptools import Extension, setup

extensions = []
if sys.platform.startswith("linux"):
    try:
        import numpy        # pyproject.toml's [build-system] brings it; a build without isolation may lack it
    except ImportError:
        numpy = None
    if numpy is not None:
        # built against NumPy's headers: import_array checks the running NumPy's ABI and C-API version
        extensions.append(Extension("lesspy_kernel._resultalloc", ["lesspy_kernel/_resultalloc.c"],
                                    include_dirs=[numpy.get_include()], optional=True))
    # a SIGBUS on a lane mapping (a client cut its file) fails that lane, not the process (transport/mapping.py)
    extensions.append(Extension("lesspy_kernel._sigbusguard", ["lesspy_kernel/_sigbusguard.c"], optional=True))

setup(ext_modules=extensions)
