"""The two text-to-image families side by side (notebook 10): the UNet of notebook 06 and the flow transformer.

    python benchmarks/bench_families.py --out data/family_results.json       # the shipped table (100 prompts per set)
    python benchmarks/bench_families.py --n 20 --out /tmp/families.json      # a quick look

Same data (the shapes world's 'train' captions), same judge (shapes.judge through text2image.adherence),
same prompts and the same starting-noise seed for both families, at guidance 4 (each family's default):

  - adherence against model evaluations NFE = 1, 2, 4, 8, 16, 32 (one batched CFG call per step, so
    each NFE is two network passes for both): single objects of the 'test' split (colour and shape
    pairs seen in training, unseen scenes), single objects of the 'heldout' split (colour-shape pairs
    no training caption named), and 2-3 objects of the 'test' split (multi-object);
    the UNet steps with DDIM (its default sampler) on Stable Diffusion 1.x's "leading" timesteps and, as a
    second row, on "trailing" ones (a 1-step DDIM then starts at t = 999, not t = 1); the transformer with
    Euler on SD3's shifted sigmas;
  - parameters of the denoiser and of the whole system (denoiser, VAE, text encoders);
  - training steps and seconds, from the shipped manifests;
  - seconds per image at batch 1 and each family's default steps (median of --repeats), and at batch 16.
Prints the table and writes --out (JSON). This is a benchmark, not a test: nothing here fails.
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from course_lib import checkpoints, environment, flow_text2image, text2image  # noqa: E402

NFES = (1, 2, 4, 8, 16, 32)
SETS = (("test single", "test", (1, 1)), ("heldout single", "heldout", (1, 1)), ("test multi", "test", (2, 3)))
GUIDANCE = 4.0


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def families():
    """Return {name: (system, generate function, denoiser name, default steps, parts counted)}."""
    unet = text2image.load_parts()
    flow = flow_text2image.load_system()
    return {
        "UNet (eps, DDIM)": dict(system=unet, generate=text2image.generate, checkpoint="text2image",
                                 steps=25, denoiser=unet.unet,
                                 parts=[unet.unet, unet.vae, unet.text_encoder]),
        # the same UNet with "trailing" timesteps (Lin et al. 2024): Stable Diffusion 1.x's "leading" spacing
        # (steps_offset 1) starts a 1-step DDIM at t = 1, i.e. it never sees the noise level it starts from
        "UNet (eps, DDIM, trailing)": dict(system=unet, generate=functools.partial(text2image.generate, spacing="trailing",
                                                                                   steps_offset=0),
                                           checkpoint="text2image", steps=25, denoiser=unet.unet,
                                           parts=[unet.unet, unet.vae, unet.text_encoder]),
        "MMDiT (flow, Euler)": dict(system=flow, generate=flow_text2image.generate, checkpoint=flow_text2image.NAME,
                                    steps=flow_text2image.NUM_STEPS, denoiser=flow.transformer,
                                    parts=[flow.transformer, flow.vae, flow.text_encoder, flow.text_encoder_2]),
    }


def seconds_per_image(family: dict, batch: int, repeats: int) -> float:
    prompts = ["a red circle on the left"] * batch
    times = []
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        family["generate"](family["system"], prompts, guidance_scale=GUIDANCE, num_steps=family["steps"],
                           generator=torch.Generator().manual_seed(r))
        if r:  # the first call warms up
            times.append((time.perf_counter() - t0) / batch)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100, help="prompts per set")
    parser.add_argument("--nfes", default=",".join(map(str, NFES)))
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per speed figure")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    nfes = [int(n) for n in args.nfes.split(",")]
    start = time.perf_counter()
    rows = {}
    for name, family in families().items():
        manifest = checkpoints.read_manifest(family["checkpoint"])
        row = {"denoiser_parameters": count(family["denoiser"]), "system_parameters": sum(map(count, family["parts"])),
               "train_steps": manifest["steps"], "train_seconds": manifest["wall_time_s"],
               "train_threads": manifest["recipe"].get("torch_threads"), "default_steps": family["steps"],
               "adherence": {}}
        for label, split, objects in SETS:
            scenes, prompts = text2image.prompt_set(args.n, split, num_objects=objects, seed=0)
            for nfe in nfes:
                images = family["generate"](family["system"], prompts, guidance_scale=GUIDANCE, num_steps=nfe,
                                            generator=torch.Generator().manual_seed(0))
                score = text2image.adherence(images, scenes)
                row["adherence"].setdefault(label, {})[str(nfe)] = {k: round(v, 4) for k, v in score.items()}
                print(f"{name:22s} {label:15s} NFE {nfe:2d}: all {score['all']:.0%} (colour {score['colour']:.0%}, "
                      f"shape {score['shape']:.0%}, position {score['position']:.0%})", flush=True)
        row["seconds_per_image_batch1"] = round(seconds_per_image(family, 1, args.repeats), 4)
        row["seconds_per_image_batch16"] = round(seconds_per_image(family, 16, max(1, args.repeats // 2)), 4)
        rows[name] = row
    print(f"\n{'family':22s} {'denoiser':>9s} {'system':>9s} {'train':>13s} {'s/img b1':>9s} {'s/img b16':>9s}")
    for name, r in rows.items():
        print(f"{name:22s} {r['denoiser_parameters'] / 1e6:8.2f}M {r['system_parameters'] / 1e6:8.2f}M "
              f"{r['train_steps']:5d} / {r['train_seconds'] / 60:4.0f} min {r['seconds_per_image_batch1']:9.3f} "
              f"{r['seconds_per_image_batch16']:9.3f}")
    for label, *_ in SETS:
        print(f"\nall attributes right, {label} prompts, against NFE")
        print(f"{'family':22s} " + " ".join(f"{n:>6d}" for n in nfes))
        for name, r in rows.items():
            print(f"{name:22s} " + " ".join(f"{r['adherence'][label][str(n)]['all']:6.0%}" for n in nfes))
    wall = time.perf_counter() - start
    command = "python benchmarks/bench_families.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    out = {"command": command, "num_prompts": args.n, "nfes": nfes, "guidance_scale": GUIDANCE,
           "num_threads": torch.get_num_threads(), "wall_time_s": round(wall, 1),
           "versions": environment.versions(), "families": rows}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"\nwall time {wall:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
