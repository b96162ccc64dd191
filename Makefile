# Two commands for a fresh machine with Python 3.11: `make demo` and `make test`.
# Everything runs from .venv, built from the pinned set in constraints/ (the official Airflow constraints
# host is not reachable from every build machine, so the pins are committed).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := constraints/airflow-3.3.txt
# Rebuilt when the dependency declaration or the pins change, not on every run.
STAMP := $(VENV)/.installed
# The Airflow 3.3 venv runs every test: the distributed stack, the browser test and the docs site too.
EXTRAS_3.3 := test,test-cluster,test-browser,docs,openlineage

# pytest exits 5 when it collected nothing (e.g. a filter matched no test): not a failure here.
PYTEST = $(BIN)/python -m pytest --durations=15
define run_pytest
	$(PYTEST) $(1) || { rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; else exit $$rc; fi; }
endef

.DEFAULT_GOAL := help
.PHONY: help venv lint unit e2e test demo constraints clean docs system-packages older-legs-then-3.3 \
	test-3.3-local test-3.3-local-first test-3.3-local-second test-3.3-cluster

help:
	@echo "make demo   - build .venv, start the sandbox and Airflow 3.3, run the example content pipeline"
	@echo "make test   - build the venvs, then lint + type check + every test on Airflow 3.3 (unit and"
	@echo "              end-to-end, the docs site) + on each Airflow of MATRIX (2.11, 3.0, 3.1, 3.2) the unit suite and"
	@echo "              one end-to-end deferrable run"
	@echo "make docs   - build the documentation site into site/ (strict: broken links and anchors fail)"
	@echo "make venv | lint | unit | e2e | constraints | clean"
	@echo "make unit-V - the unit suite on Airflow V (2.11, 3.0, 3.1, 3.2), each in its own venv"
	@echo "make e2e-V - one end-to-end deferrable run on a real Airflow V stack"
	@echo "make test-3.3 | test-V - one leg of the CI matrix (what make test runs after lint); the 3.3 leg"
	@echo "              is test-3.3-local (LocalExecutor stacks, unit, docs; in two halves) + test-3.3-cluster"
	@echo "make constraints-V - re-resolve that leg's pins"

venv: $(STAMP)

# The build backend (hatchling) comes from the same pins, so the editable install needs no isolated
# build environment of its own.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || { \
		echo "$(CONSTRAINTS) is pinned for Python 3.11; run with PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) hatchling editables
	$(BIN)/pip install --quiet --no-build-isolation -c $(CONSTRAINTS) -e ".[$(EXTRAS_3.3)]"
	$(BIN)/python -m tools.check_pins $(CONSTRAINTS)
	touch $(STAMP)

# TaskFlow passes an XComArg where a @task function declares the value it will receive, which mypy
# cannot see through: the example DAGs are checked without arg-type.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy tools tests/e2e
	$(BIN)/mypy --disable-error-code arg-type example_dags

unit: $(STAMP)
	$(call run_pytest,-m "not e2e")

e2e: $(STAMP)
	$(call run_pytest,-m e2e)

# The CI matrix. Every venv is built first, side by side (pip mostly waits on downloads and unpacking),
# then lint, then three jobs side by side:
#   - the first half of the Airflow 3.3 LocalExecutor suite (unit tests, docs site, fault modules);
#   - the distributed deployment's scenarios on their Celery stack;
#   - the older Airflow legs one after another (each its unit suite and one end-to-end deferrable run,
#     in its own venv), then the second half of the 3.3 LocalExecutor suite.
# The 3.3 jobs spend most of their time waiting on their stacks (renders, failovers, heartbeats), so
# three jobs fit on two cores; each job's output is printed whole when it ends. Any failure fails the
# target. The halves are split by module so each job takes about as long as the cluster job.
MATRIX := 2.11 3.0 3.1 3.2
E2E_LOCAL_SECOND := tests/e2e/test_delivery.py tests/e2e/test_example_dags.py tests/e2e/test_browser.py \
	tests/e2e/test_review_step.py tests/e2e/test_worker_slots_smoke.py
test:
	$(MAKE) --no-print-directory -j5 $(STAMP) $(addsuffix /.installed,$(addprefix .venv-,$(MATRIX)))
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory --output-sync=recurse -j3 test-3.3-local-first test-3.3-cluster older-legs-then-3.3

older-legs-then-3.3:
	$(MAKE) --no-print-directory -j1 $(addprefix test-,$(MATRIX)) test-3.3-local-second

# The servers the 3.3 leg starts (PostgreSQL, Redis, Chromium and chromedriver): installed with apt-get
# as root, otherwise named in one line. Never skipped, in CI neither.
system-packages:
	$(PYTHON) -m tools.system_packages

# The Airflow 3.3 leg: every test, in pytest runs that can go side by side (make -j3 test-3.3): the
# distributed deployment's module, and everything else in two halves. The docs site is part of the leg.
test-3.3: test-3.3-local-first test-3.3-local-second test-3.3-cluster
test-3.3-local: test-3.3-local-first test-3.3-local-second

test-3.3-local-first: $(STAMP) system-packages docs
	$(call run_pytest,-m "not cluster_e2e" $(addprefix --ignore=,$(E2E_LOCAL_SECOND)))

test-3.3-local-second: $(STAMP) system-packages
	$(call run_pytest,-m "not cluster_e2e" $(E2E_LOCAL_SECOND))

test-3.3-cluster: $(STAMP) system-packages
	$(call run_pytest,-m cluster_e2e)

