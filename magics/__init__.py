"""The %lesspy magics, installed as `lesspy_kernel.magics`; `%load_ext lesspy_kernel` registers them."""

from .lesspy_magics import LessPyMagics, ServerStatus, load_ipython_extension, unload_ipython_extension

__all__ = ["LessPyMagics", "ServerStatus", "load_ipython_extension", "unload_ipython_extension"]
