"""Time every notebook under nbval, one at a time, as `make test` runs it (the course's budget: 60 s each).

    python benchmarks/bench_notebooks.py                 # every notebook, this machine's kernels
    python benchmarks/bench_notebooks.py --other-cpu     # as `make test-other-cpu` runs them (torch's plain kernels)
    python benchmarks/bench_notebooks.py 06 06b 07       # some notebooks only, by their number

Each notebook runs in a fresh `python -m pytest notebooks/NN_*.ipynb` (so the kernel's start, about
5 s, is included, as in the test suite), and the script prints its wall time, the pytest verdict and
the slowest cells (pytest's --durations). The machine's other load changes the figures by up to 2x:
run it on an idle machine, and compare notebooks with each other rather than with a fixed number.
This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OTHER_CPU = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41",
             "OMP_NUM_THREADS": "1"}  # the Makefile's OTHER_CPU
BUDGET_S = 60.0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("only", nargs="*", help="notebook numbers, e.g. 03 03b 06b (default: all)")
    parser.add_argument("--other-cpu", action="store_true", help="run as `make test-other-cpu` does")
    args = parser.parse_args(argv)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
    if args.only:
        notebooks = [p for p in notebooks if p.name.split("_")[0] in args.only]
    env = {**os.environ, **(OTHER_CPU if args.other_cpu else {})}
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}"
          f"{', other-CPU settings ' + str(OTHER_CPU) if args.other_cpu else ''}")
    total = 0.0
    for path in notebooks:
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "pytest", str(path.relative_to(ROOT)), "-q", "--durations=3",
                              "-p", "no:cacheprovider"], cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        total += seconds
        summary = [line for line in run.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
        slow = [line.split("call")[0].strip() + " " + line.split("::")[-1] for line in run.stdout.splitlines()
                if re.match(r"^\d+\.\d+s call", line)]
        flag = "" if seconds <= BUDGET_S else f"  (over the {BUDGET_S:.0f} s budget)"
        print(f"{path.name:40s} {seconds:6.1f} s  {summary[-1].strip('= ') if summary else 'no summary'}{flag}")
        if slow:
            print(f"{'':40s} slowest cells: {'; '.join(slow)}")
    print(f"all notebooks, one after another: {total:.0f} s")


if __name__ == "__main__":
    main()