# The documentation site (mkdocs.yml) into site/, in strict mode: a broken link or anchor, a page
# missing from the nav, or a docstring mkdocstrings cannot render fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Options: make demo DEMO_ARGS="--keep-running --prompt 'a fox in the snow'"
demo: $(STAMP)
	$(BIN)/python -m tools.demo $(DEMO_ARGS)

# Re-resolve the pins in a scratch venv (needs the package index); review the diff before committing.
# celery stays below 5.7: 5.7.0 removed `retry` from celery.backends.database, which the Celery provider
# 3.26.0 imports, and every worker then dies with a misleading "needs Airflow 2.8.0" message.
constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/pip install --quiet "apache-airflow==3.3.2" "apache-airflow-providers-celery==3.26.0" \
		"celery==5.6.3" -e ".[$(EXTRAS_3.3)]" pyinstrument py-spy hatchling editables
	{ grep '^#' $(CONSTRAINTS); \
	  .venv-constraints/bin/pip freeze | grep -v -i -E '^(-e |airflow-provider-kling)'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .venv-constraints

# -- Older Airflow versions ---------------------------------------------------------------------------
# The provider supports Airflow 2.11 and every 3.x minor (docs/compatibility.md). Each older version has
# its own venv (.venv-2.11, .venv-3.0, ...) built from its own pins, rebuilt only when pyproject.toml or
# those pins change, like .venv. `make test` runs every leg (test-2.11, test-3.0, test-3.1, test-3.2).
OLDER_AIRFLOW := 2.11 3.0 3.1 3.2
.PHONY: test-3.3 $(foreach v,$(OLDER_AIRFLOW),unit-$(v) e2e-$(v) test-$(v) constraints-$(v))
# What each leg resolves besides the project: Airflow 3.0 needs universal-pathlib below 0.3, which its
# own metadata does not say (see constraints/airflow-3.0.txt).
RESOLVE_2.11 := "apache-airflow==2.11.2"
RESOLVE_3.0 := "apache-airflow==3.0.6" "universal-pathlib<0.3" "fastapi<0.132"
RESOLVE_3.1 := "apache-airflow==3.1.8"
RESOLVE_3.2 := "apache-airflow==3.2.2" "cadwyn==7.0.0" "fastapi==0.136.3"

# wheel: Airflow 2.11 needs python-nvd3, which has no wheel, and Python 3.11's venv setuptools (65)
# cannot build one without the wheel package when build isolation is off.
.venv-%/.installed: pyproject.toml constraints/airflow-%.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || { \
		echo "constraints/airflow-$*.txt is pinned for Python 3.11; run with PYTHON=/path/to/python3.11"; exit 1; }
	test -x .venv-$*/bin/python || $(PYTHON) -m venv .venv-$*
	.venv-$*/bin/pip install --quiet -c constraints/airflow-$*.txt hatchling editables wheel==0.48.0
	.venv-$*/bin/pip install --quiet --no-build-isolation -c constraints/airflow-$*.txt -e ".[test]"
	.venv-$*/bin/python -m tools.check_pins constraints/airflow-$*.txt
	touch $@

$(addprefix unit-,$(OLDER_AIRFLOW)): unit-%: .venv-%/.installed
	.venv-$*/bin/python -m pytest --durations=15 -m "not e2e" || { rc=$$?; \
		if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; else exit $$rc; fi; }

# One deferrable generation on a real stack of that version (tests/e2e/test_compat.py): Airflow 3.0 as
# 3.3 (api-server, scheduler, dag-processor, triggerer), Airflow 2.11 with webserver, scheduler, triggerer
# and the SequentialExecutor. The rest of the end-to-end suite uses Airflow 3 only features.
$(addprefix e2e-,$(OLDER_AIRFLOW)): e2e-%: .venv-%/.installed
	.venv-$*/bin/python -m pytest --durations=5 -m compat_e2e tests/e2e/test_compat.py

$(addprefix test-,$(OLDER_AIRFLOW)): test-%: unit-% e2e-%

# Re-resolve a leg's pins in a scratch venv (needs the package index); review the diff before committing.
# Resolving the project itself (".[test]") keeps the pins in step with pyproject.toml. Left alone, pip
# backtracks for many minutes through old releases of the AWS libraries the [s3] extra brings (seen with
# 2.11): it starts from their versions pinned for Airflow 3.3, a set known to fit together.
AWS_FAMILY := apache-airflow-providers-amazon|aiobotocore|boto3|botocore|moto|s3fs|s3transfer
$(addprefix constraints-,$(OLDER_AIRFLOW)): constraints-%:
	rm -rf .venv-constraints-$*
	$(PYTHON) -m venv .venv-constraints-$*
	grep -E '^($(AWS_FAMILY))==' $(CONSTRAINTS) > .venv-constraints-$*/aws-hints.txt
	.venv-constraints-$*/bin/pip install --quiet -c .venv-constraints-$*/aws-hints.txt $(RESOLVE_$*) \
		-e ".[test]" hatchling editables
	{ grep '^#' constraints/airflow-$*.txt 2>/dev/null; \
	  .venv-constraints-$*/bin/pip freeze | grep -v -i -E '^(-e |#|airflow-provider-kling)'; } > constraints/airflow-$*.txt.new
	mv constraints/airflow-$*.txt.new constraints/airflow-$*.txt
	rm -rf .venv-constraints-$*

clean:
	rm -rf $(VENV) .venv-constraints site $(addprefix .venv-,$(OLDER_AIRFLOW)) $(addprefix .venv-constraints-,$(OLDER_AIRFLOW)) .e2e-logs .demo .pytest_cache .mypy_cache .ruff_cache build dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
