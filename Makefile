# Two entry points for a fresh machine: `make demo` and `make test`. Each builds .venv/ on first use.
PYTHON ?= python3
# The CUDA flavour of torch + NVIDIA DALI (an extra in pyproject.toml): cu13 (NVIDIA driver >= 580)
# or cu12 (driver >= 525.60). Both run on a machine without a GPU.
CUDA ?= cu13
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(CUDA)

ifeq ($(filter cu12 cu13,$(CUDA)),)
$(error CUDA must be cu12 or cu13, got '$(CUDA)')
endif
OTHER_CUDA := $(if $(filter cu12,$(CUDA)),cu13,cu12)
OTHER_DALI := $(if $(filter cu12,$(CUDA)),nvidia-dali-cuda130,nvidia-dali-cuda120)

.PHONY: demo test venv clean

# The two flavours' libraries share install paths, so switching flavour starts a fresh venv. A venv
# made before the flavour was a choice (stamp .installed) held the CUDA 12 DALI: it is swapped in place.
$(STAMP): pyproject.toml
	test ! -e $(VENV)/.installed-$(OTHER_CUDA) || rm -rf $(VENV)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip uninstall -qq -y $(OTHER_DALI)
	$(PY) -m pip install -q -e '.[test,$(CUDA)]'
	rm -f $(VENV)/.installed
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) tools/demo.py

clean:
	rm -rf runs/demo data/synthetic shards/demo
