"""ShapesEdit: a text-guided editing benchmark whose every case has an exact ground truth.   [notebooks 07-08]

A case is an edit of a shapes-world scene (shapes.edit_cases): the source image, its caption, the
target caption, the rendered ground-truth edited image, and the edit mask (the pixels the edit may
change; outside it source and ground truth are bitwise equal). cases() draws 250 of them, 50 of each
kind (colour, shape, background, add, remove), from the "test" split: the training law (no held-out
colour-shape pair, in the source or the target), drawn from seed streams training never uses
(the text-to-image UNet trains on latent_dataset's "train" scenes of torch seed 0).

An edit method is a callable

    method(image (3, H, W) in [-1, 1], source_prompt, target_prompt, *, generator) -> edited (3, H, W)

(an editing function with its pipeline parts bound by functools.partial). evaluate(method, cases)
calls it once per case, with a generator seeded by seed + case index, and scores each output:

    success      the edit is made, read by the judge of nb 06 (shapes.judge / read_scene) on the
                 edited region only: colour/shape/add: the edited cell holds an object of the target
                 colour AND shape; background: the background reads as the target colour; remove:
                 no object is read in the removed object's cell. What happens elsewhere is the
                 locked metrics' business.
    scene_ok     shapes.judge(edited, target scene).ok: the whole target scene reads back exactly
                 (every object's colour, shape and cell, the count and the background): success with
                 nothing broken elsewhere.
    locked_psnr  PSNR between the edit and the source over the locked pixels (outside the mask),
                 images clamped to [-1, 1] and mapped to [0, 1] (data range 1), capped at PSNR_CAP
                 = 60 dB: identical pixels give infinity, and 60 dB (RMSE 0.001) is below the
                 rounding error of an 8-bit image (58.9 dB), so every capped case is "unchanged".
    locked_ssim  SSIM (Wang et al. 2004: Gaussian window 11 taps, sigma 1.5, K1 = 0.01, K2 = 0.03,
                 data range 1, per channel, mirror-padded borders as scikit-image does) between the
                 source and the edit with its masked region pasted back from the source, averaged
                 over the locked pixels: changes inside the mask never count, and a perfect lock
                 scores exactly 1.
    psnr_gt      whole-image PSNR to the ground-truth edit (same scale and cap).
    seconds      wall time of the method call, per edit.

Summaries average each figure over the cases of a kind and over all cases (success and scene_ok as
shares; PSNRs as the mean of the capped per-case values). format_table prints one markdown row per
method with its gain over SDEdit; save_results / load_results keep everything in a JSON file, which
notebook 08 loads when recomputing would exceed its time budget.

How ShapesEdit relates to PIE-Bench (Ju et al. 2024, "PnP Inversion"), the public editing benchmark:
PIE-Bench holds 700 real and generated images in 10 edit types (random, change object, add object,
delete object, change content, pose, colour, material, background, style), each with source and
target prompts, an instruction and a hand-annotated edit mask, but no ground-truth edited image. It
measures structure distance (DINO-ViT self-similarity) against the source; background preservation
(PSNR, LPIPS, MSE, SSIM outside the mask, with the masked region blanked in both images); and edit
success indirectly, as CLIP similarity of the target prompt to the whole edit and to the edited
region. ShapesEdit keeps the same three questions and answers them exactly: its mask is computed,
not drawn; locked PSNR and SSIM are PIE-Bench's background PSNR and SSIM (averaged over the locked
pixels only); the judge's yes/no replaces the CLIP score, which ranks but cannot say whether an edit
happened; and the ground truth adds a figure PIE-Bench cannot have (PSNR to the true edit), which
also stands in for structure distance. Kinds: colour ~ change colour, shape ~ change object,
background ~ change background, add ~ add object, remove ~ delete object; pose, material, style and
free-form edits have no counterpart in a world of flat shapes.

    >>> from course_lib import shapesedit
    >>> cases = shapesedit.cases()                              # 250 cases, 50 per kind
    >>> result = shapesedit.evaluate(shapesedit.identity_method, cases, name="no edit")
    >>> print(shapesedit.format_table([result]))
"""

from __future__ import annotations

import datetime
import json
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from course_lib import shapes
from course_lib.validation import CourseInputError, check_choice

