"""Benchmark notebook 06's text-to-image model on this machine: training speed, sampling speed, adherence, loop vs pipeline.

    python benchmarks/bench_text2image.py                         # data/text2image (the shipped UNet), 200 prompts
    python benchmarks/bench_text2image.py --quick --threads 1     # 20 prompts, fewer repeats, one thread
    python benchmarks/bench_text2image.py --unet /tmp/t6/short/m  # another UNet folder (used when data/text2image is absent)
    python benchmarks/bench_text2image.py --ratio-only --samplers ddim,dpmpp_2m --threads 1   # the loop/pipeline ratio per solver

Prints:
  - training seconds per step of the text-to-image UNet2DConditionModel (text2image.UNET_CONFIG, batch 64,
    the text2image recipe's loss and optimiser), median over a few steps after the first;
  - sampling seconds per image at 25 and 50 DDIM steps with CFG (batch of 16 prompts; the VAE decode included);
  - caption adherence (the shapes judge: colour, shape, position, all) at each guidance scale g = 1..10 on
    N single-object prompts of the 'test' split and N of the 'heldout' split (colour-shape pairs never in a
    training caption), 25 steps, like text2image.evaluate; target from the issue: >= 90 % on all three
    attributes at the best guidance;
  - the time ratio course loop / diffusers StableDiffusionPipeline on the same modules, prompts and
    generator (text2image.generate vs pipe(..., output_type="pt")), measured interleaved (ABBA) in one process,
    at batch 1 and batch 16, as wall-clock and as CPU-time ratios of medians; target <= 1.02. The two images
    are checked to be equal.
Times are medians over repeats; the host's speed varies from minute to minute, so compare ratios.
This is a benchmark, not a test: nothing here fails.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from course_lib import checkpoints, environment, models, pipeline, recipes, text2image, training


def train_speed(parts: text2image.Parts, steps: int, device) -> float:
    """Median seconds per step of a fresh text2image UNet, batch 64, the recipe's loss and config (the first step skipped)."""
    recipe = recipes.get("text2image")
    data = text2image.latent_dataset(512, parts.vae, parts.tokenizer, parts.text_encoder, seed=0)
    config = training.TrainConfig.from_dict({**recipe.config.to_dict(), "steps": steps + 1, "checkpoint_every": 0})
    stamps = []
    training.train(text2image.make_unet(seed=0), data, recipe.loss_fn(), config, device=device, progress=False,
                   callback=lambda state, loss: stamps.append(time.perf_counter()))
    return statistics.median(b - a for a, b in zip(stamps, stamps[1:]))


def sampling_speed(parts: text2image.Parts, prompts: list[str], num_steps: int, repeats: int) -> float:
    """Median seconds per image of text2image.generate (g = 4) on a batch of prompts."""
    seconds = environment.median_seconds(lambda: text2image.generate(parts, prompts, guidance_scale=4.0, num_steps=num_steps,
                                                      generator=torch.Generator().manual_seed(0)), repeats)
    return seconds / len(prompts)


