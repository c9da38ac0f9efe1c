# callvault - every target the README names.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
ENV := set -a; . .local/stack.env; set +a;

.PHONY: up down status reset venv migrate run demo worker test unit integration e2e telephony chaos helm-test lint typecheck bench bench-scale lock messages clean image image-test compose-up compose-down compose-test

up:            ## install what is missing, start Kafka, PostgreSQL, versitygw, Prometheus; make .venv
	bash deploy/stack.sh up

down:          ## stop the local stack (data kept)
	bash deploy/stack.sh down

status:        ## the stack's services (callvault status: the workers' view)
	bash deploy/stack.sh status

reset:         ## stop the stack and delete its data
	bash deploy/stack.sh reset

venv:
	bash deploy/venv.sh

migrate: up    ## schema, buckets, topics: the one command given the schema owner's URL
	$(ENV) CALLVAULT_DATABASE_ADMIN_URL="$$CALLVAULT_PG_OWNER_URL" $(BIN)/callvault migrate

run: up        ## the stack, the worker and the console, a tour of the whole lifecycle, demo traffic; Ctrl-C stops
	bash deploy/run.sh

test: up       ## lint, type check, unit, integration and end-to-end tests, then the short chaos run
	$(BIN)/ruff check workers tests bench testbed deploy
	$(BIN)/ruff format --check workers tests bench testbed deploy
	$(BIN)/mypy
	$(ENV) $(BIN)/pytest -q -m "not chaos and not kube and not containers" tests
	@# last and alone: it kills and restarts the shared Kafka and PostgreSQL
	$(ENV) $(BIN)/pytest -q -m chaos tests/chaos

unit: venv     ## unit tests only (no services)
	$(BIN)/pytest -q tests/unit

integration: up
	$(ENV) $(BIN)/pytest -q tests/integration

e2e: up
	$(ENV) $(BIN)/pytest -q tests/e2e

telephony: up  ## the connectors alone: unit tests, then real SIP calls (baresip; Kamailio + rtpengine) and webhooks
	$(BIN)/pytest -q tests/unit/test_audio.py tests/unit/test_connectors.py \
		tests/unit/test_webhooks.py tests/unit/test_freeswitch_rtpengine.py tests/unit/test_pbx_shell.py \
		tests/unit/test_confined.py
	$(ENV) $(BIN)/pytest -q tests/e2e/test_telephony.py tests/e2e/test_serve_webhooks.py

image:         ## callvault's container image with podman, on a base made from Debian's packages
	bash deploy/image.sh

image-test: up ## build the image, then run it: non-root, read-only root, a worker and serve against the stack
	$(ENV) $(BIN)/pytest -q tests/containers/test_image.py

compose-up: up ## docker-compose.yml brought up with podman, every image built here (ports +10000)
	bash deploy/compose.sh up

compose-down:  ## stop the compose project (volumes kept; bash deploy/compose.sh down -v drops them)
	bash deploy/compose.sh down

compose-test: up ## compose-up, then drive it through the contract (call, hold, erasure, console, alert)
	$(ENV) $(BIN)/pytest -q tests/containers/test_compose_stack.py

chaos: up      ## faults under traffic (workers, Kafka, S3, PostgreSQL); summary in bench/results/chaos-*.json
	$(ENV) CALLVAULT_CHAOS=full $(BIN)/pytest -q -m chaos tests/chaos

helm-test: up  ## the Helm chart: lint, template, every manifest dry-run on a real kube-apiserver (built from Go modules on first use), its pods run by podman
	bash deploy/kube.sh install
	$(ENV) $(BIN)/pytest -q tests/unit/test_helm_chart.py tests/kube

lint: venv
	$(BIN)/ruff check workers tests bench testbed deploy
	$(BIN)/ruff format --check workers tests bench testbed deploy

typecheck: venv
	$(BIN)/mypy

bench: migrate ## benchmarks against a raw baseline in the same run (see bench/README.md)
	$(ENV) $(BIN)/python -m bench

bench-scale: migrate ## the largest partitioned table this disk holds, measured (an hour or more)
	$(ENV) $(BIN)/python -m bench scale

messages: venv ## the texts people read: extract them into every catalogue (workers/i18n/locale), compile
	$(BIN)/python -m workers.i18n update

LOCK := $(BIN)/pip-compile -q --generate-hashes --allow-unsafe --no-emit-index-url \
	--no-emit-find-links --strip-extras

lock:          ## re-resolve the locks from pyproject.toml (hashes, no index URLs): runtime, dev, build backend
	$(LOCK) -o requirements.lock pyproject.toml
	$(LOCK) --extra dev -o requirements-dev.lock pyproject.toml
	$(LOCK) --all-build-deps --only-build-deps -o requirements-build.lock pyproject.toml
