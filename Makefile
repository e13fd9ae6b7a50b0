# The two commands of the README. Each sets up .venv on first use; `make test` lints first.
PY := .venv/bin/python
PIP := .venv/bin/pip
STAMP := .venv/.installed

.PHONY: test demo setup system-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	# torch first, pinned: pip takes these two from this machine's disk; an unpinned
	# resolve would pull a different torch build.
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# Debian packages some tests need (a headless browser, a PostgreSQL server).
system-deps:
	bash .ci/system-deps.sh

test: setup system-deps
	$(PY) -m ruff check .
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: setup
	.venv/bin/ablate run studies/mask_ratio.yaml

clean:
	rm -rf ablate-runs .pytest_cache
