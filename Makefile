# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install chromium kafka demo test bench lint clean

$(BIN)/quotacache: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/quotacache

# The dashboard's browser test drives Debian's chromium; install it where apt can.
chromium:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	  >/dev/null; } || echo "chromium could not be installed: the browser test will be skipped"

# A real Apache Kafka for the tests on both brokers: Maven fetches the jars that
# quotacache/dev/kafka-jars/pom.xml names into .cache/kafka/<hash of pom and Java>, once.
# Without Java 17+, Maven or Maven Central this says why, and the Kafka tests skip.
kafka: install
	$(BIN)/python -m quotacache.dev.kafka_broker fetch

demo: install
	$(BIN)/quotacache demo $(ARGS)

# The comparison (python -m bench): about 7 minutes, not part of CI; needs Debian's nginx.
bench: install
	$(BIN)/pip install --quiet -e '.[test,bench]'
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { command -v apt-get >/dev/null \
	  && [ "$$(id -u)" = 0 ] && apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }
	$(BIN)/python -m bench $(ARGS)

test: install chromium kafka lint
	$(BIN)/python -m pytest -q -n 4 --maxschedchunk 1 --durations=15 $(ARGS)

# ruff, then the layers of pyproject's [tool.importlinter] on an installed copy (the
# editable install maps streams/, agents/ and tables/ in a way import-linter cannot see).
lint: install
	$(BIN)/ruff check .
	rm -rf build/layers && $(BIN)/pip install --quiet --no-deps --no-compile --target build/layers . 2>/dev/null
	PYTHONPATH=build/layers $(BIN)/lint-imports

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache quotacache-data .cache/kafka