DEFAULT_N = 250  # 50 cases per edit kind
DEFAULT_SEED = 0  # the benchmark's cases
DEV_SEED = 1  # development cases: every default of course_lib.editing was chosen on these, never on DEFAULT_SEED's
PSNR_CAP = 60.0  # dB on [0, 1] images: RMSE 0.001, below an 8-bit image's rounding error (58.9 dB)
SSIM_WINDOW = 11  # taps of the Gaussian window (radius 5 = int(3.5 * sigma + 0.5), as scikit-image)
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
BASELINE = "sdedit"  # the method every other is compared with (the gain columns)
METRICS = ("success", "scene_ok", "locked_psnr", "locked_ssim", "psnr_gt", "seconds")
COMMAND = "python benchmarks/bench_shapesedit.py --masks --threads 1 --out data/shapesedit_results.json"


# ----------------------------------------------------------------------------------------------
# The cases
# ----------------------------------------------------------------------------------------------

def cases(n: int = DEFAULT_N, seed: int = DEFAULT_SEED, *, size: int = shapes.DEFAULT_SIZE) -> list[shapes.EditResult]:
    """Return the ShapesEdit cases: n edits of 'test' scenes, kinds in turn, deterministic by seed.   [nb 07-08]

    Each is a shapes.EditResult: .source_image, .target_image (the ground truth), .mask (S, S) bool,
    .source_caption, .target_caption, .instruction, .edit.kind; .extra holds {"index", "seed"}.
    cases(m) is the first m of cases(n) for m < n. The benchmark is n = 250 (50 per kind); fewer
    make a quick look (a notebook), not a result.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise CourseInputError(f"n must be an int >= 1 (the benchmark uses {DEFAULT_N}), got {n!r}.")
    out = shapes.edit_cases(n, seed, size=size, split="test", allow_heldout=False)
    for i, case in enumerate(out):
        case.extra.update(index=i, seed=seed)
    return out


def kind_of(case: shapes.EditResult) -> str:
    """Return the case's edit kind (one of shapes.EDIT_KINDS)."""
    return case.edit.kind


# ----------------------------------------------------------------------------------------------
# The scores
# ----------------------------------------------------------------------------------------------

def _unit(image: torch.Tensor) -> torch.Tensor:
    # [-1, 1] -> [0, 1], float64; out-of-range outputs (an unclamped decoder) are clamped first
    return (image.detach().double().cpu().clamp(-1, 1) + 1) / 2


def capped_psnr(x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor | None = None, *,
                data_range: float = 1.0, cap: float = PSNR_CAP) -> float:
    """Return min(cap, 10 log10(data_range^2 / MSE)) over the pixels where keep is True (all by default).   [nb 07]

    Shapes: x, y (C, H, W); keep (H, W) bool. The MSE averages over the kept pixels and the channels.
    """
    if x.shape != y.shape:
        raise CourseInputError(f"x and y must have one shape, got {tuple(x.shape)} and {tuple(y.shape)}.")
    diff2 = (x.double() - y.double()) ** 2
    if keep is not None:
        if keep.shape != x.shape[-2:]:
            raise CourseInputError(f"keep must have shape {tuple(x.shape[-2:])}, got {tuple(keep.shape)}.")
        if not keep.any():
            return float("nan")
        diff2 = diff2[..., keep]
    mse = diff2.mean().item()
    if math.isnan(mse):
        return float("nan")
    return cap if mse == 0 else min(cap, 10 * math.log10(data_range**2 / mse))


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - size // 2
    w = torch.exp(-0.5 * (r / sigma) ** 2)
    return w / w.sum()


