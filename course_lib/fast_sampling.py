"""Steps against quality: how many model evaluations each sampler needs, measured three ways.   [notebook 03b]

Every sampler of samplers.SAMPLERS (DDIM, Euler, Heun, DPM-Solver++(2M)) solves the same
probability-flow ODE; what differs is the error each makes for a budget of model evaluations (NFE).

1. ode_errors: on a Gaussian mixture, with the exact eps* (mixtures.optimal_eps), the RMS distance
   between a sampler's x_0 and the ODE's own solution (mixtures.probability_flow_solution) from the
   same x_T. On a grid smooth in log sigma (log_sigma_alpha_bars, Karras et al.'s range 0.002..80)
   the error falls as NFE^-p, p the solver's order; fitted_order reads p off the log-log slope.
2. digits_study: the class-conditional digits UNet with CFG: classifier accuracy and confidence, and
   the RMS distance to a far finer solve of the same ODE from the same x_T.
3. text_study: the text-to-image model: caption adherence (the shapes judge) and the same distance,
   on the latents.
matching_evaluations then reads off the fewest evaluations at which each sampler is as close to the
fine solve as DDIM with 50 steps. Legend: NFE = evaluations = model calls per sample (CFG's two
halves run as one batched call, as in every pipeline).

GPU_QUOTES holds the published Stable Diffusion 1.5 timings on a GPU that notebook 06b reads (the
course has timed no GPU): each with its setting, what it times, and its source (GPU_SOURCES).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from course_lib import guidance, latent, metrics, mixtures, models, samplers, text2image
from course_lib import noise as noise_lib
from course_lib.validation import CourseInputError, check_number, check_positive_int

STUDY_SAMPLERS = ("ddim", "heun", "dpmpp_2m")  # Euler is DDIM (tests/test_samplers.py), so one line for both
STUDY_EVALUATIONS = (5, 9, 13, 17, 21, 25, 31, 41, 51)  # odd, so Heun can spend each
EDM_SIGMAS = (0.002, 80.0)  # Karras et al. 2022's sigma_min and sigma_max

# Stable Diffusion 1.5 on an NVIDIA T4, 512x512, batch 1, guidance on (each step one UNet call on a batch of 2),
# as diffusers' documentation reports it; quoted, not measured by the course. "rounded_to": the precision the course
# reads a quote with ("~11 s": to the second), None for a figure printed as measured.   [nb 06b]
GPU_SOURCES = {
    "tutorial": "diffusers documentation, 'Effective and efficient diffusion' (docs/source/en/stable_diffusion.md, "
                "added in huggingface/diffusers PR #2773, March 2023; text as of commit 18a3d237)",
    "benchmark": "diffusers documentation, 'PyTorch 2.0' (docs/source/en/optimization/torch2.0.md, benchmark tables "
                 "of huggingface/diffusers PR #3370, May 2023, diffusers 0.17.0.dev0; removed from the page in 2025, "
                 "last in commit 54cddc1e): table 'T4 (batch size: 1)', row 'SD - txt2img', column "
                 "'torch 2.0 - no compile'",
}
GPU_QUOTES = (
    {"setting": "float32, PNDMScheduler (the pipeline's default), 50 steps", "value": 30.0, "unit": "s",
     "rounded_to": 1.0, "times": "one whole pipeline call", "source": "tutorial"},
    {"setting": "float16, PNDMScheduler, 50 steps", "value": 11.0, "unit": "s", "rounded_to": 1.0,
     "times": "one whole pipeline call", "source": "tutorial"},
    {"setting": "float16, DPMSolverMultistepScheduler, 20 steps", "value": 4.0, "unit": "s", "rounded_to": 1.0,
     "times": "one whole pipeline call", "source": "tutorial"},
    {"setting": "float16, the default scheduler and 50 steps, torch 2.0's scaled_dot_product_attention, "
                "channels-last UNet, no torch.compile, the pipeline called three times in a row",
     "value": 6.9, "unit": "steps/s", "rounded_to": None, "times": "denoising steps (iterations) per second",
     "source": "benchmark"},
)


def log_sigma_alpha_bars(sigma_min: float = EDM_SIGMAS[0], sigma_max: float = EDM_SIGMAS[1],
                         size: int = 100_000) -> torch.Tensor:
    """Return a float64 alpha_bar table whose sigma = sqrt((1 - ab) / ab) is evenly spaced in log from sigma_min to sigma_max.   [nb 03b]

    With "linspace" spacing over it every sampler's grid runs from sigma_max to sigma_min in steps even
    in log sigma (to 1 part in size), then to data: a smooth grid, on which a solver's order shows.
    float64 because 1 - ab ~ 4e-6 at sigma_min would keep only two digits in float32.
    """
    size = check_positive_int(size, "size")
    sigma_min = check_number(sigma_min, "sigma_min", low=0, low_open=True)
    sigma_max = check_number(sigma_max, "sigma_max", low=0, low_open=True)
    if not sigma_min < sigma_max:
        raise CourseInputError(f"need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}.")
    sigmas = torch.logspace(math.log10(sigma_min), math.log10(sigma_max), size, dtype=torch.float64)
    return 1 / (1 + sigmas**2)


def _rms(a: torch.Tensor, b: torch.Tensor) -> float:
    """Root mean square over samples of the per-sample Euclidean distance."""
    d = (a.double() - b.double()).reshape(len(a), -1)
    return float(d.pow(2).sum(1).mean().sqrt())


def _budgets(names, evaluations):
    """Yield (name, sampler, NFE, steps) for every sampler and every NFE it can spend exactly (Heun: odd only)."""
    for name in names:
        sampler = samplers.get_sampler(name)
        for nfe in evaluations:
            try:
                steps = sampler.steps_for(nfe)
            except CourseInputError:
                continue
            yield name, sampler, nfe, steps


def _starts(mixture, table: torch.Tensor, n: int, seed: int):
    """The mixture in the table's dtype, and n seeded starts x_T ~ N(0, I) in it."""
    mixture = mixtures.ring() if mixture is None else mixture
    dtype = table.dtype
    mix = mixtures.GaussianMixture(mixture.means.to(dtype), mixture.stds.to(dtype), mixture.weights.to(dtype))
    x_T = noise_lib.randn((check_positive_int(n, "n"), mix.dim), torch.Generator().manual_seed(seed), dtype=dtype)
    return mix, x_T


