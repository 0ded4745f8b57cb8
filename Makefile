# gpubox.llm: developer and demo entry points. Run `make help`.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help deps demo demo-clean test lint sanity unit images molecule build bench clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps:  ## Install docker.io, debootstrap and the controller venv (.venv)
	tests/harness/deps.sh

demo: deps  ## Serve SmolLM2 with vLLM in a local systemd container and ask it a question
	tests/harness/demo.sh

demo-clean:  ## Remove the demo container
	docker rm -f gpubox-demo

test:  ## Everything CI runs: lint, sanity, unit tests, Molecule scenarios
	tests/harness/run-tests.sh

lint: deps  ## yamllint, ansible-lint (production profile), ruff
	yamllint -s . && ansible-lint --offline && ruff check . && ruff format --check .

sanity: deps  ## ansible-test sanity on a copy under ansible_collections/gpubox/llm
	tests/harness/sanity.sh

unit: deps  ## pytest unit tests
	pytest -n 2 tests/unit

images: deps  ## Build the base images (bookworm, trixie) and the vLLM CPU image (cached per machine)
	tests/harness/build-base-image.sh bookworm && tests/harness/build-vllm-image.sh \
	  && tests/harness/build-base-image.sh trixie

molecule: deps images  ## Molecule scenario(s): make molecule SCENARIO=default
	. tests/harness/lib.sh && GPUBOX_BASE_IMAGE=$$(tests/harness/build-base-image.sh bookworm) \
	  GPUBOX_TRIXIE_IMAGE=$$(tests/harness/build-base-image.sh trixie) \
	  GPUBOX_VLLM_IMAGE=$$(tests/harness/build-vllm-image.sh) molecule test -s $(or $(SCENARIO),default)

build:  ## Build the collection tarball
	ansible-galaxy collection build --force

bench: deps images  ## Benchmarks P1, P2, P4 (see README)
	benchmarks/provision.sh

clean:  ## Remove build outputs (keeps the image and wheel caches)
	rm -rf gpubox-llm-*.tar.gz tests/output .pytest_cache .ruff_cache
