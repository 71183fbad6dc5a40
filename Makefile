# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# On a GPU machine pick the CUDA build you want, e.g. `make test TORCH_SPEC="torch==2.13.0 --index-url ..."`.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install test test-gui demo bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

# CI runs `make test`: the linters first (ruff, and import-linter's layers contract in pyproject.toml).
test: lint
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# The napari plugin in a real window: the extra, an X server and Qt's system libraries (installed
# with apt when missing), then the GUI tests under Xvfb.
GUI_PACKAGES := xvfb xauth libgl1 libegl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 \
	libxcb-render-util0 libxcb-xinerama0 libxcb-randr0 libxcb-shape0 libxcb-xkb1
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

test-gui: $(STAMP)
	$(PY) -m pip install -q -e ".[test,gui-test]"
	@command -v xvfb-run >/dev/null || $(SUDO) apt-get install -y -q $(GUI_PACKAGES) >/dev/null 2>&1 || \
		($(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q $(GUI_PACKAGES) >/dev/null)
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m pytest tests/gui $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) -m mask2former.demo --output demo_output

bench: $(STAMP)
	$(PY) -m bench.run_all

lint: $(STAMP)
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) demo_output .pytest_cache
