VENV ?= .venv
BIN := $(VENV)/bin
CLASSPATH := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/loopline/kafka/classpath.txt

.PHONY: help setup demo test test-quick lint format bench kafka-stop clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/loopline: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

$(CLASSPATH): ops/kafka/pom.xml | $(BIN)/loopline
	$(BIN)/loopline kafka fetch

setup: $(BIN)/loopline $(CLASSPATH) ## create the venv, install loopline and fetch the Kafka jars

demo: setup ## start the local broker and run the demo
	$(BIN)/loopline demo

test: setup ## run the test suite (starts its own broker)
	$(BIN)/pytest

test-quick: setup ## run the tests without the long integration ones (those marked slow)
	$(BIN)/pytest -m "not slow"

lint: setup ## check style and types (changes nothing)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# mypy reads the code under its import names: build/typecheck/loopline links streams/'s entries and models/
	rm -rf build/typecheck && mkdir -p build/typecheck/loopline
	ln -s $(CURDIR)/streams/* build/typecheck/loopline/ && ln -s $(CURDIR)/models build/typecheck/loopline/models
	$(BIN)/mypy

format: setup ## format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup ## run the benchmarks in bench/
	$(BIN)/python bench/codec.py
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/broker.py
	$(BIN)/python bench/state.py
	$(BIN)/python bench/drift.py

kafka-stop: ## stop the local broker started by the demo
	$(BIN)/loopline kafka stop

clean: ## stop the local broker and delete its data, the store and the venv
	-$(BIN)/loopline kafka stop
	rm -rf .loopline $(VENV)
