"""Benchmark notebook 03's models on this machine: training speed, sampling speed, sample quality.

    python benchmarks/bench_ddpm.py               # everything (several minutes on 2 CPU cores)
    python benchmarks/bench_ddpm.py --quick       # fewer repeats, no DDPM-1000 on digits
    python benchmarks/bench_ddpm.py --threads 1   # pin torch to one thread (a shared, busy machine)

Prints: training seconds per 1,000 steps for each model; sampling seconds per sample for each sampler
and step count; and the quality figures against the issue's targets:
  - 2D: energy distance at DDIM 50 steps within 5x the data-data floor after <= 60 s of training
    (a fresh ddpm_moons run, stopped at 60 s if it has not finished);
  - digits: >= 80 % of samples classified with confidence >= 0.9, class histogram near uniform
    (the shipped data/ddpm_digits checkpoint, 500 samples, DDIM 50; also the class-conditional
    data/ddpm_digits_cond with the null label, random labels and each label).
Times are medians over repeats; the host's speed varies from minute to minute, so compare ratios.
This is a benchmark, not a test: nothing here fails.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from course_lib import checkpoints, environment, metrics, models, recipes, training

SETTINGS = [("ddpm", 1000), ("ddim", 100), ("ddim", 50), ("ddim", 20), ("ddim", 10)]


def train_speed(recipe_name: str, steps: int, repeats: int, device) -> float:
    """Median seconds per 1,000 steps over `repeats` short runs of a recipe's model, data, loss and batch size."""
    recipe = recipes.get(recipe_name)
    batch_data, loss_fn = recipe.build_data(), recipe.loss_fn()
    per_step = []
    for _ in range(repeats):
        config = training.TrainConfig.from_dict({**recipe.config.to_dict(), "steps": steps + 2, "checkpoint_every": 0})
        stamps = []
        training.train(recipe.build_model(), batch_data, loss_fn, config, device=device, progress=False,
                       callback=lambda state, loss: stamps.append(time.perf_counter()))
        per_step += [b - a for a, b in zip(stamps[1:], stamps[2:])]  # the first step warms up
    return 1000 * statistics.median(per_step)


def sampling_speed(model, shape, repeats: int, settings, **condition) -> dict:
    """Median seconds per sample for each (sampler, steps)."""
    ab = models.SCHEDULE.alpha_bars
    out = {}
    for sampler, steps in settings:
        seconds = environment.median_seconds(lambda: models.generate(model, shape, ab, sampler=sampler, num_steps=steps,
                                                      generator=torch.Generator().manual_seed(0), **condition),
                              repeats)
        out[(sampler, steps)] = seconds / shape[0]
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeats = 1 if args.quick else 3
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {device}")

    # 1. training speed
    print("\n== training, seconds per 1,000 steps (median) ==")
    moons_speed = train_speed("ddpm_moons", 100 if args.quick else 300, repeats, device)
    print(f"2D TimeMLP ({models.num_parameters(models.time_mlp()):,} params, batch {recipes.MOONS_CONFIG.batch_size}): "
          f"{moons_speed:.1f} s")
    for name, conditional in (("ddpm_digits", False), ("ddpm_digits_cond", True)):
        speed = train_speed(name, 5 if args.quick else 10, repeats, device)
        print(f"digits UNet2DModel, {name} ({models.num_parameters(models.digits_unet(conditional=conditional)):,} "
              f"params, batch {recipes.get(name).config.batch_size}): {speed:.0f} s  ({speed / 1000:.2f} s per step)")

    # 2. sampling speed
    print("\n== sampling, seconds per sample (median) ==")
    moons = checkpoints.load("ddpm_moons", device=device)
    unet = checkpoints.load("ddpm_digits", device=device)
    speed_2d = sampling_speed(moons, (1000, 2), repeats, SETTINGS)
    digit_settings = SETTINGS[1:] if args.quick else SETTINGS
    speed_digits = sampling_speed(unet, (50, 1, 16, 16), 1, digit_settings)
    print(f"{'sampler':8s} {'steps':>5s} {'2D (1000 pts)':>14s} {'digits (50 imgs)':>17s}")
    for key in SETTINGS:
        d = f"{speed_digits[key]:.2e}" if key in speed_digits else "skipped"
        print(f"{key[0].upper():8s} {key[1]:5d} {speed_2d[key]:14.2e} {d:>17s}")

    # 3. quality
    print("\n== quality ==")
    limit_config = training.TrainConfig.from_dict({**recipes.MOONS_CONFIG.to_dict(), "time_limit_s": 60.0})
    recipe = recipes.get("ddpm_moons")
    state = training.train(recipe.build_model(), recipe.build_data(), recipe.loss_fn(), limit_config, device=device,
                           progress=False)
    figs = recipes.evaluate_2d(state.sampling_model)
    print(f"2D, fresh run: {state.step} steps in {state.wall_time_s:.1f} s of training "
          f"({'finished' if state.step == limit_config.steps else 'stopped at the 60 s limit'})")
    print(f"  energy distance DDIM 50: {figs['energy_distance_ddim50']:.5f}, DDPM 1000: {figs['energy_distance_ddpm1000']:.5f}, "
          f"data-data floor: {figs['energy_distance_floor']:.5f}")
    ratio = figs["ratio_ddim50_to_floor"]
    print(f"  DDIM 50 / floor = {ratio:.2f}   target < 5: {'MET' if ratio < 5 else 'NOT MET'}")
    shipped = recipes.evaluate_2d(moons)
    print(f"2D, shipped ddpm_moons: DDIM 50 / floor = {shipped['ratio_ddim50_to_floor']:.2f}, "
          f"DDPM 1000 / floor = {shipped['energy_distance_ddpm1000'] / shipped['energy_distance_floor']:.2f}")

    clf = metrics.digits_classifier()
    print(f"digits classifier: held-out real digits {clf.heldout_accuracy:.1%} accurate, "
          f"{clf.heldout_confident_share:.1%} with confidence >= 0.9 (the ceiling)")
    ab = models.SCHEDULE.alpha_bars
    n = 500
    cond_unet = checkpoints.load("ddpm_digits_cond", device=device)
    runs = [("ddpm_digits, unconditional", unet, None),
            ("ddpm_digits_cond, null label", cond_unet, models.NULL_CLASS),
            ("ddpm_digits_cond, random labels (y ~ p(y), x ~ p(x|y))", cond_unet,
             torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(5))),
            ("ddpm_digits_cond, labels 0-9", cond_unet, torch.arange(n) % 10)]
    for tag, model, labels in runs:
        condition = {} if labels is None else {"class_labels": labels}
        x = models.generate(model, (n, 1, 16, 16), ab, sampler="ddim", num_steps=50, clip_sample=True,
                            generator=torch.Generator().manual_seed(1), **condition).x0
        f = metrics.digit_figures(x)
        met = f["confident_share"] >= 0.8 and f["tv_from_uniform"] < 0.1
        line = (f"digits, {tag}, {n} samples DDIM 50: {f['confident_share']:.1%} confident, "
                f"histogram TV from uniform {f['tv_from_uniform']:.3f}")
        if tag.endswith("0-9"):
            predicted, _ = metrics.classify_digits(x)
            line += f", {float((predicted == labels).double().mean()):.1%} classified as their label"
        print(line + f"   [target >= 80 % and TV < 0.1: {'MET' if met else 'NOT MET'}]")

if __name__ == "__main__":
    main()
