# The two commands of the README. Both first run the idempotent installer
# (a full build from scratch on a new machine; seconds when installed). It
# keeps a supported torch and a working mmcv; INSTALL_FLAGS passes options
# to it, e.g. `make test INSTALL_FLAGS=--replace-torch` (tools/install.sh
# --help lists them and the MMREP_* variables that do the same).
PYTHON ?= python3
INSTALL_FLAGS ?=

.PHONY: install install-plan demo test test-fast

install:
	PYTHON=$(PYTHON) bash tools/install.sh $(INSTALL_FLAGS)

# What `make install` would keep and install, changing nothing.
install-plan:
	PYTHON=$(PYTHON) bash tools/install.sh --dry-run $(INSTALL_FLAGS)

demo: install
	$(PYTHON) tools/demo.py

test: install
	$(PYTHON) -m pytest tests -q

# The fast tier for development: every test but those
# marked slow (training, export, quantization, fuzzing, several processes).
# `make test` and CI run everything.
test-fast: install
	$(PYTHON) -m pytest tests -q -m "not slow"
