# One-command set-up, build and test. `make test` on a machine with only Python:
# creates .venv (seeing a system-wide torch if there is one), installs torch==2.13.0
# only where no torch is importable, builds the extension against that torch with
# --no-build-isolation (an isolated build would download a separate CUDA torch),
# then runs pytest. `make demo` does the same set-up, then runs `s3fn demo`
# (DEMO_ARGS=--quick for the short one).
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.s3fn-installed

.PHONY: test gdal-tools demo build install lint clean

test: build gdal-tools
	$(PY) -m pytest

# gdal_translate / gdalinfo (Debian's gdal-bin) for the GeoTIFF / ENVI round-trip tests:
# installed where missing and apt-get can run as root; otherwise those tests skip.
gdal-tools:
	@command -v gdalinfo >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		apt-get install -y -qq gdal-bin >/dev/null; } || echo "gdal-bin not installed: tests needing it skip"

demo: build
	$(VENV)/bin/s3fn demo $(DEMO_ARGS)

build: $(INSTALLED)
	$(PY) setup.py -q build_ext --inplace

install: $(INSTALLED)

$(INSTALLED): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install torch==$(TORCH_VERSION)
	$(PY) -m pip install "setuptools>=68" wheel ninja
	$(PY) -m pip install --no-build-isolation -e ".[test]"
	touch $@

lint: $(INSTALLED)
	$(PY) -m ruff --version >/dev/null 2>&1 || $(PY) -m pip install -q ruff
	$(PY) -m ruff check .

clean:
	rm -rf build s3fn/_C*.so s3fn/libs3fn_ops*.so *.egg-info
