"""Guidance: steering a diffusion model toward a condition, told apart and written out.   [notebook 06]

Three methods that seed 000 §4.2 runs together:

- classifier guidance (Dhariwal & Nichol 2021): a classifier p(c | x_t) trained on noised data adds
  its gradient to the unconditional score (classifier_guided_eps);
- CLIP guidance (the 2021 CLIP-guided diffusion notebooks, then GLIDE's comparison): the same with the
  gradient of a CLIP similarity instead of a classifier;
- classifier-free guidance (CFG, Ho & Salimans 2021): no classifier at all; one network trained
  with its condition sometimes dropped gives eps(x_t, c) and eps(x_t), and their difference plays
  the classifier's gradient (cfg_combine with diffusers' g, cfg_combine_ho with Ho & Salimans' w = g - 1).

All three rest on two facts. The noise prediction is a scaled score (Tweedie):

    grad log p_t(x_t) = -eps*(x_t, t) / sqrt(1 - ab_t)                       (6.1)

and Bayes' rule splits the conditional score:

    grad log p_t(x_t | c) = grad log p_t(x_t) + grad log p_t(c | x_t)        (6.2)

so in eps units the conditional eps is eps_u - sqrt(1 - ab_t) * grad log p_t(c | x_t): the factor
-sqrt(1 - ab_t) that seed 000 §4.2 leaves out. Guidance scales the second term.

On digits (nb 06): generate_digits_cfg samples the class-conditional UNet (data/ddpm_digits_cond,
label 10 = models.NULL_CLASS is "no label") with CFG, and digits_guidance_sweep measures accuracy
and within-class diversity across guidance scales.

    >>> from course_lib import checkpoints, guidance
    >>> model = checkpoints.load("ddpm_digits_cond", device="cpu")
    >>> x0 = guidance.generate_digits_cfg(model, [3, 3, 7], guidance_scale=2.0,
    ...                                   generator=torch.Generator().manual_seed(0))   # (3, 1, 16, 16)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from course_lib import latent, metrics, models, samplers
from course_lib import noise as noise_lib
from course_lib.validation import (
    CourseInputError,
    check_alpha_bar_t,
    check_finite,
    check_float_tensor,
    check_int,
    check_number,
    check_positive_int,
    check_same_shape,
    check_schedule_table,
)

DIGITS_SWEEP_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0, 7.5)  # diffusers' g: 0 unconditional, 1 conditional, 7.5 SD's default


def check_guidance_scale(guidance_scale, name: str = "guidance_scale") -> float:
    """Return the guidance scale as a float if it is a finite real number (numpy scalars too), else raise saying what is expected."""
    hint = "1 = no guidance, 7.5 is SD's default"
    if isinstance(guidance_scale, torch.Tensor):  # one scale per call: a tensor is usually a batch by mistake
        raise CourseInputError(f"{name} must be a finite number ({hint}), got a tensor; pass float(...).")
    return check_number(guidance_scale, name, hint=hint)


# ----------------------------------------------------------------------------------------------
# Score and eps: one quantity in two units
# ----------------------------------------------------------------------------------------------

def score_from_eps(eps: torch.Tensor, alpha_bar_t) -> torch.Tensor:
    """Return the score grad log p_t(x_t) = -eps / sqrt(1 - ab_t) of a noise prediction.   [eq. 6.1, nb 06]

    Exact for the ideal eps* = E[eps | x_t] (Tweedie); for a trained eps_hat, its score estimate.
    alpha_bar_t: a number or one value per sample shaped (B, 1, ...) (schedules.gather).
    """
    check_float_tensor(eps, "eps")
    alpha_bar_t = check_alpha_bar_t(alpha_bar_t, eps)
    return -eps / torch.sqrt(1 - alpha_bar_t)


def eps_from_score(score: torch.Tensor, alpha_bar_t) -> torch.Tensor:
    """Return eps = -sqrt(1 - ab_t) * score: a score in noise-prediction units (the factor seed 000 §4.2 misses).   [eq. 6.1, nb 06]"""
    check_float_tensor(score, "score")
    alpha_bar_t = check_alpha_bar_t(alpha_bar_t, score)
    return -torch.sqrt(1 - alpha_bar_t) * score


def x0_from_score(score: torch.Tensor, x_t: torch.Tensor, alpha_bar_t) -> torch.Tensor:
    """Return Tweedie's x0_hat = E[x0 | x_t] = (x_t + (1 - ab_t) * score) / sqrt(ab_t) from a score.   [Tweedie, nb 06 ex. 6.3]

    The score in noise units (eps_from_score) put into notebook 02's x0_hat; exact for the exact score.
    alpha_bar_t: a number or one value per sample shaped (B, 1, ...). Shapes: score and x_t alike, (B, ...).
    """
    check_float_tensor(score, "score")
    check_float_tensor(x_t, "x_t")
    check_same_shape(score=score, x_t=x_t)
    alpha_bar_t = check_alpha_bar_t(alpha_bar_t, score)
    return (x_t + (1 - alpha_bar_t) * score) / torch.sqrt(alpha_bar_t)


def classifier_guided_eps(eps: torch.Tensor, grad_log_p_c: torch.Tensor, alpha_bar_t, scale: float = 1.0) -> torch.Tensor:
    """Return eps - scale * sqrt(1 - ab_t) * grad log p(c | x_t): classifier guidance.   [eq. 6.2, nb 06]

    Bayes' rule (6.2) in eps units (Dhariwal & Nichol 2021, Algorithm 2). scale = 1 turns the
    unconditional eps into the conditional one exactly; scale > 1 gives, at each noise level, the score of
    p_t(x) p_t(c | x)^scale. Those tilted densities are in general not one diffusion's marginals, so the samples
    do not follow p(x) p(c | x)^scale (notebook 06 measures the gap). A classifier's gradient gives classifier
    guidance; a CLIP similarity's gradient, CLIP guidance.
    Shapes: eps and grad_log_p_c alike, (B, ...).
    """
    check_float_tensor(eps, "eps")
    check_float_tensor(grad_log_p_c, "grad_log_p_c")
    check_same_shape(eps=eps, grad_log_p_c=grad_log_p_c)
    scale = check_guidance_scale(scale, "scale")
    alpha_bar_t = check_alpha_bar_t(alpha_bar_t, eps)
    return eps - scale * torch.sqrt(1 - alpha_bar_t) * grad_log_p_c


# ----------------------------------------------------------------------------------------------
# Classifier-free guidance: two conventions, one formula
# ----------------------------------------------------------------------------------------------

def cfg_combine(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Return eps_u + g (eps_c - eps_u): classifier-free guidance in diffusers' convention.   [eq. 6.4, nb 06]

    g = 1 is the conditional model alone, g = 0 the unconditional one. Ho & Salimans (and seed 000, with s)
    write eps_c + w (eps_c - eps_u), the same thing with g = w + 1 (cfg_combine_ho).
    With ideal eps's, eps_c - eps_u = -sqrt(1 - ab_t) grad log p(c | x_t) (6.2), so CFG at g is
    classifier guidance at scale g with the model's own implicit classifier.
    """
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def cfg_combine_ho(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, w: float) -> torch.Tensor:
    """Return (1 + w) eps_c - w eps_u = eps_c + w (eps_c - eps_u): Ho & Salimans' weight w = g - 1.   [eq. 6.3, nb 06]"""
    return eps_cond + w * (eps_cond - eps_uncond)