def ode_errors(mixture: mixtures.GaussianMixture | None = None, names=STUDY_SAMPLERS,
               evaluations=(5, 9, 17, 33, 65, 129), *, n: int = 500, seed: int = 0,
               alpha_bars: torch.Tensor | None = None, spacing: str = "linspace",
               reference_steps: int = 2000) -> list[dict]:
    """Return one row per (sampler, NFE): {"sampler", "steps", "evaluations", "error"} on mixture data with the exact eps*.   [nb 03b]

    error: RMS over n starts x_T ~ N(0, I) (seeded) of |x_0 - x_0^ODE|, x_0^ODE from
    mixtures.probability_flow_solution (RK4, reference_steps steps) from the same x_T. Default: the
    ring of notebook 02, the log-sigma table (log_sigma_alpha_bars) and "linspace" spacing, where the
    grid ends at the table's sigma_min and the reference ends there too with the same final Euler step
    every sampler takes to data. With the course's own table (models.SCHEDULE.alpha_bars) and
    "trailing" spacing the reference runs on to sigma = 1e-4 (the exact x_0). Samplers that cannot
    spend an NFE exactly (Heun: odd only) skip it.
    """
    table = log_sigma_alpha_bars() if alpha_bars is None else alpha_bars
    mix, x_T = _starts(mixture, table, n, seed)
    ends_on_table = spacing == "linspace"
    sigma_end = float(samplers.karras_sigma(table[:1].double())) if ends_on_table else 1e-4
    reference = mixtures.probability_flow_solution(mix, x_T, float(table[-1]), num_steps=reference_steps,
                                                   sigma_min=sigma_end)

    def model(x, t):
        return mixtures.optimal_eps(x, t, table, mix)

    rows = []
    for name, sampler, nfe, steps in _budgets(names, evaluations):
        x0 = samplers.sample(model, x_T, sampler.timesteps(len(table), steps, spacing), sampler, alpha_bars=table).x0
        rows.append({"sampler": name, "steps": steps, "evaluations": nfe, "error": _rms(x0, reference)})
    return rows


