# The two commands of the README. Both first run the idempotent installer
# (a full build from scratch on a new machine; seconds when installed).
PYTHON ?= python3

.PHONY: install demo test

install:
	PYTHON=$(PYTHON) bash tools/install.sh

demo: install
	$(PYTHON) tools/demo.py

test: install
	$(PYTHON) -m pytest tests -q
