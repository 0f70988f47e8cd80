# nemo-curator-rs: every target sets up what it needs from nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(VENV))/bin:$(PATH)
# Ray: no usage stats prompts, no dashboard pulls, quiet workers.
export RAY_USAGE_STATS_ENABLED := 0

RUST_SRC := $(shell find rust -name '*.rs' -o -name Cargo.toml) Cargo.toml pyproject.toml

.PHONY: all venv develop test test-rust test-python test-compat lint fmt demo bench bench-compare clean

all: test

$(VENV)/.deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "maturin>=1.9.4,<2" "uv>=0.4"
	touch $@

# Release build of the extension into the venv, with runtime and dev dependencies (installed by uv:
# resolving Ray's dependency tree with pip takes minutes on a fresh machine, uv seconds). The tests run on
# it too: on a debug build of the Arrow and PyO3 crates the Ray tests took twice as long.
$(VENV)/.built: $(VENV)/.deps $(RUST_SRC)
	$(BIN)/maturin develop --uv --release --extras dev,plot --quiet
	touch $@

venv: $(VENV)/.deps
develop: $(VENV)/.built

test-rust: $(VENV)/.built
	cargo test --workspace
	cargo clippy --workspace --all-targets -- -D warnings
	cargo fmt --all --check

lint: $(VENV)/.built
	$(BIN)/ruff check python tests benches
	$(BIN)/ruff format --check python tests benches
	$(PY) -m mypy.stubtest nemo_curator._core --allowlist .ci/stubtest-allowlist.txt

# Two pytest-xdist workers, a whole file each at a time (a module shares one Ray): most of a Ray test is
# waiting for processes to start, so two at once take about half the time on two cores.
PYTEST_WORKERS ?= 2
test-python: $(VENV)/.built
	$(PY) -m pytest tests -q -p no:cacheprovider --durations=20 -n $(PYTEST_WORKERS) --dist loadfile

test: $(VENV)/.built test-rust lint test-python

# This package installed over NeMo Curator 1.1.0, in a venv of its own built from nothing each time:
# Curator (--no-deps) and its CPU dependencies; Curator's reference run of a pipeline of its own stages;
# this package on top (the extension `make develop` built, repackaged as a wheel: no second Rust build);
# then Curator's exports and that pipeline on every executor of this package, against the reference.
# On the way, README's account of `pip uninstall nemo-curator-rs` is checked.
# Curator's dependencies go in with uv (seconds, not minutes); every install of Curator or of this package,
# and the uninstall, use the venv's own pip, as a user would. Curator's wheel is fetched once.
COMPAT_VENV ?= .venv-compat
COMPAT_WHEELS := target/compat-wheels
COMPAT_ENV := env VIRTUAL_ENV=$(abspath $(COMPAT_VENV)) PATH="$(abspath $(COMPAT_VENV))/bin:$$PATH"
COMPAT_PY := $(COMPAT_ENV) $(abspath $(COMPAT_VENV))/bin/python
COMPAT_PIP := $(COMPAT_PY) -m pip install --quiet --disable-pip-version-check --find-links $(COMPAT_WHEELS)
COMPAT_WORK := $(abspath $(COMPAT_VENV))/work
CURATOR_SPEC := nemo-curator==1.1.0

$(COMPAT_WHEELS)/.downloaded:
	rm -rf $(COMPAT_WHEELS)
	$(PYTHON) -m pip download --quiet --disable-pip-version-check -d $(COMPAT_WHEELS) --no-deps $(CURATOR_SPEC)
	touch $@

test-compat: $(VENV)/.built $(COMPAT_WHEELS)/.downloaded
	rm -rf $(COMPAT_VENV)
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(BIN)/uv pip install --quiet --python $(abspath $(COMPAT_VENV))/bin/python -r tests/compat/requirements.txt
	$(COMPAT_PIP) --no-index --no-deps $(CURATOR_SPEC)
	$(COMPAT_PY) tests/compat/make_reference.py $(COMPAT_WORK)
	$(PY) tests/compat/repack_wheel.py $(COMPAT_VENV)/wheel
	$(COMPAT_PIP) $(COMPAT_VENV)/wheel/*.whl
	# README: uninstalling this package removes the files both shipped; reinstalling Curator restores them.
	$(COMPAT_PY) -m pip uninstall --quiet --yes nemo-curator-rs
	$(COMPAT_PY) tests/compat/check_uninstall.py removed
	$(COMPAT_PIP) --no-index --force-reinstall --no-deps $(CURATOR_SPEC)
	$(COMPAT_PY) tests/compat/check_uninstall.py restored $(COMPAT_WORK)
	$(COMPAT_PIP) $(COMPAT_VENV)/wheel/*.whl
	NEMO_CURATOR_COMPAT_DIR=$(COMPAT_WORK) $(COMPAT_PY) -m pytest tests/compat -q -p no:cacheprovider

fmt: $(VENV)/.deps
	cargo fmt --all
	$(BIN)/ruff format python tests benches
	$(BIN)/ruff check --fix python tests benches

demo: $(VENV)/.built
	$(PY) -m nemo_curator.demo

bench: $(VENV)/.built
	$(PY) -m pytest benches -q -p no:cacheprovider -o python_files="test_*.py bench_*.py" --benchmark-only --benchmark-columns=min,mean,max,rounds

bench-compare: $(VENV)/.built
	$(PY) benches/compare/run.py $(ARGS)

clean:
	rm -rf $(VENV) $(COMPAT_VENV) target