def _blur(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    # separable Gaussian filter of (C, H, W), borders mirrored with the edge pixel repeated
    # (d c b a | a b c d: scipy.ndimage's "reflect", which scikit-image's SSIM uses)
    radius = len(window) // 2
    c = x.shape[0]
    for dim in (1, 2):
        n = x.shape[dim]
        if n < radius:
            raise CourseInputError(f"SSIM needs images of at least {radius} pixels per side, got {n}.")
        idx = torch.cat([torch.arange(radius - 1, -1, -1), torch.arange(n), torch.arange(n - 1, n - 1 - radius, -1)])
        x = x.index_select(dim, idx)
    w = window.to(x)
    x = F.conv2d(x[None], w.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)  # along W
    x = F.conv2d(x, w.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)  # along H
    return x[0]


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Return the SSIM map of each channel: l * c * s in a Gaussian window around each pixel.   [Wang et al. 2004, nb 07]

    SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)),
    C1 = (K1 L)^2, C2 = (K2 L)^2, with Gaussian-weighted local means, variances and covariance
    (window 11, sigma 1.5, population covariance). Equal to skimage.metrics.structural_similarity(
    ..., gaussian_weights=True, use_sample_covariance=False, full=True)'s map. Shapes: x, y (C, H, W)
    -> (C, H, W), float64.
    """
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or x.shape != y.shape or x.ndim != 3:
        raise CourseInputError(f"x and y must be tensors of one shape (C, H, W), "
                               f"got {getattr(x, 'shape', x)} and {getattr(y, 'shape', y)}.")
    x, y = x.double(), y.double()
    w = _gaussian_window()
    mu_x, mu_y = _blur(x, w), _blur(y, w)
    var_x = _blur(x * x, w) - mu_x**2
    var_y = _blur(y * y, w) - mu_y**2
    cov = _blur(x * y, w) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def masked_ssim(x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor, data_range: float = 1.0) -> float:
    """Return the mean of the SSIM map (averaged over channels) over the pixels where keep is True.   [nb 07]"""
    if keep.shape != x.shape[-2:]:
        raise CourseInputError(f"keep must have shape {tuple(x.shape[-2:])}, got {tuple(keep.shape)}.")
    if not keep.any():
        return float("nan")
    return ssim_map(x, y, data_range).mean(0)[keep].mean().item()


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Return |A and B| / |A or B| of two bool masks of one shape (the Jaccard index); 1 when both are empty.   [nb 08]"""
    if a.shape != b.shape:
        raise CourseInputError(f"masks must have one shape, got {tuple(a.shape)} and {tuple(b.shape)}.")
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def edit_succeeded(image: torch.Tensor, case: shapes.EditResult) -> bool:
    """Return whether the edit asked for is visible in `image`, by the judge of nb 06 on the edited region.   [nb 07-08]

    colour / shape / add: the edited cell holds an object of the target colour and shape;
    background: the background reads as the target one; remove: no object is read in that cell.
    """
    kind = case.edit.kind
    if kind == "background":
        return shapes.judge(image, {"background": case.target.background, "objects": []}).background is True
    if kind == "remove":
        cell = case.source.objects[case.edit.index].cell
        found = shapes.read_scene(image)
        return found is not None and all(o.cell != cell for o in found.objects)
    if kind == "add":
        obj = case.edit.obj
    else:
        cell = case.source.objects[case.edit.index].cell
        obj = next(o for o in case.target.objects if o.cell == cell)
    j = shapes.judge(image, {"background": None, "objects": [obj.describe()]})
    return j.colour and j.shape and j.position


def score(edited: torch.Tensor, case: shapes.EditResult) -> dict:
    """Return the scores of one edited image: success, scene_ok, locked_psnr, locked_ssim, psnr_gt.   [nb 07-08]"""
    if not isinstance(edited, torch.Tensor) or tuple(edited.shape) != tuple(case.source_image.shape):
        raise CourseInputError(f"an edit method must return an image of shape {tuple(case.source_image.shape)}, "
                               f"got {getattr(edited, 'shape', type(edited).__name__)}.")
    edited = edited.detach().float().cpu()
    if not torch.isfinite(edited).all():
        raise CourseInputError(f"the edit method returned NaN or infinite pixels (case: {case.instruction!r}).")
    src, out, gt = _unit(case.source_image), _unit(edited), _unit(case.target_image)
    keep = ~case.mask
    pasted = torch.where(case.mask, src, out)  # the mask region from the source: only locked pixels differ
    return {
        "success": bool(edit_succeeded(edited, case)),
        "scene_ok": bool(shapes.judge(edited, case.target).ok),
        "locked_psnr": capped_psnr(out, src, keep),
        "locked_ssim": masked_ssim(pasted, src, keep),
        "psnr_gt": capped_psnr(out, gt),
    }


# ----------------------------------------------------------------------------------------------
# Evaluating a method
# ----------------------------------------------------------------------------------------------

def identity_method(image, source_prompt, target_prompt, *, generator=None, **_):
    """An oracle that edits nothing: returns the source image (the floor of success, the ceiling of locking)."""
    return image.clone()


