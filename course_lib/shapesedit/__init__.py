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

An output must be a finite float image in [-1, 1], like its input (a decoder's overshoot up to
RANGE_TOLERANCE is clamped); [0, 255] pixels, a larger overshoot, and an image in [0, 1] given by
mistake (told by its locked pixels: check_edit_range) are refused rather than scored after a clamp.

Summaries average each figure over the cases of a kind and over all cases (success and scene_ok as
shares; PSNRs as the mean of the capped per-case values). format_table prints one markdown row per
method with its gain over SDEdit; save_results / load_results keep everything in a JSON file, which
notebook 08 loads when recomputing would exceed its time budget. The package's modules: scores.py
(the cases and the scores), evaluation.py (evaluate, summaries, Wilson intervals, McNemar's test),
tables.py (markdown tables, the results file), figures.py (success against locked PSNR, one
point per row).

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

from course_lib.shapesedit.evaluation import (BASELINE, METRICS, Z95, evaluate, ground_truth_method, identity_method,
                                              mcnemar, restrict, sign_test, summarise, wilson_interval)
from course_lib.shapesedit.scores import (DEFAULT_N, DEFAULT_SEED, DEV_SEED, PSNR_CAP, RANGE_TOLERANCE, SSIM_K1,
                                          SSIM_K2, SSIM_SIGMA, SSIM_WINDOW, capped_psnr, cases, check_edit_range,
                                          edit_succeeded, kind_of, mask_iou, masked_ssim, score, ssim_map)
from course_lib.shapesedit.figures import plot_success_psnr, row_style, success_psnr_points
from course_lib.shapesedit.tables import COMMAND, format_kind_table, format_table, load_results, save_results

__all__ = [
    "BASELINE", "COMMAND", "DEFAULT_N", "DEFAULT_SEED", "DEV_SEED", "METRICS", "PSNR_CAP", "RANGE_TOLERANCE", "SSIM_K1",
    "SSIM_K2", "SSIM_SIGMA", "SSIM_WINDOW", "Z95", "capped_psnr", "cases", "check_edit_range", "edit_succeeded",
    "evaluate", "format_kind_table", "format_table", "ground_truth_method", "identity_method", "kind_of",
    "load_results", "mask_iou", "masked_ssim", "mcnemar", "plot_success_psnr", "restrict", "row_style", "save_results",
    "score", "sign_test", "ssim_map", "success_psnr_points",
    "summarise", "wilson_interval",
]