def tilted_moments(mixture, component: int, guidance_scale: float, *, step: float = 0.01,
                   lim: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the mean (2,) and per-axis std (2,) of p(x) p(c | x)^g / Z for a 2-D Gaussian mixture.   [CFG, nb 06]

    p(c | x) is the responsibility of `component` (w_c N_c(x) / p(x)), so the tilted law is
    p(x)^(1 - g) (w_c N_c(x))^g: g = 0 is the mixture, g = 1 the component alone. It is the law
    guidance at scale g tilts the data to; a CFG sampler does not draw from it (nb 06 compares).
    Computed in float64 by quadrature on a square grid of spacing `step` over [-lim, lim]^2
    (default lim: the largest |mean| coordinate plus 8 of the largest std). g must be >= 0.
    """
    if getattr(mixture, "means", None) is None or mixture.means.ndim != 2 or mixture.means.shape[1] != 2:
        raise CourseInputError("tilted_moments takes a 2-D mixtures.GaussianMixture (means of shape (K, 2)).")
    k = mixture.means.shape[0]
    component = check_int(component, "component", minimum=0, maximum=k - 1, hint="which Gaussian is c")
    if float(mixture.weights[component]) <= 0:
        raise CourseInputError(f"component {component} has weight 0: p(c | x) is 0 everywhere, so there is nothing to tilt to.")
    g = check_guidance_scale(guidance_scale)
    if g < 0:
        raise CourseInputError(f"guidance_scale must be >= 0 here (the tilted law may not normalise below 0), got {g}.")
    step = check_number(step, "step", low=0, low_open=True, hint="the grid spacing")
    if lim is not None:
        lim = check_number(lim, "lim", low=0, low_open=True, hint="the grid's half-width")
    means, stds = mixture.means.double().cpu(), mixture.stds.double().cpu()
    weights = mixture.weights.double().cpu()
    if lim is None:
        lim = float(means.abs().max() + 8 * stds.max())
    u = torch.arange(-lim, lim + step / 2, step, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(u, u, indexing="xy"), dim=-1).reshape(-1, 2)  # (N, 2)
    log_tilt = torch.empty(len(grid), dtype=torch.float64)
    for i in range(0, len(grid), 65536):  # chunks keep the (n, K) table small
        x = grid[i: i + 65536]
        sq = ((x[:, None, :] - means[None]) ** 2).sum(-1)  # (n, K)
        log_wn = torch.log(weights) - 0.5 * sq / stds**2 - torch.log(2 * math.pi * stds**2)  # log w_k N_k(x), D = 2
        log_p = torch.logsumexp(log_wn, dim=1)
        log_tilt[i: i + 65536] = (1 - g) * log_p + g * log_wn[:, component]  # log p + g log p(c | x)
    w = torch.softmax(log_tilt, dim=0)[:, None]
    mean = (w * grid).sum(0)
    std = (w * (grid - mean) ** 2).sum(0).sqrt()
    return mean, std


# ----------------------------------------------------------------------------------------------
# Digits: CFG with the class-conditional UNet (label 10 = no label), and a sweep over the scale
# ----------------------------------------------------------------------------------------------

def _check_digits_model(model) -> None:
    n = getattr(getattr(model, "config", None), "num_class_embeds", None)
    if n is None or n < models.NUM_DIGIT_CLASSES + 1:
        raise CourseInputError(
            "model must be the class-conditional digits UNet (num_class_embeds = 11: digits 0-9 and the null "
            "class 10), e.g. checkpoints.load('ddpm_digits_cond'); got a model without that class embedding.")


def check_digit_labels(labels) -> torch.Tensor:
    """Return labels as a (B,) int64 tensor after checking each is a digit 0..9, else raise."""
    if isinstance(labels, bool):
        labels = None
    elif isinstance(labels, (int, np.integer)):
        labels = [int(labels)]
    try:
        tensor = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):
        tensor = None
    if tensor is None or tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool \
            or tensor.ndim != 1 or len(tensor) == 0:
        raise CourseInputError(f"labels must be digits 0..9: an int, a list of ints or a (B,) integer tensor, "
                               f"got {labels!r}.")
    tensor = tensor.long().cpu()
    outside = (tensor < 0) | (tensor >= models.NUM_DIGIT_CLASSES)
    if outside.any():
        raise CourseInputError(
            f"labels must be digits 0..9, got {int(tensor[outside][0])}. For unconditional samples use "
            f"guidance_scale=0 (or models.generate(..., class_labels=models.NULL_CLASS)).")
    return tensor


def cfg_denoiser(model, guidance_scale: float, cond: dict, uncond: dict | None = None, *,
                 pipeline_convention: bool = False, both_rows: bool = False):
    """Return denoiser(xt, t) -> eps_u + g (eps_c - eps_u) with ONE model call per step: the course's only CFG loop body.   [eq. 6.4, nb 06]

    model: a denoiser (nn.Module, run through latent.call_model) or a latent.LatentSystem (run through
    its predict). cond and uncond are the conditions of the conditional and the unconditional rows
    (class_labels=(B,) for the digits UNet, encoder_hidden_states=(B, L, D) for a text UNet: what
    system.encode_prompt returns), one row per row of x_t. The batch sent is [x_t; x_t] with the
    conditions [uncond; cond]: null rows first, as StableDiffusionPipeline lays it out. Where the
    combination needs one half only, only that half runs: g = 1 the conditional rows, g = 0 the
    unconditional ones; with pipeline_convention=True every g <= 1 runs the conditional rows alone, as
    the pipeline turns CFG off there (uncond may then be None). both_rows=True always runs both halves
    (attention control reads the whole layout). The model runs in its own dtype; the output comes back
    in x_t's.
    """
    g = check_guidance_scale(guidance_scale)
    if isinstance(model, latent.LatentSystem):
        model.denoiser.eval()
        predict = model.predict
    else:
        model.eval()

        def predict(x, t, condition):
            return latent.call_model(model, x, t, condition)

    cond_only = g == 1.0 or (pipeline_convention and g <= 1.0)
    if uncond is None and (both_rows or not cond_only):
        raise CourseInputError(f"guidance at g = {g:g} needs the unconditional rows (uncond).")

    @torch.no_grad()
    def denoiser(xt: torch.Tensor, t: int) -> torch.Tensor:
        b = xt.shape[0]
        sizes = {k: len(v) for k, v in {**cond, **(uncond or {})}.items()}
        if any(n != b for n in sizes.values()):
            raise CourseInputError(f"x_t holds {b} samples but the conditions hold {sizes} rows; give one per sample (one label or prompt each).")
        if not both_rows and cond_only:
            return predict(xt, t, cond).to(xt.dtype)
        if not both_rows and g == 0.0:
            return predict(xt, t, uncond).to(xt.dtype)
        both = {k: torch.cat([uncond[k], cond[k]]) for k in cond}
        eps_u, eps_c = predict(torch.cat([xt, xt]), t, both).to(xt.dtype).chunk(2)
        return eps_c if cond_only else cfg_combine(eps_u, eps_c, g)

    return denoiser


def cfg_digits_denoiser(model, labels, guidance_scale: float = 2.0):
    """Return model(xt, t) -> eps_u + g (eps_c - eps_u) for the digits UNet: ONE model call per step.   [eq. 6.4, nb 06]

    cfg_denoiser with class labels [10, ..., 10; labels] (the null class first). At g = 1 only the
    conditional rows are run, at g = 0 only the null rows.
    """
    _check_digits_model(model)
    labels = check_digit_labels(labels)
    return cfg_denoiser(model, guidance_scale, {"class_labels": labels},
                        {"class_labels": torch.full_like(labels, models.NULL_CLASS)})


@torch.no_grad()
def generate_digits_cfg(model, labels, guidance_scale: float = 2.0, *, num_steps: int = 50,
                        generator: torch.Generator | None = None, alpha_bars: torch.Tensor | None = None,
                        spacing: str = "trailing", sampler="ddim", clip_sample: bool = False,
                        use_clipped_model_output: bool = False, x_T: torch.Tensor | None = None,
                        callback=None) -> torch.Tensor:
    """Return digits (B, 1, 16, 16) in [-1, 1] of the given classes, sampled with CFG at scale g (DDIM, eta 0, by default).   [eq. 6.4, nb 06]

    The training schedule (models.SCHEDULE, linear, 1,000 steps) and trailing spacing, as in
    models.generate. x_T ~ N(0, I) is drawn from `generator` on the CPU (exactly as models.generate
    draws it) unless given, so g = 1 equals models.generate(..., class_labels=labels) and g = 0 the
    null-class samples for one seed. The result is clamped to [-1, 1]. sampler: any of
    samplers.SAMPLERS by name, or a Sampler object (clip_sample and use_clipped_model_output are
    DDIM's options; give them only with sampler="ddim").

    Clipping: CFG extrapolates, so at high noise x0_hat lands far outside [-1, 1]. clip_sample=True
    with DDIM's default use_clipped_model_output=False clips x0_hat but keeps the unclipped eps in
    the step's direction term; the two disagree and guided digits wash out into grey blurs (measured
    on data/ddpm_digits_cond, 500 samples: 94 % right at g = 2, 42 % at g = 3). Hence the default
    clip_sample=False; clip_sample=True with use_clipped_model_output=True (eps recomputed from the
    clipped x0_hat) is consistent too. callback(i, t, Step) is passed to samplers.sample.
    """
    labels = check_digit_labels(labels)
    generator = noise_lib.as_generator(generator)
    denoiser = cfg_digits_denoiser(model, labels, guidance_scale)
    clipping = {"clip_sample": clip_sample, "use_clipped_model_output": use_clipped_model_output}
    if sampler == "ddim":
        sampler = samplers.get_sampler("ddim", **clipping)
    elif clip_sample or use_clipped_model_output:
        raise CourseInputError(f"clip_sample and use_clipped_model_output are DDIM's options; sampler={sampler!r} has none.")
    sampler = samplers.get_sampler(sampler)
    device = models.model_device(model)
    size = model.config.sample_size
    shape = (len(labels), model.config.in_channels, size, size)
    if x_T is None:
        x_T = noise_lib.randn(shape, generator)
    else:
        check_float_tensor(x_T, "x_T")
        if tuple(x_T.shape) != shape:
            raise CourseInputError(f"x_T must have shape {shape} (one per label), got {tuple(x_T.shape)}.")
        check_finite(x_T, "x_T")
    ab = (models.SCHEDULE.alpha_bars if alpha_bars is None else check_schedule_table(alpha_bars)).to(device)
    timesteps = sampler.timesteps(len(ab), num_steps, spacing)
    return samplers.sample(denoiser, x_T.to(device), timesteps, sampler, alpha_bars=ab, generator=generator,
                           callback=callback).x0.clamp(-1, 1)


def within_class_diversity(images: torch.Tensor, labels) -> float:
    """Return the mean pairwise L2 distance between images of one class, averaged over the classes.   [nb 06]

    For each class k with n_k >= 2 images: the mean of ||x_i - x_j|| over the n_k (n_k - 1) / 2
    pairs i < j (pixels in [-1, 1], flattened); then the plain mean over those classes. 0 means
    every class collapsed to one image; the 1,797 real digits at 16x16 give 6.72.
    Shapes: images (N, ...), labels (N,).
    """
    check_float_tensor(images, "images")
    labels = torch.as_tensor(labels).cpu()
    if labels.ndim != 1 or len(labels) != len(images):
        raise CourseInputError(f"need one label per image: {len(images)} images, labels of shape {tuple(labels.shape)}.")
    flat = images.detach().cpu().double().reshape(len(images), -1)
    per_class = []
    for k in labels.unique():
        x = flat[labels == k]
        if len(x) >= 2:
            d = torch.cdist(x, x)
            per_class.append(float(d.sum() / (len(x) * (len(x) - 1))))
    if not per_class:
        raise CourseInputError("need at least two images of some class to measure within-class diversity.")
    return sum(per_class) / len(per_class)


def digits_guidance_sweep(model, scales=DIGITS_SWEEP_SCALES, per_class: int = 50, *, seed: int = 0,
                          num_steps: int = 50, batch_size: int = 500, threshold: float = 0.9,
                          **sampler_kwargs) -> list[dict]:
    """Return one row per guidance scale g: classifier accuracy, confident share and within-class diversity.   [nb 06]

    per_class samples of each digit 0-9 (labels 0, 1, ..., 9, 0, 1, ...), drawn with
    generate_digits_cfg from the SAME x_T for every scale (seeded by `seed`), so only g changes.
    Each row: {"guidance_scale", "accuracy" (metrics.classify_digits agrees with the label asked for),
    "confident_share" (its confidence >= threshold), "diversity" (within_class_diversity over the
    labels asked for)}; at g = 0 the label is ignored, so "diversity" is the spread of all samples.
    sampler_kwargs (clip_sample, use_clipped_model_output, spacing) go to generate_digits_cfg.
    Cost per scale: num_steps UNet calls on 2 x 10 x per_class rows (half that at g = 0 and g = 1).
    """
    _check_digits_model(model)
    per_class = check_positive_int(per_class, "per_class")
    batch_size = check_positive_int(batch_size, "batch_size")
    if isinstance(scales, (int, float)):
        scales = [scales]
    scales = [check_guidance_scale(g) for g in scales]
    labels = torch.arange(per_class * models.NUM_DIGIT_CLASSES) % models.NUM_DIGIT_CLASSES
    size = model.config.sample_size
    x_T = noise_lib.randn((len(labels), model.config.in_channels, size, size), torch.Generator().manual_seed(seed))
    rows = []
    for g in scales:
        x0 = torch.cat([generate_digits_cfg(model, labels[i: i + batch_size], g, num_steps=num_steps,
                                            x_T=x_T[i: i + batch_size], **sampler_kwargs).cpu()
                        for i in range(0, len(labels), batch_size)])
        predicted, confidence = metrics.classify_digits(x0)
        rows.append({"guidance_scale": g,
                     "accuracy": float((predicted == labels).double().mean()),
                     "confident_share": float((confidence >= threshold).double().mean()),
                     "diversity": within_class_diversity(x0, labels)})
    return rows