def ground_truth_method(edit_cases: list[shapes.EditResult]):
    """Return an oracle method that answers each case's source image with its ground-truth edit (the ceiling)."""
    table = {(c.source_image.numpy().tobytes(), c.target_caption): c.target_image for c in edit_cases}

    def method(image, source_prompt, target_prompt, *, generator=None, **_):
        key = (image.detach().float().cpu().numpy().tobytes(), target_prompt)
        if key not in table:
            raise CourseInputError("ground_truth_method only knows the cases it was built from.")
        return table[key].clone()

    return method


def _as_batch_output(out, b: int, shape) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise CourseInputError(f"an edit method must return a tensor image, got {type(out).__name__}.")
    out = out.detach().float().cpu()
    if out.shape == shape and b == 1:
        out = out[None]
    if out.shape != (b, *shape):
        raise CourseInputError(f"an edit method must return {'(3, H, W)' if b == 1 else '(B, 3, H, W)'} images of the "
                               f"input's size; got {tuple(out.shape)} for input {(b, *shape)}.")
    return out


def evaluate(method, edit_cases: list[shapes.EditResult], *, name: str, seed: int = 0, pass_mask: bool = False,
             batch_size: int = 1, keep_images: bool = False, progress: bool = False,
             target_prompts: list[str | None] | None = None) -> dict:
    """Edit every case with `method` and score it; return {"name", "settings", "records", "summary"}.   [nb 07-08]

    method(image (3, H, W), source_prompt, target_prompt, generator=torch.Generator seeded by
    seed + the case's position in edit_cases) -> (3, H, W) in [-1, 1]. pass_mask=True also passes mask=case.mask (H, W)
    bool (the ground-truth mask: a "user-given mask" method, named as such in the table).
    batch_size > 1 calls method(images (B, 3, H, W), [source prompts], [target prompts],
    generator=seeded by seed + first position[, mask=(B, H, W)]) -> (B, 3, H, W); seconds is the call's
    time divided by B. records: one dict per case (index into cases(), kind, the scores of score(),
    seconds; PSNRs rounded to 1e-4 dB, SSIM to 1e-6, seconds to 1e-5); summary: summarise(records).
    keep_images=True adds "images" (N, 3, H, W) (not saved). target_prompts: what the method gets
    instead of each case's target caption (nb 09: what the prompt writer made of an instruction); a
    None there is a refusal, scored as the unedited source image (batch_size 1 only).
    """
    if not callable(method):
        raise CourseInputError("method must be callable: method(image, source_prompt, target_prompt, generator=...).")
    if not isinstance(name, str) or not name:
        raise CourseInputError("give the method a name (name='sdedit', ...): the table's rows are named by it.")
    edit_cases = list(edit_cases)
    if not edit_cases or not all(isinstance(c, shapes.EditResult) for c in edit_cases):
        raise CourseInputError("edit_cases must be a non-empty list of cases from shapesedit.cases().")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise CourseInputError(f"batch_size must be an int >= 1, got {batch_size!r}.")
    if target_prompts is not None:
        target_prompts = list(target_prompts)
        if len(target_prompts) != len(edit_cases) or batch_size != 1:
            raise CourseInputError(f"target_prompts needs one prompt (or None) per case ({len(edit_cases)}) and batch_size=1.")
    records, images = [], []
    for start in range(0, len(edit_cases), batch_size):
        chunk = edit_cases[start: start + batch_size]
        generator = torch.Generator().manual_seed(seed + start)
        extra = {}
        if batch_size == 1:
            case = chunk[0]
            target = case.target_caption if target_prompts is None else target_prompts[start]
            args = (case.source_image.clone(), case.source_caption, target)
            if pass_mask:
                extra["mask"] = case.mask.clone()
        else:
            args = (torch.stack([c.source_image for c in chunk]), [c.source_caption for c in chunk],
                    [c.target_caption for c in chunk])
            if pass_mask:
                extra["mask"] = torch.stack([c.mask for c in chunk])
        t0 = time.perf_counter()
        out = args[0].clone() if args[2] is None else method(*args, generator=generator, **extra)
        seconds = (time.perf_counter() - t0) / len(chunk)
        out = _as_batch_output(out, len(chunk), tuple(chunk[0].source_image.shape))
        for offset, (case, edited) in enumerate(zip(chunk, out)):
            s = score(edited, case)
            records.append({"index": case.extra.get("index", start + offset), "kind": case.edit.kind,
                            "success": s["success"], "scene_ok": s["scene_ok"],
                            "locked_psnr": round(s["locked_psnr"], 4), "locked_ssim": round(s["locked_ssim"], 6),
                            "psnr_gt": round(s["psnr_gt"], 4), "seconds": round(seconds, 5)})
            if keep_images:
                images.append(edited)
        if progress:
            print(f"  {name}: {len(records)}/{len(edit_cases)} edits, {seconds:.3f} s per edit", flush=True)
    first = edit_cases[0].extra
    result = {"name": name,
              "settings": {"num_cases": len(edit_cases), "cases_seed": first.get("seed"), "seed": seed,
                           "pass_mask": pass_mask, "batch_size": batch_size, "psnr_cap_db": PSNR_CAP},
              "records": records, "summary": summarise(records)}
    if keep_images:
        result["images"] = torch.stack(images)
    return result


