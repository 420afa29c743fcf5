"""Time every notebook under nbval, one at a time, and write the kit's run_times.txt.

    OMP_NUM_THREADS=1 .venv/bin/python instructor/time_notebooks.py > instructor/run_times.txt
    OMP_NUM_THREADS=1 .venv/bin/python instructor/time_notebooks.py 06 07     # some notebooks only

Like `benchmarks/bench_notebooks.py` (a fresh `python -m pytest notebooks/NN_*.ipynb` per notebook, kernel start
included), but it also records the CPU seconds the pytest process and its kernel used (user + system, from
os.times() of the finished children). On a shared machine the wall time grows with the other load (up to 10x was
seen here); with one OpenMP thread the CPU seconds are close to the wall time the same run takes on an idle core,
so the kit plans with them. `python -m course_lib.exercises --kit instructor` reads this file.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("only", nargs="*", help="notebook numbers (default: all)")
    args = parser.parse_args(argv)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
    if args.only:
        notebooks = [p for p in notebooks if p.name.split("_")[0] in args.only]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"measured {now} with `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} "
          f"python instructor/time_notebooks.py`")
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, python {platform.python_version()}; "
          f"load average at start {os.getloadavg()[0]:.1f}")
    for path in notebooks:
        before, start = os.times(), time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "pytest", str(path.relative_to(ROOT)), "-q", "-p", "no:cacheprovider"],
                             cwd=ROOT, capture_output=True, text=True)
        wall, after = time.perf_counter() - start, os.times()
        cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        summary = [line for line in run.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
        verdict = re.sub(r" in [\d.]+s.*", "", summary[-1].strip("= ")) if summary else "no summary"
        print(f"{path.name:48s} cpu {cpu:6.1f} s  wall {wall:6.1f} s  {verdict}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
