# make demo: set up what is missing, then run the offline demo through DVC.
# make test: set up what is missing, then run the test suite.
VENV ?= .venv
PYTHON ?= python3
# Installed before the package, so pip never swaps in another multi-GB torch build.
TORCH ?= torch==2.14.1 torchvision==0.29.1
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
FASHION_MNIST := /usr/share/datasets/fashion-mnist
DEMO := -S data.name=fashion-mnist -S data.limit_per_class=100 -S model.name=ViT-B/32 \
        -S model.weights=random -S C=auto

.PHONY: setup demo test fashion-mnist

setup: $(VENV)/.installed fashion-mnist

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

# Debian's dataset-fashion-mnist package: the offline data of the demo and the tests.
fashion-mnist:
	@if [ ! -d $(FASHION_MNIST) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	  else echo "note: $(FASHION_MNIST) is missing; as root on Debian: apt-get install dataset-fashion-mnist"; fi; \
	fi

demo: setup
	dvc exp run $(DEMO)
	@echo
	@$(BIN)/python -c "from clipprobe.report import compare; print(compare.summary())"
	@echo "(untrained model: its text tower knows no class names, so zero-shot is near chance, 10%)"
	@echo "metrics (numbers): metrics/*.json; records (every metric, interval, notes): results/*.json; plots: dvc plots show; all runs: dvc exp show"
	@echo "params.yaml now holds the demo configuration; git checkout params.yaml returns to the default"

test: setup
	$(BIN)/python -m pytest -q
