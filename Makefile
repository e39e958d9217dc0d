# The two commands a user needs: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# Debian packages the platform and its tests need (Chromium: the browser tests drive it through
# Playwright; Noto CJK so that Chinese renders in it and in PDFs; Pango for WeasyPrint's PDFs;
# poppler-utils' pdftotext for the tests that read them).
APT_PACKAGES := redis-server chromium fonts-noto-cjk libpango-1.0-0 libpangoft2-1.0-0 \
	libharfbuzz-subset0 poppler-utils

export OMP_WAIT_POLICY := passive
export HF_HUB_OFFLINE := 1

.PHONY: run test lint audit-deps format apt venv clean-var stop-db evaluate-dev bench

run: venv
	$(PY) manage.py serve

test: apt venv
	$(VENV)/bin/pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Known vulnerabilities in the pinned requirements (pip-audit, in its own venv so its
# dependencies never touch the platform's pins). Packages the index cannot describe are listed
# as not audited; a known vulnerability fails the target.
AUDIT_VENV := .venv-audit
audit-deps:
	@test -x $(AUDIT_VENV)/bin/pip-audit || ($(PYTHON) -m venv $(AUDIT_VENV) && \
		$(AUDIT_VENV)/bin/pip install -q pip-audit==2.10.1)
	$(AUDIT_VENV)/bin/pip-audit -r requirements.txt --no-deps --disable-pip --progress-spinner off

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

apt:
	@bash scripts/ensure_apt.sh $(APT_PACKAGES)

venv: $(STAMP)

# torch first, from its CPU build; the constraints file then keeps every later resolution on it.
$(STAMP): requirements.txt constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt "torch==2.13.0"
	$(PIP) install -q -c constraints.txt -r requirements.txt
	@touch $(STAMP)

stop-db: venv
	$(PY) -c "from pathlib import Path; from cs_platform import embedded_db; \
	from cs_platform.settings.env import VAR_DIR; print('stopped' if embedded_db.stop(VAR_DIR) else 'not running')"

# Development-data evaluations (see docs/benchmarks.md); needs ../shared/data.
DATA ?= ../shared/data
evaluate-dev: venv
	$(PY) manage.py evaluate retrieval --bank $(DATA)/stackfaq/faq_bank.jsonl --queries $(DATA)/stackfaq/queries_dev.jsonl
	$(PY) manage.py evaluate retrieval --bank $(DATA)/bq_corpus/faq_dev_bank.jsonl --queries $(DATA)/bq_corpus/faq_dev_queries.jsonl

bench: venv
	$(PY) manage.py bench retrieval --chunks 100000