def last_step_errors(mixture: mixtures.GaussianMixture | None = None, evaluations=(17, 33, 65), *, n: int = 200,
                     seed: int = 0, alpha_bars: torch.Tensor | None = None, reference_steps: int = 200) -> list[dict]:
    """Return per budget N the error of the last step alone: exact ODE to sigma_last, then one Euler step to 0.   [nb 03b]

    On the course grid (alpha_bars, default models.SCHEDULE's in float64, "trailing" spacing, N steps as
    DDIM takes them) sigma_last is Karras' sigma of the last timestep before data. The ODE is solved
    exactly (mixtures.probability_flow_solution, RK4, exact eps*) from the same n starts as ode_errors
    down to sigma_last, where that solve ends with one Euler step to data (it lands on x0_hat); error:
    RMS distance of that x_0 to the exact solve down to sigma = 1e-4. Each row: {"evaluations",
    "sigma_last", "error"}: the part of every solver's error that its first-order last step makes alone.
    """
    table = models.SCHEDULE.alpha_bars.double() if alpha_bars is None else alpha_bars
    mix, x_T = _starts(mixture, table, n, seed)
    ab_T = float(table[-1])
    exact = mixtures.probability_flow_solution(mix, x_T, ab_T, num_steps=reference_steps, sigma_min=1e-4)
    ddim = samplers.get_sampler("ddim")
    rows = []
    for nfe in evaluations:
        t_last = int(ddim.timesteps(len(table), nfe, "trailing")[-1])
        sigma_last = float(samplers.karras_sigma(table[t_last:t_last + 1]))
        landed = mixtures.probability_flow_solution(mix, x_T, ab_T, num_steps=reference_steps, sigma_min=sigma_last)
        rows.append({"evaluations": nfe, "sigma_last": sigma_last, "error": _rms(landed, exact)})
    return rows


def draw_paths(ax, paths: torch.Tensor, *, color="C0", label: str | None = None, lw: float = 0.8,
               ends: bool = True) -> None:
    """Draw 2D trajectories on a matplotlib Axes: one line per sample through its states, a dot where it ends.   [nb 03b]

    paths: (K, n, 2), the K states of n samples in order (samplers.sample(..., keep_trajectory=True)'s
    trajectory stacked, or flow.generate's). The label goes on the first line only.
    Shapes: paths (K, n, 2).
    """
    if not isinstance(paths, torch.Tensor) or paths.ndim != 3 or paths.shape[-1] != 2 or len(paths) < 2:
        raise CourseInputError(f"paths must be a tensor (K, n, 2) of K >= 2 states of n points, got "
                               f"{tuple(paths.shape) if isinstance(paths, torch.Tensor) else type(paths).__name__}; "
                               f"stack a trajectory with torch.stack(output.trajectory).")
    pts = paths.detach().cpu().double().numpy()
    for i in range(pts.shape[1]):
        ax.plot(pts[:, i, 0], pts[:, i, 1], color=color, lw=lw, label=label if i == 0 else None)
    if ends:
        ax.scatter(pts[-1, :, 0], pts[-1, :, 1], color=color, s=6, zorder=3)


def fitted_order(rows: list[dict], name: str, *, key: str = "error", min_evaluations: int = 17) -> float:
    """Return p of error ~ C NFE^-p: minus the least-squares slope of log(error) against log(NFE), rows with NFE >= min_evaluations.   [nb 03b]"""
    points = [(r["evaluations"], r[key]) for r in rows if r["sampler"] == name and r["evaluations"] >= min_evaluations]
    if len(points) < 2:
        raise CourseInputError(f"need two rows of {name!r} with evaluations >= {min_evaluations} to fit a slope, "
                               f"got {len(points)}.")
    x, y = np.log([p[0] for p in points]), np.log([p[1] for p in points])
    return float(-np.polyfit(x, y, 1)[0])


def _study(generate, names, evaluations, reference, score, timing_rows: int):
    """Shared loop of digits_study and text_study: generate(sampler, steps) -> samples; score(samples) -> dict."""
    ref_name, ref_steps = reference
    x_ref = generate(samplers.get_sampler(ref_name), ref_steps)
    rows = []
    for name, sampler, nfe, steps in _budgets(names, evaluations):
        start = time.perf_counter()
        x = generate(sampler, steps)
        seconds = (time.perf_counter() - start) / timing_rows
        rows.append({"sampler": name, "steps": steps, "evaluations": nfe, "distance": _rms(x, x_ref),
                     "seconds_per_image": seconds, **score(x)})
    return rows


