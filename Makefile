# The course's commands. On a fresh machine (Python 3.11, nothing installed):
#   make lab    installs everything into .venv and opens the course in JupyterLab
#   make test   installs everything into .venv and runs the unit tests and every notebook under nbval
# Other machines: `make lab PYTHON=python3.12`; a Linux machine without a GPU that does not find the
# CPU build of torch locally: `make lab PIP_FLAGS="--extra-index-url https://download.pytorch.org/whl/cpu"`.

PYTHON ?= python3
VENV ?= .venv
PIP_FLAGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lab test student benchmark reproduce

install: $(STAMP)

$(STAMP): requirements.txt requirements-colab.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(PIP_FLAGS) -r requirements.txt -e .
	touch $(STAMP)

# As root (containers, some cloud machines) Jupyter refuses to start without --allow-root.
LAB_FLAGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: install
	$(BIN)/jupyter lab $(LAB_FLAGS) notebooks/00_welcome.ipynb

test: install
	$(BIN)/python -m pytest

# Student copies: solutions removed, checks kept, outputs cleared (written to student/).
student: install
	$(BIN)/python -m course_lib.exercises notebooks student

benchmark: install
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

# Retrain one shipped checkpoint from scratch: make reproduce NAME=ddpm-2d  (list: make reproduce NAME=--list)
reproduce: install
	$(BIN)/python -m course_lib.recipes $(NAME)
