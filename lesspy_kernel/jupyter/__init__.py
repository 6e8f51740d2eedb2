"""The Jupyter layer: what lesspy adds on top of its core when it serves from a notebook.

The kernel executor and its interrupt (kernel_executor.py), where a call's output goes (celloutput.py) and the
call history behind `%lesspy calls` and `lesspy_kernel.calls()` (history.py, render.py, summaries.py). The core
(server, lanes, dispatch) imports nothing from here; this layer plugs into it through lesspy_kernel.executors
(the Executor protocol) and lesspy_kernel.hooks.
"""
