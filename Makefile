# Mail Labs: bootstrap, run and test the labs.
# GNU make; every recipe runs under /bin/sh (POSIX sh, e.g. dash).
#
#   make bootstrap      create .venv and install the project with its test tools
#   make lab            start JupyterLab on 127.0.0.1 in notebooks/ (LAB_ARGS=...)
#   make test           unit tests + notebooks (nbval), 2 workers (PYTEST_ARGS=...)
#   make unit           unit tests in tests/ only (PYTEST_ARGS=...)
#   make nav            run scripts/navigation.py
#   make slides         run scripts/slides.py (RISE slide types; after make nav)
#   make grading        run scripts/grading.py (the exercises' nbgrader metadata)
#   make student        write the student edition (solutions removed) to build/student/
#   make site           execute every notebook; static HTML course in build/site/
#   make bench          run benchmarks/run_all.py
#   make pcaps          rewrite the reference captures in data/pcaps/ from the lab
#   make constraints    rewrite constraints.txt from what .venv has
#   make clean          remove build artefacts and caches (keeps .venv)
#   make distclean      clean, and remove .venv too

SHELL := /bin/sh
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
LAB_ARGS ?=
PYTEST_ARGS ?=
# Only for `make _pytest_status`: the pytest exit status to interpret.
STATUS ?= 0

VPY := $(VENV)/bin/python
NBGRADER_SERVER_EXTENSIONS := $(addprefix nbgrader.server_extensions.,formgrader \
	validate_assignment assignment_list course_list)
STAMP := $(VENV)/.installed
CONSTRAINTS := constraints.txt

# Interprets a pytest exit status held in the shell variable `status`.
# pytest exits 5 when it collected no tests: that must never pass silently.
# Every other status (0 passed, 1 failures, 2 interrupted, ...) passes through.
PYTEST_STATUS = if [ "$$status" -eq 5 ]; then \
	  echo "error: pytest collected no tests (pytest exit status 5)" >&2; exit 5; \
	fi; exit "$$status"

PYTEST_TEST = $(VPY) -m pytest -n 2 --dist loadfile --nbval-lax --nbval-current-env \
	tests notebooks $(PYTEST_ARGS)
PYTEST_UNIT = $(VPY) -m pytest tests $(PYTEST_ARGS)

.PHONY: help bootstrap lab test unit nav slides grading student site bench pcaps constraints clean distclean _pytest_status

help:
	@sed -n 's/^#   make /  make /p' $(firstword $(MAKEFILE_LIST))

bootstrap: $(STAMP)

# Reinstalls whenever pyproject.toml or constraints.txt changes. With no
# constraints.txt (or one with no pins) the install is unconstrained: that is
# how `make constraints` picks up new versions (see its header).
$(STAMP): pyproject.toml $(wildcard $(CONSTRAINTS))
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null || { \
	  echo "error: Mail Labs needs Python >= 3.11, but PYTHON=$(PYTHON) is:" \
	    "$$($(PYTHON) --version 2>/dev/null || echo 'not found or not runnable')." >&2; \
	  echo "       Install Python 3.11+ and run e.g. 'make bootstrap PYTHON=python3.11'." >&2; \
	  exit 1; }
	@if [ ! -x $(VPY) ]; then \
	  echo "+ $(PYTHON) -m venv $(VENV)"; \
	  $(PYTHON) -m venv $(VENV) || { \
	    echo "error: could not create $(VENV) (on Debian/Ubuntu: apt-get install python3-venv)" >&2; \
	    rm -rf $(VENV); exit 1; }; \
	fi
	@$(VPY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || { \
	  echo "error: $(VENV) was made with Python < 3.11; run 'make distclean' first." >&2; exit 1; }
	$(VPY) -m pip install --upgrade pip
	@if grep -q '^[^#[:space:]]' $(CONSTRAINTS) 2>/dev/null; then \
	  set -x; $(VPY) -m pip install -c $(CONSTRAINTS) -e '.[test]'; \
	else \
	  echo "note: no pins in $(CONSTRAINTS); installing unconstrained" >&2; \
	  set -x; $(VPY) -m pip install -e '.[test]'; \
	fi
	@# nbgrader is a test tool here (tests/test_grading.py): its command line stays, but
	@# its Jupyter extensions (formgrader, assignment list) stay out of the labs' own
	@# JupyterLab, where students would find menus for a course that does not exist.
	$(VENV)/bin/jupyter server extension disable --sys-prefix $(NBGRADER_SERVER_EXTENSIONS) >/dev/null 2>&1
	$(VENV)/bin/jupyter labextension disable --level=sys_prefix @jupyter/nbgrader >/dev/null 2>&1
	@touch $@

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir=notebooks \
	  $$(if [ "$$(id -u)" -eq 0 ]; then echo --allow-root; fi) $(LAB_ARGS)

test: $(STAMP)
	@echo "+ $(PYTEST_TEST)"
	@status=0; $(PYTEST_TEST) || status=$$?; $(PYTEST_STATUS)

unit: $(STAMP)
	@echo "+ $(PYTEST_UNIT)"
	@status=0; $(PYTEST_UNIT) || status=$$?; $(PYTEST_STATUS)

# The exit-status rule on its own, for tests/test_packaging.py:
# `make -s _pytest_status STATUS=5` fails with "pytest collected no tests".
_pytest_status:
	@status=$(STATUS); $(PYTEST_STATUS)

nav: $(STAMP)
	$(VPY) scripts/navigation.py

slides: $(STAMP)
	$(VPY) scripts/slides.py

grading: $(STAMP)
	$(VPY) scripts/grading.py

student: $(STAMP)
	$(VPY) scripts/student.py

site: $(STAMP)
	$(VPY) scripts/site.py

bench: $(STAMP)
	$(VPY) benchmarks/run_all.py

pcaps: $(STAMP)
	$(VPY) scripts/make_pcaps.py

constraints: $(STAMP)
	$(VPY) -m pip freeze --exclude-editable > $(CONSTRAINTS).freeze
	@{ \
	  echo "# Exact versions Mail Labs is tested with (pip constraints file)."; \
	  echo "# Generated by 'make constraints' (pip freeze --exclude-editable of $(VENV));"; \
	  echo "# do not edit by hand. Used by 'make bootstrap' as: pip install -c constraints.txt -e '.[test]'"; \
	  echo "# To move to newer versions: rm constraints.txt && make distclean && make constraints"; \
	  grep -v -i -E '^(pip|setuptools|wheel)==' $(CONSTRAINTS).freeze; \
	} > $(CONSTRAINTS).tmp
	@rm -f $(CONSTRAINTS).freeze
	@mv $(CONSTRAINTS).tmp $(CONSTRAINTS)
	@touch $(STAMP)
	@echo "wrote $(CONSTRAINTS) ($$(grep -c '==' $(CONSTRAINTS)) pins)"

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . \( -path ./$(VENV) -o -path ./.git \) -prune -o \
	  \( -name __pycache__ -o -name .ipynb_checkpoints \) -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
