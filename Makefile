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

.PHONY: install system-packages demo test test-fast lint eval bench clean dist dist-env

install: system-packages $(STAMP)

# Debian packages some capabilities need (the monitoring dashboard's test renders it in a headless
# browser), installed with apt when missing and apt can (as root); otherwise say what is missing.
APT_PACKAGES := chromium-headless-shell
# The bench's scale step cuts its corpora from Tux Paint's stamps too (benchmarks/README.md, Scale).
BENCH_APT_PACKAGES := tuxpaint-stamps-default
SCALE_PHOTOS := /usr/share/tuxpaint/stamps

# $(call apt-install,PACKAGES,WHAT GOES WITHOUT THEM): the Debian packages not installed yet, with apt-get.
define apt-install
@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
if [ -n "$$missing" ]; then \
  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
    echo "make: installing $$missing with apt-get"; \
    (apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || \
     (apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing >/dev/null)) || \
    echo "make: apt-get could not install $$missing; $(2)" >&2; \
  else echo "make: $$missing not installed (needs apt-get as root); $(2)" >&2; fi; fi
endef

system-packages:
	$(call apt-install,$(APT_PACKAGES),the tests that need it are skipped)

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

# The unit tests run on two workers (each is single-threaded Python: both cores busy), then the
# tests that start Spark or other processes one at a time (each of those keeps both cores busy).
test: lint
	$(PY) -m pytest tests/unit -n 2; units=$$?; $(PY) -m pytest --ignore=tests/unit; rest=$$?; \
	if [ $$units -ne 0 ]; then exit $$units; fi; exit $$rest

# For iteration: the unit tests, without Spark and without starting other processes, on two workers.
test-fast: lint
	$(PY) -m pytest tests/unit -m "not subprocess" -q -n 2

eval: install
	$(VENV)/bin/content-signals eval --set lakehouse=lakehouse-eval

clean:
	rm -rf lakehouse lakehouse-eval reports benchmarks/results .pytest_cache build dist

# The code for spark-submit (README, Running on a cluster): a wheel to pip install (code and the
# conf/*.yaml profiles), and the same archive as a .zip for --py-files: Spark puts only .zip, .egg
# and .jar py-files on the executors' Python path, and a pure-Python wheel is a zip.
DIST ?= dist
VERSION := $(shell sed -n 's/^ *version="\(.*\)",$$/\1/p' setup.py)
WHEEL := $(DIST)/content_signals-$(VERSION)-py3-none-any.whl

dist: $(if $(wildcard $(PY)),,install)
	rm -rf build $(WHEEL) $(DIST)/content_signals-$(VERSION).zip
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir $(DIST) .
	cp $(WHEEL) $(DIST)/content_signals-$(VERSION).zip

# For executors with nothing installed: the whole environment packed (about 8 GB with torch's CUDA
# libraries; never built by the tests). venv-pack keeps the interpreter a link, so the executors need
# Python 3.11 at the path it has here. Then: spark-submit --archives dist/env.tar.gz#env
#   --conf spark.pyspark.python=./env/bin/python ...
dist-env: dist
	rm -rf build/env $(DIST)/env.tar.gz
	$(PYTHON) -m venv build/env
	build/env/bin/python -m pip install --quiet -r requirements.txt
	build/env/bin/python -m pip install --quiet --no-deps $(WHEEL)
	$(PY) -m pip install --quiet venv-pack
	$(PY) -m venv_pack --prefix build/env --output $(DIST)/env.tar.gz

# BENCH_ARGS: more options of benchmarks/bench.py, e.g. its steps alone (benchmarks/README.md).
bench: install
	$(call apt-install,$(BENCH_APT_PACKAGES),the scale step's corpora are cut from the wheels' photos only)
	$(PY) -m benchmarks.bench $$([ -d $(SCALE_PHOTOS) ] && echo --scale-photos $(SCALE_PHOTOS)) $(BENCH_ARGS)
