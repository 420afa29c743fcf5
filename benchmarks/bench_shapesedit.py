"""Recompute the ShapesEdit table (notebooks 07-08) for every edit method course_lib.editing registers.

    python benchmarks/bench_shapesedit.py --out data/shapesedit_results.json     # the full table (lead only)
    python benchmarks/bench_shapesedit.py --n 25 --out /tmp/se.json              # a quick look
    python benchmarks/bench_shapesedit.py --unet /tmp/t6/short/m --out /tmp/se.json   # another UNet folder
    python benchmarks/bench_shapesedit.py --oracles-only --out /tmp/se.json      # no model: the oracle rows

Rows: two oracles that bound the table (ground truth: every figure at its best; no edit: the source
returned, 0 % success with a perfect lock), the VAE round trip (decode(encode(x)): the best lock a
latent method can reach without pasting pixels), then every method of course_lib.editing.METHODS with
its default options on the shipped pipeline parts (text2image.load_parts(), or --unet PATH for the
UNet), and mask locking given the ground-truth mask (a "user mask"): as it is, starting the masked
latents from the source's inverted noise with negative-prompt inversion (the older default, for the
comparison), and with the source pixels pasted back outside the mask (composite=True). A method missing from
course_lib.editing is reported as missing and skipped. Prints the overall table with each method's
gain over SDEdit, the success and locked-PSNR tables by edit kind, and the wall time; writes every
record to --out (JSON, read back by shapesedit.load_results). This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import functools
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from course_lib import shapesedit  # noqa: E402

# The methods the benchmark expects course_lib.editing.METHODS to hold (the table's order).
EXPECTED_METHODS = ("sdedit", "ddim_inversion", "prompt_to_prompt", "mask_locking")
# Extra rows: (row name, METHODS name, options, pass the ground-truth mask).
VARIANTS = (("mask_locking (given mask)", "mask_locking", {}, True),
            ("mask_locking (given mask, inverted start)", "mask_locking",
             {"start": "inverted", "negative_prompt_inversion": True}, True),
            ("mask_locking (given mask, pixels pasted)", "mask_locking", {"composite": True}, True))
# Methods that need every prompt pair of a batch to align alike (one attention controller per batch):
# always one case per call.
ONE_AT_A_TIME = ("prompt_to_prompt",)


def load_parts(unet_path: str | None, device):
    """Return text2image.Parts: the shipped ones, or the UNet at unet_path with the shipped VAE and text encoder."""
    from course_lib import text2image

    if unet_path is None:
        return text2image.load_parts(device=device)
    from diffusers import UNet2DConditionModel

    from course_lib import vae as vae_lib

    unet = UNet2DConditionModel.from_pretrained(unet_path, torch_dtype=torch.float32, low_cpu_mem_usage=False)
    unet = unet.to(device).eval()
    tokenizer, encoder = text2image.load_text_encoder(device=device)
    return text2image.Parts(unet, vae_lib.load_vae(device=device), tokenizer, encoder)


def model_rows(parts, batch_size: int = 1) -> list[tuple[str, object, dict]]:
    """Return (row name, method(image, source, target, generator=...), evaluate options) for the model-based rows."""
    from course_lib import vae as vae_lib

    def vae_round_trip(image, source_prompt, target_prompt, *, generator=None):
        out = vae_lib.reconstruct(parts.vae, image if image.ndim == 4 else image[None])
        return out if image.ndim == 4 else out[0]

    rows = [("VAE round trip (no edit)", vae_round_trip, {"batch_size": batch_size})]
    try:
        from course_lib import editing
    except ImportError as error:
        print(f"course_lib.editing is missing ({error}): no editing method runs.")
        return rows
    methods = getattr(editing, "METHODS", {})
    for name in EXPECTED_METHODS:
        if name not in methods:
            print(f"missing: editing.METHODS has no {name!r} (it holds {sorted(methods)}); row skipped.")
    for name in [*EXPECTED_METHODS, *(m for m in methods if m not in EXPECTED_METHODS)]:
        if name in methods:
            rows.append((name, functools.partial(methods[name], parts),
                         {"batch_size": 1 if name in ONE_AT_A_TIME else batch_size}))
    for row, name, options, pass_mask in VARIANTS:
        if name in methods:
            rows.append((row, functools.partial(methods[name], parts, **options),
                         {"pass_mask": pass_mask, "batch_size": 1 if name in ONE_AT_A_TIME else batch_size}))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=shapesedit.DEFAULT_N, help="cases (250 = the benchmark, 50 per kind)")
    parser.add_argument("--cases-seed", type=int, default=shapesedit.DEFAULT_SEED)
    parser.add_argument("--seed", type=int, default=0, help="edit generators are seeded by seed + case index")
    parser.add_argument("--unet", default=None, help="a UNet2DConditionModel folder instead of data/text2image")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="cases per method call (prompt_to_prompt: always 1); one generator per call")
    parser.add_argument("--methods", default=None, help="comma-separated row names to run (default: all)")
    parser.add_argument("--oracles-only", action="store_true", help="only the oracle rows (no model needed)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", required=True, help="where to write the results JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python benchmarks/bench_shapesedit.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    start = time.perf_counter()
    cases = shapesedit.cases(args.n, args.cases_seed)
    print(f"ShapesEdit: {len(cases)} cases (seed {args.cases_seed}); torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), device {args.device}")

    rows = [("ground truth (oracle)", shapesedit.ground_truth_method(cases), {}),
            ("no edit (oracle)", shapesedit.identity_method, {})]
    if not args.oracles_only:
        torch.manual_seed(0)  # nothing should draw from the global generator; if something does, it is repeatable
        parts = load_parts(args.unet, torch.device(args.device))
        print(f"UNet: {args.unet or 'data/text2image'}")
        rows += model_rows(parts, args.batch_size)
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",")]
        unknown = [m for m in wanted if m not in {r[0] for r in rows}]
        if unknown:
            print(f"unknown rows {unknown}; rows: {[r[0] for r in rows]}")
        rows = [r for r in rows if r[0] in wanted]

    results = []
    for name, method, options in rows:
        t0 = time.perf_counter()
        try:
            result = shapesedit.evaluate(method, cases, name=name, seed=args.seed, **options)
        except Exception as error:  # a broken method must not cost the other rows
            print(f"{name}: FAILED with {type(error).__name__}: {error}")
            continue
        results.append(result)
        o = result["summary"]["overall"]
        print(f"{name}: {time.perf_counter() - t0:.1f} s, {o['seconds']:.3f} s per edit, success {o['success']:.1%}, "
              f"locked PSNR {o['locked_psnr']:.1f} dB", flush=True)
    wall = time.perf_counter() - start
    print("\n== ShapesEdit, all kinds ==")
    print(shapesedit.format_table(results))
    print("\n== edit success by kind ==")
    print(shapesedit.format_kind_table(results, "success"))
    print("\n== locked PSNR (dB) by kind ==")
    print(shapesedit.format_kind_table(results, "locked_psnr"))
    print(f"\nwall time {wall:.0f} s")
    path = shapesedit.save_results(results, args.out, command=command, wall_time_s=round(wall, 1),
                                   unet=args.unet or "data/text2image", num_threads=torch.get_num_threads())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
