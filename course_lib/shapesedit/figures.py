"""ShapesEdit in one picture: edit success against locked PSNR for every row, with 95 % intervals.   [nb 08]"""

from __future__ import annotations

import math
import re

import matplotlib.pyplot as plt

from course_lib.shapesedit.evaluation import wilson_interval
from course_lib.validation import CourseInputError, check_number

# colour per method family, marker per inversion (the names benchmarks/bench_shapesedit.py gives its rows)
FAMILY_COLOURS = {"sdedit": "black", "inversion": "tab:blue", "prompt_to_prompt": "tab:orange",
                  "mask_locking": "tab:green", "reference": "0.55"}
INVERSION_MARKERS = {"ddim": "o", "negative_prompt": "v", "null_text": "s", "direct": "D", "edit_friendly": "*",
                     "default": "P", "": "o"}
_ROW = re.compile(r"^(?P<family>[a-z_]+)(?: \((?P<variant>[^)]*)\))?$")


def row_style(name: str) -> tuple[str, str]:
    """Return (family, variant) of a results row's name: "mask_locking (ddim)" -> ("mask_locking", "ddim").   [nb 08]

    A name that mentions "reference" is the family "reference" (an oracle, not a method); a variant
    that starts with "default" (a default method with one setting changed) is "default".
    """
    if not isinstance(name, str) or not name:
        raise CourseInputError(f"a results row's name must be a non-empty str, got {name!r}.")
    if "reference" in name:
        return "reference", ""
    match = _ROW.match(name)
    if match is None:
        return name, ""
    variant = match.group("variant") or ""
    return match.group("family"), "default" if variant.startswith("default") else variant


def success_psnr_points(results: list[dict]) -> list[dict]:
    """Return one point per row: success with its Wilson 95 % interval, locked PSNR with mean +- 1.96 std / sqrt(n).   [nb 08]

    Each point is {"name", "family", "variant", "n", "success", "success_low", "success_high",
    "locked_psnr", "psnr_halfwidth"}, from the row's overall summary (shapesedit.summarise).
    """
    if not isinstance(results, list) or not results:
        raise CourseInputError("results must be a non-empty list of ShapesEdit results (shapesedit.load_results).")
    points = []
    for r in results:
        if not isinstance(r, dict) or "summary" not in r or "name" not in r:
            raise CourseInputError("each result must be a dict with 'name' and 'summary' (shapesedit.evaluate's).")
        o = r["summary"]["overall"]
        low, high = o.get("success_ci") or wilson_interval(round(o["success"] * o["n"]), o["n"])
        half = o.get("locked_psnr_ci_halfwidth", float("nan"))
        family, variant = row_style(r["name"])
        points.append({"name": r["name"], "family": family, "variant": variant, "n": o["n"],
                       "success": o["success"], "success_low": low, "success_high": high,
                       "locked_psnr": o["locked_psnr"], "psnr_halfwidth": 0.0 if math.isnan(half) else half})
    return points


def plot_success_psnr(results: list[dict], *, target_success: float = 0.9, target_psnr: float = 35.0,
                      fontsize: float = 11):
    """Draw edit success (x) against locked PSNR (y) for every row, 95 % intervals as bars; return the figure.   [nb 08]

    Two panels, one above the other: every row (the references reach the 60 dB cap), and the
    automatic rows enlarged. Colour: the method; marker: the inversion; grey: the reference rows.
    Dashed lines: the capstone's first target (target_success, target_psnr); up and right is better.
    """
    target_success = check_number(target_success, "target_success", low=0, high=1)
    target_psnr = check_number(target_psnr, "target_psnr", low=0)
    fontsize = check_number(fontsize, "fontsize", low=4)
    points = success_psnr_points(results)
    fig, axes = plt.subplots(2, 1, figsize=(6.4, 11), layout="constrained", height_ratios=(1, 1.4))
    automatic = [p for p in points if p["family"] != "reference"]
    for ax, shown in zip(axes, (points, automatic)):
        for p in shown:
            x, y = 100 * p["success"], p["locked_psnr"]
            ax.errorbar(x, y, xerr=[[x - 100 * p["success_low"]], [100 * p["success_high"] - x]],
                        yerr=p["psnr_halfwidth"], fmt=INVERSION_MARKERS.get(p["variant"], "o"),
                        color=FAMILY_COLOURS.get(p["family"], "tab:purple"),
                        markersize=11 if p["variant"] == "edit_friendly" else 8,  # a star looks small
                        elinewidth=1, capsize=2, label=p["name"], alpha=0.9)
        ax.axvline(100 * target_success, color="0.3", linestyle="--", linewidth=1)
        ax.axhline(target_psnr, color="0.3", linestyle="--", linewidth=1)
        ax.set_xlabel("edit success (%)", fontsize=fontsize)
        ax.set_ylabel("locked PSNR (dB)", fontsize=fontsize)
        ax.tick_params(labelsize=fontsize - 1)
        ax.grid(alpha=0.3)
    axes[0].set_title("every row (grey: references)", fontsize=fontsize)
    axes[1].set_title(f"the methods, enlarged (dashed: {100 * target_success:.0f} %, {target_psnr:g} dB)",
                      fontsize=fontsize)
    placed = []  # the references are few and far apart: name them where they sit, stacking close ones
    for p in (p for p in points if p["family"] == "reference"):
        x, y = 100 * p["success"], p["locked_psnr"]
        inner = re.search(r"\((.*)\)", p["name"]).group(1).replace(": reference", "").replace("reference", "")
        label = inner or p["name"].replace(" (reference)", "")
        stacked = sum(abs(x - a) < 15 and abs(y - b) < 5 for a, b in placed)
        placed.append((x, y))
        dy = 8 if x >= 50 and y < 50 else -13 * (stacked + 1)  # above a reference among the methods' points
        axes[0].annotate(label, (x, y), xytext=(6 if x < 50 else -6, dy), textcoords="offset points",
                         ha="left" if x < 50 else "right", fontsize=fontsize - 3, color="0.35")
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=fontsize - 3, frameon=False)
    low_y = min(p["locked_psnr"] - p["psnr_halfwidth"] for p in automatic)
    high_y = max(max(p["locked_psnr"] + p["psnr_halfwidth"] for p in automatic), target_psnr)
    axes[1].set_ylim(low_y - 1, high_y + 1)
    return fig
