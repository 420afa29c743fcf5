"""ShapesEdit's tables and results files: markdown tables with the gains over a baseline, JSON in and out.   [nb 07-08]"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

from course_lib import environment, shapes
from course_lib.shapesedit.evaluation import BASELINE, METRICS, restrict, wilson_interval
from course_lib.shapesedit.scores import PSNR_CAP
from course_lib.validation import CourseInputError, check_choice

COMMAND = "python benchmarks/bench_shapesedit.py --masks --threads 1 --out data/shapesedit_results.json"


# ----------------------------------------------------------------------------------------------
# Tables and files
# ----------------------------------------------------------------------------------------------

def _baseline(results: list[dict], baseline: str) -> dict | None:
    for r in results:
        if r["name"] == baseline:
            return r
    for r in results:
        if baseline.lower() in r["name"].lower():
            return r
    return None


def _fmt(value: float, spec: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def format_table(results: list[dict], *, kind: str | None = None, baseline: str = BASELINE) -> str:
    """Return a markdown table: one row per method, overall (or for one edit kind), with the gain over SDEdit.   [nb 08]

    Columns: edit success and whole scene right (%), locked PSNR (dB, capped) and SSIM, PSNR to the
    ground truth (dB), seconds per edit, and the gains over the baseline (the result named `baseline`,
    else the first whose name contains it): success in percentage points, locked PSNR in dB, on the
    row's own cases (the baseline restricted to them when the row ran fewer).
    """
    if kind is not None:
        check_choice(kind, shapes.EDIT_KINDS, "edit kind")
    base = _baseline(results, baseline)

    def figures(r):
        s = r["summary"]
        return s["overall"] if kind is None else s["by_kind"].get(kind)

    head = ["method", "n", "edit success [95 % CI]", "scene right", "locked PSNR (dB)", "locked SSIM",
            "PSNR to truth (dB)", "s / edit", f"success vs {baseline}", f"locked PSNR vs {baseline}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in results:
        f = figures(r)
        if f is None:
            continue
        # the gains compare like with like: a row run on fewer cases is set against the baseline on those cases
        fewer = base is not None and {x["index"] for x in r["records"]} != {x["index"] for x in base["records"]}
        b = None if base is None else figures(restrict(base, [x["index"] for x in r["records"]]) if fewer else base)
        gain_s = "n/a" if b is None else f"{100 * (f['success'] - b['success']):+.1f} pp"
        gain_p = "n/a" if b is None else f"{f['locked_psnr'] - b['locked_psnr']:+.1f} dB"
        low, high = f.get("success_ci") or wilson_interval(round(f["success"] * f["n"]), f["n"])
        lines.append("| " + " | ".join([
            r["name"], str(f["n"]), f"{100 * f['success']:.1f} % [{100 * low:.0f}, {100 * high:.0f}]",
            f"{100 * f['scene_ok']:.1f} %", _fmt(f["locked_psnr"], ".1f"), _fmt(f["locked_ssim"], ".3f"),
            _fmt(f["psnr_gt"], ".1f"), _fmt(f["seconds"], ".3f"), gain_s, gain_p]) + " |")
    return "\n".join(lines)


def format_kind_table(results: list[dict], metric: str = "success") -> str:
    """Return a markdown table of one metric: one row per method, one column per edit kind, and overall.   [nb 08]"""
    check_choice(metric, METRICS, "metric")
    as_pct = metric in ("success", "scene_ok")
    spec = ".3f" if metric in ("locked_ssim", "seconds") else ".1f"
    kinds = [k for k in shapes.EDIT_KINDS if any(k in r["summary"]["by_kind"] for r in results)]
    lines = ["| method | " + " | ".join(kinds) + " | all |", "|---|" + "---:|" * (len(kinds) + 1)]
    for r in results:
        groups = [r["summary"]["by_kind"].get(k) for k in kinds] + [r["summary"]["overall"]]
        cells = ["–" if g is None else (f"{100 * g[metric]:.1f} %" if as_pct else _fmt(g[metric], spec))
                 for g in groups]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_results(results: list[dict], path, *, command: str | None = None, **meta) -> Path:
    """Write the results (names, settings, records, summaries; no images) and how they were made to JSON."""
    doc = {"benchmark": "ShapesEdit", "format": 1, "psnr_cap_db": PSNR_CAP,
           "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "command": command or COMMAND, "versions": environment.versions(), **meta}
    # readable and small: everything indented, but one line per case record
    blocks = []
    for r in results:
        head = json.dumps({k: v for k, v in r.items() if k not in ("images", "records")}, indent=1)[:-2]
        rows = ",\n".join("  " + json.dumps(rec) for rec in r["records"])
        blocks.append(f'{head},\n "records": [\n{rows}\n ]\n}}')
    text = json.dumps(doc, indent=1)[:-2] + ',\n "results": [\n' + ",\n".join(blocks) + "\n]\n}\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load_results(path) -> list[dict]:
    """Read save_results' file back: the list of results; each gets "run" (command, created, versions, ...)."""
    path = Path(path)
    if not path.is_file():
        raise CourseInputError(f"no ShapesEdit results at {path}; compute them with: {COMMAND}")
    doc = json.loads(path.read_text())
    if doc.get("benchmark") != "ShapesEdit" or "results" not in doc:
        raise CourseInputError(f"{path} is not a ShapesEdit results file (written by shapesedit.save_results).")
    run = {k: v for k, v in doc.items() if k != "results"}
    return [{**r, "run": run} for r in doc["results"]]
