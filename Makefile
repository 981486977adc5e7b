# bindcar: `make test` installs what a fresh Debian machine lacks, then runs the suite.
PYTHON ?= python3
PACKAGES = bind9 bind9-utils dnsutils knot iproute2 systemd openssl python3-pytest
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: test test-slow bench bench-scale demo chaos deps

test: deps
	$(PYTHON) -m pytest -m "not slow"

# pytest exits 5 when it selects no test: no slow case is not a failure.
test-slow: deps
	$(PYTHON) -m pytest -m slow || [ $$? = 5 ]

bench: deps
	@command -v wrk >/dev/null || $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
	$(PYTHON) tests/bench.py

# The zone path at 100,000 zones (SCALE=N for another size): minutes, and named takes ~1 GB.
SCALE ?= 100000
bench-scale: deps
	$(PYTHON) tests/bench.py --scale $(SCALE)

demo: deps
	$(PYTHON) tests/demo.py

# Kills, freezes and a full zone directory under load, checked against the clients' ledger
# (tests/chaos.py): CHAOS_SECONDS=N for its length, CHAOS_ARGS="--seed N" to replay a run
# (its first line prints the seed), CHAOS_ARGS=--keep to keep its directory and logs.
CHAOS_SECONDS ?= 300
CHAOS_ARGS ?=
chaos: deps
	$(PYTHON) tests/chaos.py --seconds $(CHAOS_SECONDS) $(CHAOS_ARGS)

deps:
	@missing=""; for p in $(PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@# Debian's python3 has pytest from python3-pytest; another python3 (pyenv, venv) gets it from pip.
	@$(PYTHON) -c "import pytest" 2>/dev/null || $(PYTHON) -m pip install -q pytest
