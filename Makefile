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

.PHONY: setup demo test lint sanity unit integration bench stack-up stack-down clean

setup: $(STAMP) $(COLLECTION_LINK) $(GET_PIP_CACHE)

$(STAMP): requirements.txt requirements-dev.txt
	scripts/setup_system
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

demo: stack-up
	scripts/stack reset --rows $(DEMO_ROWS)
	eval "$$(scripts/stack env)" && ansible-playbook playbooks/migrate_tokens.yml -i inventories/local
	@echo
	@echo "Migrated. To roll back (downgrade to 20251109_add_user_name_picture, verified against the pre-flight fingerprint):"
	@echo '  eval "$$(scripts/stack env)" && .venv/bin/ansible-playbook playbooks/rollback_tokens.yml -i inventories/local'
	@echo "  add -e migration_rollback_restore_from_backup=true to also restore the table from the verified backup"

test: stack-up
	$(MAKE) --no-print-directory lint sanity
	eval "$$(scripts/stack env)" && $(BIN)/pytest tests

lint: setup
	ruff check .
	mypy plugins/module_utils plugins/filter
	yamllint --strict .
	ansible-lint --offline

sanity: setup
	scripts/ansible_test_sanity

unit: setup
	$(BIN)/pytest tests/unit

integration: stack-up
	eval "$$(scripts/stack env)" && $(BIN)/pytest tests/integration

# The runbook's bare commands timed side by side with the playbooks' phases, at 10K and 1M rows
# (BENCH_ARGS=--10m adds 10M; --sizes, --reps): results/bench.{json,md,png}. See README "Benchmark".
bench: stack-up
	$(BIN)/python scripts/bench $(BENCH_ARGS)

clean:
	rm -rf .build .pytest_cache .mypy_cache .ruff_cache
