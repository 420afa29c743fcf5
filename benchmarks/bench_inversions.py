"""How well each inversion comes back under guidance (notebook 07): reconstruction PSNR against steps, with its cost.

    python benchmarks/bench_inversions.py --out data/inversion_results.json
    python benchmarks/bench_inversions.py --n 8 --steps 10,25 --out /tmp/inv.json    # a quick look

For each inversion of course_lib.editing.INVERSIONS and each number of steps, n source images of
the ShapesEdit cases are inverted under their own caption and sampled back under the same caption
at the editing guidance scale g (editing.reconstruction): PSNR of the round trip against the VAE's
own reconstruction (so the VAE's error is left out; 'inf' = exact up to float32 round-off, shown as
the cap), the latent RMSE, UNet forward calls per image (null-text inversion's backward passes come
on top) and seconds per image, in one process so the times compare. Also prints one image's
round trip at g = 1 for scale. Writes every row to --out (JSON). A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_lib import editing, environment, shapesedit, text2image  # noqa: E402

PSNR_CAP = 100.0  # dB: a round trip at float32 round-off reads 130+ dB; shown as this cap


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50, help="source images (the first n ShapesEdit cases)")
    parser.add_argument("--steps", default="10,25,50", help="numbers of DDIM steps, comma-separated")
    parser.add_argument("--guidance-scale", type=float, default=4.0)
    parser.add_argument("--unet", default="text2image")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = tuple(int(s) for s in args.steps.split(","))
    parts = text2image.load_parts(args.unet)
    cases = shapesedit.cases(args.n)
    print(f"{len(cases)} images, g = {args.guidance_scale:g}, steps {steps}, UNet {args.unet}, "
          f"{torch.get_num_threads()} thread(s)")
    rows = []
    start = time.perf_counter()
    for method in editing.INVERSIONS:
        for n in steps:
            settings = editing.InversionSettings(method, n, guidance_scale=args.guidance_scale)
            chunks = [editing.reconstruction(parts, case.source_image, case.source_caption, [settings],
                                             generator=torch.Generator().manual_seed(i))[0]
                      for i, case in enumerate(cases)]  # one image per call: per-image PSNR and cost
            psnr = [min(PSNR_CAP, r["psnr_db"]) for r in chunks]
            row = {"inversion": method, "num_steps": n, "guidance_scale": args.guidance_scale,
                   "psnr_db_mean": round(statistics.fmean(psnr), 3), "psnr_db_min": round(min(psnr), 3),
                   "latent_rmse_mean": round(statistics.fmean(r["latent_rmse"] for r in chunks), 6),
                   "unet_calls_per_image": round(statistics.fmean(r["unet_calls"] for r in chunks), 2),
                   "seconds_per_image": round(statistics.median(r["seconds"] for r in chunks), 4),
                   "num_images": len(chunks)}
            rows.append(row)
            print(f"{method:16s} {n:3d} steps: PSNR {row['psnr_db_mean']:6.1f} dB (min {row['psnr_db_min']:6.1f}), "
                  f"{row['unet_calls_per_image']:6.1f} UNet calls, {row['seconds_per_image']:.3f} s per image", flush=True)
    scale = editing.reconstruction(parts, cases[0].source_image, cases[0].source_caption,
                                   [editing.InversionSettings("ddim", n, guidance_scale=1.0) for n in steps])
    print("g = 1, DDIM, one image: " + ", ".join(f"{r['num_steps']} steps {r['psnr_db']:.1f} dB" for r in scale))
    wall = time.perf_counter() - start
    doc = {"benchmark": "inversions", "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "command": "python benchmarks/bench_inversions.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
           "versions": environment.versions(), "unet": args.unet, "num_threads": torch.get_num_threads(),
           "psnr_cap_db": PSNR_CAP, "wall_time_s": round(wall, 1), "rows": rows,
           "ddim_g1": [{"num_steps": r["num_steps"], "psnr_db": round(min(PSNR_CAP, r["psnr_db"]), 3)} for r in scale]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wall time {wall:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
