# The two commands: `make demo` and `make test`. Both install what they need into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Spark's Python workers must run the venv's interpreter, not python3 from PATH.
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
export SPARK_LOCAL_IP := 127.0.0.1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-fast lint eval bench clean

install: $(STAMP)

# The pinned stack (a CUDA build of torch among it) takes about 8 GB: say so before pip fails halfway.
NEEDED_GB := 9

$(STAMP): setup.py requirements.txt requirements-test.txt
	@free=$$(df -P -k . | awk 'NR==2 {print int($$4 / 1048576)}'); \
	if [ ! -e $(STAMP) ] && [ "$$free" -lt $(NEEDED_GB) ]; then \
	  echo "make: installing into $(VENV) needs about $(NEEDED_GB) GB free here; $$free GB is free (df -h .)" >&2; exit 1; fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-test.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name content-signals --display-name "content-signals" >/dev/null
	touch $@

demo: install
	$(VENV)/bin/content-signals demo

# Rules in ruff.toml; the layers of docs/design.md in .importlinter.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

test: lint
	$(PY) -m pytest

# For iteration: the unit tests, without Spark and without starting other processes, on two workers.
test-fast: lint
	$(PY) -m pytest tests/unit -m "not subprocess" -q -n 2

eval: install
	$(VENV)/bin/content-signals eval --set lakehouse=lakehouse-eval

clean:
	rm -rf lakehouse lakehouse-eval reports benchmarks/results .pytest_cache

bench: install
	$(PY) -m benchmarks.bench
