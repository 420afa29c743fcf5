"""Evaluating an edit method on ShapesEdit: evaluate() and its summaries, Wilson intervals and McNemar's test.   [nb 07-08]"""

from __future__ import annotations

import math
import statistics
import time

import torch

from course_lib import shapes
from course_lib.shapesedit.scores import PSNR_CAP, score
from course_lib.validation import CourseInputError, check_int

BASELINE = "sdedit"  # the method every other is compared with (the gain columns)
METRICS = ("success", "scene_ok", "locked_psnr", "locked_ssim", "psnr_gt", "seconds")


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
    if not out.is_floating_point():
        raise CourseInputError(f"an edit method must return a float image in [-1, 1], got dtype {out.dtype} "
                               f"(uint8 pixels: x.float() / 127.5 - 1).")
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
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
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
    n = check_int(n, "n", minimum=1, hint="the number of trials")
    successes = check_int(successes, "successes", minimum=0, maximum=n,
                          hint=f"need 0 <= successes <= n = {n}")
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
    a, b, common = _paired(result_a, result_b, "success", "mcnemar")
    a_only = sum(a[i] and not b[i] for i in common)
    b_only = sum(b[i] and not a[i] for i in common)
    p = _two_sided_binomial(a_only, b_only)
    return {"n": len(common), "a_only": a_only, "b_only": b_only, "difference": (a_only - b_only) / len(common),
            "p_value": p, "real": p < 0.05}


def sign_test(result_a: dict, result_b: dict, key: str = "locked_psnr") -> dict:
    """Compare two methods' per-case scores (key of the records) on the same cases: the exact sign test.   [nb 10]

    The paired test for a figure that is not a yes/no (locked PSNR): on the cases where the two differ,
    is a higher about as often as b? Returns {"n", "a_higher", "b_higher", "median_difference" (a - b,
    over all common cases), "p_value" (two-sided, exact binomial), "real" (p < 0.05)}. Cases are
    paired as in mcnemar; a case where either score is NaN is left out.
    """
    a, b, common = _paired(result_a, result_b, key, "sign_test")
    diffs = [a[i] - b[i] for i in common if not (math.isnan(a[i]) or math.isnan(b[i]))]
    if not diffs:
        raise CourseInputError(f"sign_test found no case where both results have a number for {key!r}.")
    a_higher, b_higher = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    p = _two_sided_binomial(a_higher, b_higher)
    return {"n": len(diffs), "a_higher": a_higher, "b_higher": b_higher,
            "median_difference": statistics.median(diffs), "p_value": p, "real": p < 0.05}


def _paired(result_a: dict, result_b: dict, key: str, name: str):
    a = {r["index"]: r[key] for r in result_a["records"]}
    b = {r["index"]: r[key] for r in result_b["records"]}
    if not (set(a) <= set(b) or set(b) <= set(a)):
        raise CourseInputError(f"{name} compares results on the same cases (the same indices, or one a subset of "
                               "the other's); these differ.")
    if isinstance(next(iter(a.values()), False), bool) or key == "success":
        a, b = {i: bool(v) for i, v in a.items()}, {i: bool(v) for i, v in b.items()}
    else:
        a, b = {i: float(v) for i, v in a.items()}, {i: float(v) for i, v in b.items()}
    return a, b, sorted(set(a) & set(b))


def _two_sided_binomial(k_a: int, k_b: int) -> float:
    """Exact two-sided p of k_a against k_b under Binomial(k_a + k_b, 1/2) (McNemar's and the sign test's)."""
    m = k_a + k_b
    tail = sum(math.comb(m, j) for j in range(min(k_a, k_b) + 1)) / 2**m if m else 1.0
    return min(1.0, 2 * tail)


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