def _mean(values) -> float:
    values = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    return float(statistics.fmean(values)) if values else float("nan")


Z95 = statistics.NormalDist().inv_cdf(0.975)  # 1.95996...: a two-sided 95 % interval of a normal law


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Return the Wilson score interval (low, high) of a success rate k / n, 95 % for z = Z95.   [Wilson 1927, nb 08]

    centre = (p + z^2 / 2n) / (1 + z^2 / n), half-width = z sqrt(p (1 - p) / n + z^2 / 4n^2) / (1 + z^2 / n):
    unlike p +- z sqrt(p (1 - p) / n) it stays inside [0, 1] and does not collapse at 0 % or 100 %.
    For n = 50 and p near 80 % it is about +-11 points; for n = 250, about +-5.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or not 0 <= successes <= n:
        raise CourseInputError(f"need 0 <= successes <= n with n >= 1, got {successes} of {n}.")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar(result_a: dict, result_b: dict) -> dict:
    """Compare two methods' success on the same cases: the exact McNemar test on the cases where they disagree.   [nb 08]

    Returns {"n" (cases compared), "a_only", "b_only" (cases only that method got right),
    "difference" (share, a - b), "p_value" (two-sided, exact binomial on a_only of a_only + b_only),
    "real" (p < 0.05)}. Paired: when one result ran a subset of the other's cases (a row run on
    the first 50 cases only), the test uses that subset; otherwise both must hold the same indices.
    """
    a = {r["index"]: bool(r["success"]) for r in result_a["records"]}
    b = {r["index"]: bool(r["success"]) for r in result_b["records"]}
    if not (set(a) <= set(b) or set(b) <= set(a)):
        raise CourseInputError("mcnemar compares results on the same cases (the same indices, or one a subset of "
                               "the other's); these differ.")
    common = sorted(set(a) & set(b))
    a_only = sum(a[i] and not b[i] for i in common)
    b_only = sum(b[i] and not a[i] for i in common)
    m = a_only + b_only
    tail = sum(math.comb(m, j) for j in range(min(a_only, b_only) + 1)) / 2**m if m else 1.0
    p = min(1.0, 2 * tail)
    return {"n": len(common), "a_only": a_only, "b_only": b_only, "difference": (a_only - b_only) / len(common),
            "p_value": p, "real": p < 0.05}


def restrict(result: dict, indices) -> dict:
    """Return result with only the records of the given case indices, and its summary recomputed.   [nb 08]"""
    keep = set(indices)
    records = [r for r in result["records"] if r["index"] in keep]
    if not records:
        raise CourseInputError("restrict: none of the given case indices is in this result.")
    return {**result, "records": records, "summary": summarise(records)}


def summarise(records: list[dict]) -> dict:
    """Return {"overall": {...}, "by_kind": {kind: {...}}}, each the mean of METRICS and the count n."""
    def group(rs):
        low, high = wilson_interval(sum(bool(r["success"]) for r in rs), len(rs))
        psnr = [float(r["locked_psnr"]) for r in rs if not math.isnan(float(r["locked_psnr"]))]
        half = Z95 * statistics.stdev(psnr) / math.sqrt(len(psnr)) if len(psnr) > 1 else float("nan")
        return {"n": len(rs), **{m: _mean(float(r[m]) for r in rs) for m in METRICS},
                "success_ci": [round(low, 4), round(high, 4)], "locked_psnr_ci_halfwidth": round(half, 3)}

    kinds = [k for k in shapes.EDIT_KINDS if any(r["kind"] == k for r in records)]
    return {"overall": group(records), "by_kind": {k: group([r for r in records if r["kind"] == k]) for k in kinds}}


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
    from course_lib import environment

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
