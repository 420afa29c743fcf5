"""ShapesEdit's cases and scores: edit success by the judge, locked PSNR and SSIM, PSNR to the ground truth.   [nb 07-08]"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from course_lib import metrics, shapes
from course_lib.validation import CourseInputError, check_float_tensor, check_int

DEFAULT_N = 250  # 50 cases per edit kind
DEFAULT_SEED = 0  # the benchmark's cases
DEV_SEED = 1  # development cases: every default of course_lib.editing was chosen on these, never on DEFAULT_SEED's
PSNR_CAP = 60.0  # dB on [0, 1] images: RMSE 0.001, below an 8-bit image's rounding error (58.9 dB)
RANGE_TOLERANCE = 0.05  # how far past [-1, 1] a method's output may reach (a decoder's overshoot) before it is refused
SSIM_WINDOW = 11  # taps of the Gaussian window (radius 5 = int(3.5 * sigma + 0.5), as scikit-image)
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


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
    n = check_int(n, "n", minimum=1, hint=f"the number of cases; the benchmark uses {DEFAULT_N}")
    seed = check_int(seed, "seed", minimum=0)
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
    # [-1, 1] -> [0, 1], float64; a decoder's overshoot (within RANGE_TOLERANCE, checked by score) is clamped first
    return (image.detach().double().cpu().clamp(-1, 1) + 1) / 2


def capped_psnr(x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor | None = None, *,
                data_range: float = 1.0, cap: float = PSNR_CAP) -> float:
    """Return min(cap, metrics.psnr) over the pixels where keep is True (all by default): 10 log10(data_range^2 / MSE).   [nb 07]

    Shapes: x, y (C, H, W); keep (H, W) bool. The MSE averages over the kept pixels and the channels.
    NaN when keep selects no pixel, or when an input holds NaN.
    """
    check_float_tensor(x, "x")
    check_float_tensor(y, "y")
    if x.shape != y.shape:
        raise CourseInputError(f"x and y must have one shape, got {tuple(x.shape)} and {tuple(y.shape)}.")
    if keep is not None:
        if not isinstance(keep, torch.Tensor) or keep.dtype != torch.bool or keep.shape != x.shape[-2:]:
            raise CourseInputError(f"keep must be a bool tensor of shape {tuple(x.shape[-2:])}, "
                                   f"got {getattr(keep, 'shape', type(keep).__name__)}.")
        if not keep.any():
            return float("nan")
    if not (bool(torch.isfinite(x).all()) and bool(torch.isfinite(y).all())):
        return float("nan")  # NaN in, NaN out: a broken output is never scored as a capped 60 dB
    return metrics.psnr(x, y, data_range=data_range, keep=keep, cap=cap)


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


def check_edit_range(edited: torch.Tensor, case: shapes.EditResult) -> None:
    """Raise if an edited image (3, H, W) is not in [-1, 1] (within RANGE_TOLERANCE), or reads as [0, 1] pixels.   [nb 07-08]

    [0, 255] or unclamped outputs fail the range test. An image in [0, 1] given by mistake lies inside
    [-1, 1], so it is caught by what it does to the locked pixels, which a method keeps near the
    source x: it is refused when none of its values is negative and its locked pixels follow
    (x + 1) / 2, a least-squares line out = a x + b with a and b both within 0.1 of 1/2 (a kept
    image has a = 1, b = 0; a flat one a = 0). The line needs locked pixels of several values (their
    standard deviation >= 0.1, as in 211 of the 250 ShapesEdit cases); where they are all one
    colour, an image in [0, 1] cannot be told from a dull one in [-1, 1], and is scored as it is.
    """
    low, high = float(edited.min()), float(edited.max())
    if low < -1 - RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        hint = " They look like [0, 255] pixels: convert with x / 127.5 - 1." if high > 2 else \
            " Clamp a decoder's overshoot with .clamp(-1, 1)."
        raise CourseInputError(f"an edit method must return images in [-1, 1] (like its input), got values in "
                               f"[{low:.3g}, {high:.3g}] (case: {case.instruction!r}).{hint}")
    locked = ~case.mask
    if low < 0 or not locked.any():
        return
    source, out = case.source_image.double()[:, locked].flatten(), edited.double()[:, locked].flatten()
    spread = float(source.std()) if source.numel() > 1 else 0.0
    if spread < 0.1:
        return
    slope = float(((source - source.mean()) * (out - out.mean())).mean()) / spread**2 * (len(source) - 1) / len(source)
    intercept = float(out.mean()) - slope * float(source.mean())
    if abs(slope - 0.5) <= 0.1 and abs(intercept - 0.5) <= 0.1:
        raise CourseInputError(f"the edited image looks like pixels in [0, 1]: its locked pixels follow (x + 1) / 2 of "
                               f"the source x (slope {slope:.2f}, intercept {intercept:.2f}; case: {case.instruction!r}). "
                               f"Return images in [-1, 1], e.g. x * 2 - 1.")


def score(edited: torch.Tensor, case: shapes.EditResult) -> dict:
    """Return the scores of one edited image: success, scene_ok, locked_psnr, locked_ssim, psnr_gt.   [nb 07-08]

    edited (3, H, W) must be finite and in [-1, 1] (check_edit_range); a decoder's small overshoot is clamped.
    """
    if not isinstance(case, shapes.EditResult):
        raise CourseInputError(f"case must be a case of shapesedit.cases(), got {type(case).__name__}.")
    if not isinstance(edited, torch.Tensor) or tuple(edited.shape) != tuple(case.source_image.shape):
        raise CourseInputError(f"an edit method must return an image of shape {tuple(case.source_image.shape)}, "
                               f"got {getattr(edited, 'shape', type(edited).__name__)}.")
    if not edited.is_floating_point():
        raise CourseInputError(f"an edit method must return a float image in [-1, 1], got dtype {edited.dtype} "
                               f"(uint8 pixels: x.float() / 127.5 - 1).")
    edited = edited.detach().float().cpu()
    if not torch.isfinite(edited).all():
        raise CourseInputError(f"the edit method returned NaN or infinite pixels (case: {case.instruction!r}).")
    check_edit_range(edited, case)
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
