# Every target creates .venv and installs the project into it when needed.
VENV       ?= .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
TORCH_PIN  ?= torch==2.14.1 torchvision==0.29.1
EXPERIMENT ?= sin_mlp
PYTEST_ARGS ?=
# `make test` and `make test-fast` spread the tests over this many pytest-xdist workers (0: one process;
# auto: one per core)
TEST_WORKERS ?= 2

.PHONY: install train test test-fast bench lint tensorboard clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[dev,results,tracking,postgres,stream,timm]"
	touch $(STAMP)

train: $(STAMP)
	$(PY) -m experiments fit -c experiments/$(EXPERIMENT).yaml

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) -m "not slow and not server and not process" $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks all --write BENCHMARKS.md

lint: $(STAMP)
	$(PY) -m ruff check .

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir lightning_logs

clean:
	rm -rf lightning_logs/*/ .pytest_cache
