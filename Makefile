# `make demo` and `make test` do all the set-up themselves (venv, system packages, local stack).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
COLLECTION_LINK := .build/collections/ansible_collections/ledgermind/migrations
GET_PIP_CACHE := $(HOME)/.ansible/test/cache/get_pip_24_2.py
DEMO_ROWS ?= 10000

export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: setup demo test lint sanity unit integration molecule bench stack-up stack-down docker-up docker-down clean matrix

setup: $(STAMP) $(COLLECTION_LINK) $(GET_PIP_CACHE)

$(STAMP): requirements.txt requirements-dev.txt scripts/setup_system
	PYTHON=$(PYTHON) scripts/setup_system
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Lets ansible resolve ledgermind.migrations from this checkout (see ansible.cfg).
$(COLLECTION_LINK):
	mkdir -p $(dir $@)
	ln -sfn ../../../.. $@

# ansible-test sanity fetches its pip bootstrap from a host we cannot reach; it reads this cache first.
$(GET_PIP_CACHE): scripts/get_pip_offline.py
	mkdir -p $(dir $@)
	cp $< $@

stack-up: setup
	scripts/stack up

stack-down:
	scripts/stack down

# The local Docker engine (installed and started when missing) and the backend's base image (built once).
docker-up: setup
	scripts/docker_engine up
	scripts/backend_image base

docker-down:
	scripts/docker_engine down

demo: stack-up docker-up
	scripts/stack reset --rows $(DEMO_ROWS)
	eval "$$(scripts/stack env)" && scripts/backend_image previous
	eval "$$(scripts/stack env)" && LEDGERMIND_DEPLOY=1 ansible-playbook playbooks/migrate_tokens.yml -i inventories/local
	@echo
	@echo "Migrated and the JSON-model backend deployed (http://127.0.0.1:18080/ready)."
	@echo "To roll back (downgrade to 20251109_add_user_name_picture, verified against the pre-flight fingerprint, then the previous backend image):"
	@echo '  eval "$$(scripts/stack env)" && LEDGERMIND_DEPLOY=1 .venv/bin/ansible-playbook playbooks/rollback_tokens.yml -i inventories/local'
	@echo "  add -e migration_rollback_restore_from_backup=true to also restore the table from the verified backup"

# Molecule before pytest, so that pytest's summary closes the run's output. Lint, sanity and Molecule side by side:
# none of them uses both cores alone, and their outputs stay whole (--output-sync).
test: stack-up docker-up
	$(MAKE) --no-print-directory -j2 --output-sync=target lint sanity molecule
	eval "$$(scripts/stack env)" && $(BIN)/pytest tests -n 2 --dist loadgroup

# pytest imports test files by basename (rootdir mode, no packages): two files of one name fail its collection.
lint: setup
	@dups=$$(find tests -name 'test_*.py' -printf '%f\n' | sort | uniq -d); \
	  if [ -n "$$dups" ]; then echo "Test files sharing a basename (rename one): $$dups"; exit 1; fi
	ruff check .
	shellcheck -S warning .ci/run scripts/ansible_test_sanity scripts/backend_image scripts/docker_engine scripts/matrix \
	  scripts/setup_system scripts/stack examples/backend/scripts/*.sh
	mypy plugins/module_utils plugins/filter plugins/modules
	yamllint --strict .
	ansible-lint --offline

sanity: setup
	scripts/ansible_test_sanity

unit: setup
	$(BIN)/pytest tests/unit

integration: stack-up docker-up
	eval "$$(scripts/stack env)" && $(BIN)/pytest tests/integration -n 2 --dist loadgroup

# The Molecule scenarios (molecule/*): the whole cycle against the local stack and the real engine, in
# the scenario database lm_molecule.
molecule: stack-up docker-up
	eval "$$(scripts/stack env lm_molecule)" && $(BIN)/molecule test --all

# The collection on the oldest ansible-core meta/runtime.yml accepts and on the newest (scripts/matrix): unit tests,
# ansible-doc for every module and filter, ansible-test sanity and module integration tests against the local stack,
# each version in its own venv under .matrix/ (reused while its pins are unchanged); a table at the end.
matrix: stack-up
	scripts/matrix

# The runbook's bare commands timed side by side with the playbooks' phases, at 10K and 1M rows
# (BENCH_ARGS=--10m adds 10M; --sizes, --reps): results/bench.{json,md,png}. See README "Benchmark".
bench: stack-up
	$(BIN)/python scripts/bench $(BENCH_ARGS)

clean:
	rm -rf .build .pytest_cache .mypy_cache .ruff_cache
