# spatialdomains — developer and user entry points. `make help` lists them.
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
NEXTFLOW := $(VENV)/bin/nextflow
export PATH := $(VENV)/bin:$(PATH)
export NXF_OFFLINE ?= true
export NXF_ANSI_LOG ?= false
PYTEST_ARGS ?=

.PHONY: help setup test test-unit test-pipeline lint demo docs bench containers test-containers test-slurm clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup:  ## install R/mclust (Debian), the Python venv and Nextflow 24.10.6 (idempotent)
	@bash scripts/setup.sh

test: setup lint  ## setup, lint, then every test (unit + real Nextflow pipeline runs)
	$(PY) -m pytest tests $(PYTEST_ARGS)

test-unit: setup  ## unit tests only
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-pipeline: setup  ## pipeline tests only (real Nextflow)
	$(PY) -m pytest tests/pipeline $(PYTEST_ARGS)

lint: setup  ## schema/config consistency checks and Dockerfile lint
	$(PY) scripts/lint.py

demo: setup  ## run the pipeline on the bundled demo data (results/ in this folder)
	@bash scripts/demo.sh

docs: setup  ## regenerate docs/parameters.md from nextflow_schema.json
	$(PY) scripts/schema_docs.py > docs/parameters.md

bench: setup  ## accuracy and scaling benchmarks (DLPFC from ../shared/bench/data; long)
	$(VENV)/bin/pip install -q -c requirements/lock.txt -e '.[bench]'
	$(PY) benchmarks/accuracy.py
	$(PY) benchmarks/scaling.py

clean:  ## remove Nextflow work dirs and results (keeps the venv)
	rm -rf work results .nextflow .nextflow.log*
