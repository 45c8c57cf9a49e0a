# spatialdomains — developer and user entry points. `make help` lists them.
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
NEXTFLOW := $(VENV)/bin/nextflow
export PATH := $(VENV)/bin:$(PATH)
export NXF_OFFLINE ?= true
export NXF_ANSI_LOG ?= false
PYTEST_ARGS ?=

.PHONY: help setup test test-unit test-pipeline lint demo docs bench containers test-containers test-slurm test-full clean

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

test-slurm: setup  ## test profile on a one-node SLURM cluster (scripts/slurm.sh, root), one job cancelled, vs local
	SPATIALDOMAINS_TEST_SLURM=1 $(PY) -m pytest tests/slurm -s $(PYTEST_ARGS)

containers: setup  ## install podman (apt, as root) and build the image when its inputs changed
	@bash scripts/containers.sh install
	@bash scripts/containers.sh image-if-stale

test-containers: containers  ## the image, then the test profile in it (podman) vs the venv, and its OCI archive
	SPATIALDOMAINS_TEST_CONTAINERS=1 $(PY) -m pytest tests/containers -s $(PYTEST_ARGS)

test-full: setup  ## -profile test_full capped to this machine (long); FULL_EXECUTOR=slurm for the SLURM cluster
	SPATIALDOMAINS_TEST_FULL=$(or $(FULL_EXECUTOR),local) $(PY) -m pytest tests/full -s $(PYTEST_ARGS)

clean:  ## remove Nextflow work dirs and results (keeps the venv)
	rm -rf work results .nextflow .nextflow.log*