@torch.no_grad()
def digits_study(model, names=STUDY_SAMPLERS, evaluations=STUDY_EVALUATIONS, *, per_class: int = 20,
                 guidance_scale: float = 2.0, seed: int = 0, reference=("heun", 100)) -> list[dict]:
    """Return one row per (sampler, NFE) on the class-conditional digits UNet with CFG at g.   [nb 03b]

    10 x per_class digits (labels 0..9 repeated) from one x_T (seeded), trailing spacing (as
    models.generate). Each row: {"sampler", "steps", "evaluations", "accuracy" (metrics.classify_digits
    agrees with the label), "confidence" (its mean confidence), "distance" (RMS pixel distance to the
    reference solve: `reference` = (sampler, steps), Heun with 100 steps = 199 NFE by default),
    "seconds_per_image" (wall clock of the whole batch / its size, this machine)}.
    """
    per_class = check_positive_int(per_class, "per_class")
    labels = torch.arange(per_class * models.NUM_DIGIT_CLASSES) % models.NUM_DIGIT_CLASSES
    size = model.config.sample_size
    x_T = noise_lib.randn((len(labels), model.config.in_channels, size, size), torch.Generator().manual_seed(seed))

    def generate(sampler, steps):
        return guidance.generate_digits_cfg(model, labels, guidance_scale, num_steps=steps, sampler=sampler,
                                            x_T=x_T).cpu()

    def score(x):
        predicted, confidence = metrics.classify_digits(x)
        return {"accuracy": float((predicted == labels).double().mean()), "confidence": float(confidence.double().mean())}

    return _study(generate, names, evaluations, reference, score, len(labels))


@torch.no_grad()
def text_study(parts: text2image.Parts, names=STUDY_SAMPLERS, evaluations=STUDY_EVALUATIONS, *,
               num_prompts: int = 100, guidance_scale: float = 4.0, seed: int = 0,
               reference=("heun", 100)) -> list[dict]:
    """Return one row per (sampler, NFE) on the text-to-image model: adherence and distance to a fine solve.   [nb 03b]

    num_prompts single-object prompts of the 'test' split (text2image.prompt_set), one z_T (seeded),
    CFG at g and "trailing" spacing: the pipeline's "leading" one starts 5 steps at t = 801 and 100 at
    t = 991, so each step count would solve the ODE from another starting level. Each row: {"sampler", "steps",
    "evaluations", "adherence" (share the shapes judge finds right on colour, shape, position, count and
    background), "distance" (RMS latent distance to the reference solve), "seconds_per_image"
    (sampling, the VAE decoder not included: wall clock / num_prompts)}.
    """
    latent.check_system(parts, latent.UNetSystem)
    scenes, prompts = text2image.prompt_set(check_positive_int(num_prompts, "num_prompts"), "test", seed=seed)
    z_T = parts.prepare_latents(len(prompts), generator=torch.Generator().manual_seed(seed))

    def generate(sampler, steps):
        return text2image.generate_latents(parts, prompts, guidance_scale=guidance_scale, num_steps=steps,
                                           sampler=sampler, latents=z_T, spacing="trailing", steps_offset=0).cpu()

    def score(z):
        return {"adherence": text2image.adherence(parts.decode_latents(z), scenes)["all"]}

    return _study(generate, names, evaluations, reference, score, len(prompts))


def matching_evaluations(rows: list[dict], *, target=("ddim", 51), key: str = "distance",
                         higher_is_better: bool = False, tolerance: float = 0.0) -> dict[str, int | None]:
    """Return, per sampler, the fewest evaluations that do as well on `key` as the target row (None if none does).   [nb 03b]

    key "distance" (lower is better): at most the target's distance to the fine solve. For a score
    where higher is better (accuracy, adherence), at least the target's minus `tolerance`.
    """
    goal = next((r[key] for r in rows if r["sampler"] == target[0] and r["evaluations"] == target[1]), None)
    if goal is None:
        raise CourseInputError(f"no row of {target[0]!r} with {target[1]} evaluations to match.")

    def good(value):
        return value >= goal - tolerance if higher_is_better else value <= goal + tolerance

    out = {}
    for name in dict.fromkeys(r["sampler"] for r in rows):
        hits = sorted(r["evaluations"] for r in rows if r["sampler"] == name and good(r[key]))
        out[name] = hits[0] if hits else None
    return out
