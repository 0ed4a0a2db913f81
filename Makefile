# Every target installs what it needs first, so each works on a fresh clone.
VENV    := .venv
PY      := $(VENV)/bin/python
WEBUI   := mcpproxy/webui_dist/index.html
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST  := $(VENV)/bin/pytest -p no:cacheprovider
# CPython 3.12 when the machine has it (pyenv's included), else python3: its immortal objects keep each forked
# TokenActor ~1 MB smaller than on 3.11, and smaller than on 3.13 (docs/benchmarks.md, "Memory of one TokenActor").
PYTHON  := $(shell for p in python3.12 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3 2>/dev/null | sort -rV); do $$p -c '' >/dev/null 2>&1 && { echo $$p; exit; }; done; echo python3)
PYVER   := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
STAMP   := $(VENV)/.installed-$(PYVER)

.PHONY: install run test lint unit e2e fuzz bench bench-1000 bench-soak demo chromium keyring clean

install: $(STAMP) $(WEBUI)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv --clear $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

$(WEBUI): $(shell find webui/src -type f 2>/dev/null) webui/package.json webui/package-lock.json webui/index.html
	cd webui && npm ci --no-audit --no-fund --loglevel=error && npm run build

# Debian's Chromium for the browser tests (Playwright cannot download browsers here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# A real Secret Service for the keyring tests (gnome-keyring-daemon under dbus-run-session).
keyring:
	@command -v gnome-keyring-daemon >/dev/null 2>&1 && command -v dbus-run-session >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	  gnome-keyring dbus-daemon >/dev/null; }

run: install
	$(VENV)/bin/mcpproxy serve

lint: $(STAMP)
	$(VENV)/bin/ruff check mcpproxy actors tests e2e
	$(VENV)/bin/mypy

unit: install keyring
	$(PYTEST) tests

e2e: install chromium
	$(PYTEST) e2e

# Three workers: most tests wait on real timers and servers, so they overlap well on two cores.
test: install chromium keyring lint
	$(PYTEST) -n 3 tests e2e

fuzz: install
	$(PYTEST) tests/security/test_fuzz.py

bench: install
	$(PY) -m bench

# One service with 1,000 OAuth servers (about 10 GB of RAM, 6–15 minutes); writes its own section of docs/benchmarks.md.
bench-1000: install
	$(PY) -m bench.thousand

# Five servers refreshing every 0.8 s for ten minutes: does a TokenActor's memory level off? Writes its own section.
bench-soak: install
	$(PY) -m bench.soak

demo: install
	$(PY) -m tests.demo

clean:
	rm -rf $(VENV) mcpproxy/webui_dist webui/node_modules
