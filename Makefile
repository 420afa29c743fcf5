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

.PHONY: install lab test test-other-cpu student benchmark reproduce

install: $(STAMP)

$(STAMP): requirements.txt requirements-colab.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(PIP_FLAGS) -r requirements.txt -e .
	touch $(STAMP)

# As root (containers, some cloud machines) Jupyter refuses to start without --allow-root.
LAB_FLAGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: install
	$(BIN)/jupyter lab $(LAB_FLAGS) notebooks/00_welcome.ipynb

# Two pytest-xdist workers: test files and notebooks are spread over both cores of a small machine.
WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadfile

# Outputs must not depend on the machine: the notebooks once more as another CPU would run them, with torch's
# plain (non-vectorised) kernels, MKL's and oneDNN's most compatible code paths and one OpenMP thread. CI runs it
# after `make test`; a cell that prints a raw floating-point difference fails here.
OTHER_CPU := ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE ONEDNN_MAX_CPU_ISA=SSE41 OMP_NUM_THREADS=1
test-other-cpu: install
	$(OTHER_CPU) $(BIN)/python -m pytest notebooks -n $(WORKERS) --dist loadfile

# Student copies: solutions removed, checks kept, outputs cleared (written to student/).
student: install
	$(BIN)/python -m course_lib.exercises notebooks student

# The benchmarks' quick versions (minutes); each script's docstring gives the full command that wrote data/*.json.
BENCH_OUT ?= /tmp/course-benchmarks
benchmark: install
	mkdir -p $(BENCH_OUT)
	$(BIN)/python benchmarks/bench_ddpm.py --quick
	$(BIN)/python benchmarks/bench_text2image.py --quick --threads 1
	$(BIN)/python benchmarks/bench_inversions.py --n 4 --steps 10,25 --threads 1 --out $(BENCH_OUT)/inversions.json
	$(BIN)/python benchmarks/bench_shapesedit.py --n 25 --threads 1 --out $(BENCH_OUT)/shapesedit.json
	$(BIN)/python benchmarks/bench_samplers.py --quick --threads 1 --out $(BENCH_OUT)/samplers.json
	$(BIN)/python benchmarks/bench_notebooks.py

# Retrain one shipped checkpoint from scratch: make reproduce NAME=ddpm-2d  (list: make reproduce NAME=--list)
reproduce: install
	$(BIN)/python -m course_lib.recipes $(NAME)