def loop_vs_pipeline(parts: text2image.Parts, pipe, prompts: list[str], num_steps: int, repeats: int,
                     sampler: str = "ddim") -> dict:
    """Time the course's loop and the pipeline alternately (ABBA order) on the same prompts and seeds.

    sampler: the course's name; the pipeline gets the matching diffusers scheduler made from_config(SCHEDULER_CONFIG).

    Returns medians of wall-clock seconds and of this process's CPU seconds (less disturbed by other
    work on a shared host when torch runs on one thread), their ratios, and the largest image difference.
    """
    import diffusers

    scheduler_class = {"ddim": "DDIMScheduler", "euler": "EulerDiscreteScheduler", "heun": "HeunDiscreteScheduler",
                       "dpmpp_2m": "DPMSolverMultistepScheduler"}[sampler]
    pipe.scheduler = getattr(diffusers, scheduler_class).from_config(pipeline.SCHEDULER_CONFIG)

    def course(seed):
        return text2image.generate(parts, prompts, guidance_scale=4.0, num_steps=num_steps, sampler=sampler,
                                   generator=torch.Generator().manual_seed(seed))

    def diffusers_pipe(seed):
        return pipeline.pipeline_images(pipe, prompts, num_steps=num_steps, guidance_scale=4.0,
                                        generator=torch.Generator().manual_seed(seed))

    times = {"course": ([], []), "pipeline": ([], [])}  # (wall, cpu)
    diffs = []
    for r in range(repeats + 1):  # round 0 warms both up and is not counted
        order = [("course", course), ("pipeline", diffusers_pipe)]
        images = {}
        for name, fn in (order if r % 2 else order[::-1]):
            wall, cpu = time.perf_counter(), time.process_time()
            images[name] = fn(r)
            if r:
                times[name][0].append(time.perf_counter() - wall)
                times[name][1].append(time.process_time() - cpu)
        diffs.append(float((images["course"] - images["pipeline"]).abs().max()))
    med = {name: (statistics.median(w), statistics.median(c)) for name, (w, c) in times.items()}
    return {"course_s": med["course"][0], "pipeline_s": med["pipeline"][0],
            "ratio_wall": med["course"][0] / med["pipeline"][0], "ratio_cpu": med["course"][1] / med["pipeline"][1],
            "max_abs_diff": max(diffs)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--unet", default=None,
                        help="UNet checkpoint (a name under data/ or a folder with a manifest); default data/text2image")
    parser.add_argument("--num-prompts", type=int, default=None, help="prompts per split for adherence (default 200, --quick 20)")
    parser.add_argument("--quick", action="store_true", help="fewer prompts, steps and repeats")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samplers", default="ddim", help="comma-separated samplers for the loop/pipeline ratio")
    parser.add_argument("--ratio-only", action="store_true", help="only the loop/pipeline time ratio (section 3)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeats = 3 if args.quick else 5
    num_prompts = args.num_prompts or (20 if args.quick else 200)
    unet = args.unet
    if unet is None:
        unet = "text2image"
        if not (environment.DATA_DIR / unet / checkpoints.MANIFEST).is_file():
            raise SystemExit("data/text2image is not there yet: give a UNet folder with --unet PATH "
                             "(e.g. the 30-step stand-in /tmp/t6/short/m).")
    manifest = checkpoints.verify(unet)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {device}")
    print(f"UNet: {checkpoints.checkpoint_dir(unet)} ({manifest.get('steps')} training steps)")
    parts = text2image.load_parts(str(unet), device=device)
    print(f"UNet2DConditionModel {models.num_parameters(parts.unet):,} params; VAE {models.num_parameters(parts.vae):,}; "
          f"text encoder {models.num_parameters(parts.text_encoder):,}")

    _, prompts = text2image.prompt_set(16, "test", seed=1)
    if not args.ratio_only:
        # 1. training speed
        print("\n== training, seconds per step (median; batch 64) ==")
        steps = 3 if args.quick else 6
        print(f"text2image UNet, {steps} steps after a warm-up step: {train_speed(parts, steps, device):.2f} s per step")

        # 2. sampling speed
        print("\n== sampling, seconds per image (median; batch 16, g = 4, VAE decode included) ==")
        for n in (25, 50):
            print(f"DDIM {n:3d} steps: {sampling_speed(parts, prompts, n, repeats):.3f} s per image")

    # 3. the course's loop against StableDiffusionPipeline, same modules
    print("\n== course loop / diffusers StableDiffusionPipeline, same model, interleaved (25 steps, g = 4) ==")
    pipe = pipeline.make_pipeline(parts).to(device)
    pipe.set_progress_bar_config(disable=True)
    for sampler, batch in ((sampler, batch) for sampler in args.samplers.split(",") for batch in (1, 16)):
        r = loop_vs_pipeline(parts, pipe, prompts[:batch], 25, repeats * (3 if batch == 1 else 2), sampler)
        met = "MET" if min(r["ratio_wall"], r["ratio_cpu"]) <= 1.02 else "NOT MET"
        print(f"{sampler}, batch {batch:2d}: course {r['course_s']:.3f} s, pipeline {r['pipeline_s']:.3f} s (medians); "
              f"ratio {r['ratio_wall']:.3f} wall-clock, {r['ratio_cpu']:.3f} CPU time   [target <= 1.02: {met}]; "
              f"images max |difference| {r['max_abs_diff']:.1e}")

    if args.ratio_only:
        return
    # 4. caption adherence across guidance
    scales = range(1, 11)
    print(f"\n== caption adherence, {num_prompts} single-object prompts per split x 2 seeds, DDIM 25, g = 1..10 ==")
    start = time.perf_counter()
    sweep = {split: text2image.adherence_sweep(parts, scales, num_prompts=num_prompts, repeats=2, split=split)
             for split in ("test", "heldout")}
    print(f"{'g':>3s} | {'test: colour':>12s} {'shape':>6s} {'pos.':>6s} {'all':>6s} {'divers.':>7s} | "
          f"{'held-out: colour':>16s} {'shape':>6s} {'pos.':>6s} {'all':>6s} {'divers.':>7s}")
    for t, h in zip(sweep["test"], sweep["heldout"]):
        print(f"{t['guidance_scale']:3.0f} | {t['colour']:12.1%} {t['shape']:6.1%} {t['position']:6.1%} {t['all']:6.1%} "
              f"{t['diversity']:7.2f} | {h['colour']:16.1%} {h['shape']:6.1%} {h['position']:6.1%} {h['all']:6.1%} "
              f"{h['diversity']:7.2f}")
    for split, rows in sweep.items():
        best = max(rows, key=lambda r: min(r[k] for k in ("colour", "shape", "position")))
        worst3 = min(best[k] for k in ("colour", "shape", "position"))
        print(f"{split}: best g = {best['guidance_scale']:g} (lowest of colour/shape/position {worst3:.1%})   "
              f"[target >= 90 % on all three: {'MET' if worst3 >= 0.9 else 'NOT MET'}]")
    print(f"(sweep took {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
