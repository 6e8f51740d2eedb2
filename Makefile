# make demo   - a C# app calling Python: headless (Initialize<T>) and a live notebook kernel (Connect<T>)
# make test   - the test suite (real kernels, real Mono C# programs), without the long `stress` tests
# make stress - only the tests marked `stress` (long concurrency and load runs)
# make adversarial - the trust suite of docs/SECURITY.md, short and long forms
# make bench  - each call's time next to its floor measured in the same run
# make dist   - the wheel and sdist in dist/ (python -m build); make typecheck - mypy on lesspy_kernel
# All install what is missing: Mono (Debian's mono-devel, via apt-get) and the package into .venv.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
IPK6 := .venv-ipk6
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

.PHONY: demo test stress adversarial deps mono cc tools venv venv-ipk6 build bench dist typecheck clean

deps: mono cc tools venv

mono:
	@command -v mcs >/dev/null 2>&1 && command -v mono >/dev/null 2>&1 || { \
	  echo "Installing Mono (mono-devel) from Debian..."; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq mono-devel >/dev/null; }

# openssl (a self-signed certificate for the TLS tests) and iproute2's `ip` (the other-host tests' network
# namespaces); without them those tests skip and say why. binutils (as, ld): Mono's AOT images (build.sh's
# LessPy.dll.so, the full-AOT test of generated clients, tests/test_stub_client.py)
tools:
	@command -v openssl >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 && command -v as >/dev/null 2>&1 && command -v ld >/dev/null 2>&1 || { \
	  echo "Installing openssl, iproute2 and binutils from Debian..."; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq openssl iproute2 binutils >/dev/null; }

# a C compiler and Python's headers build lesspy_kernel/_resultalloc.c (allocator.py) on Linux
cc:
	@command -v cc >/dev/null 2>&1 || { \
	  echo "Installing a C compiler (gcc) from Debian..."; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq gcc libc6-dev >/dev/null; }
	@$(PYTHON) -c "import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" || { \
	  echo "Installing Python's headers (python3-dev) from Debian..."; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-dev >/dev/null; }

$(PY): pyproject.toml setup.py lesspy_kernel/_resultalloc.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,ci]"
	@# an editable install skips the wheel's data files: enable the Jupyter Server extension as the wheel does
	install -D -m 644 jupyter-config/jupyter_server_config.d/lesspy_kernel.json \
	  $(VENV)/etc/jupyter/jupyter_server_config.d/lesspy_kernel.json
	@touch $(PY)

venv: $(PY)

$(IPK6)/bin/python: pyproject.toml
	$(PYTHON) -m venv $(IPK6)
	$(IPK6)/bin/python -m pip install -q "ipykernel>=6.29,<7" numpy -e .
	@touch $(IPK6)/bin/python

venv-ipk6: $(IPK6)/bin/python

build: deps
	bash csharp/build.sh csharp/bin

demo: build
	cd csharp/bin && LESSPY_PYTHON_VENV=$(abspath $(VENV)) mono LessPyDemo.exe $(abspath csharp/Demo/exporting_module.py)
	$(PY) notebooks/demo.py

test: deps venv-ipk6
	$(PY) -m pytest -q -m "not stress" tests

stress: deps venv-ipk6
	@$(PY) -m pytest -q -m stress tests; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make stress: no test is marked stress yet"; exit 0; fi; exit $$rc

# the adversarial suite (docs/SECURITY.md): short and long forms of every trust test, with a second user as root
adversarial: deps venv-ipk6
	$(PY) -m pytest -q -m "stress or not stress" tests/test_other_user.py tests/test_trust_*.py

bench: build
	$(PY) benchmarks/run.py

dist: venv
	rm -rf dist
	$(PY) -m build -o dist .

typecheck: venv
	$(PY) -m mypy

clean:
	rm -rf csharp/bin dist $(VENV) $(IPK6) .pytest_cache .mypy_cache
