"""Recompute the ShapesEdit table (notebooks 07-08): every editing method of course_lib.editing with every inversion.

    python benchmarks/bench_shapesedit.py --masks --threads 1 --out data/shapesedit_results.json   # the full table (hours)
    python benchmarks/bench_shapesedit.py --n 25 --out /tmp/se.json                  # a quick look
    python benchmarks/bench_shapesedit.py --cases-seed 1 --out /tmp/dev.json          # the development cases
    python benchmarks/bench_shapesedit.py --unet text2image --out /tmp/before.json    # another shipped UNet
    python benchmarks/bench_shapesedit.py --rows "sdedit;inversion (ddim)" --out /tmp/a.json   # some rows only
    python benchmarks/bench_shapesedit.py --merge /tmp/a.json /tmp/b.json --out data/shapesedit_results.json

Rows, in order (rows_spec()): three references that bound the table (ground truth: every figure at its
best; no edit: 0 % success with a perfect lock; the VAE round trip decode(encode(x)): the best lock a
latent method reaches without pasting pixels); SDEdit; then, for each inversion of
editing.INVERSIONS, editing by inversion alone, prompt-to-prompt with local blending, and mask
locking with the automatic DiffEdit mask; prompt-to-prompt without local blending, and mask locking
with the attention mask instead; and two rows that are given the case's ground-truth mask
(reference lines, never a method a user can run: mask locking with it, and with the source pixels
pasted back outside it). Every automatic row sees only the source image and the two captions.

The null-text rows run on the first --null-text-n cases (50: 10 per kind), the others on all.
Each row runs shapesedit.evaluate on the same cases with a generator seeded by seed + case index,
and prints its overall line; then the overall table (edit success with its 95 % Wilson interval,
gains over SDEdit), success and locked PSNR by kind, McNemar tests of each row's success against
SDEdit's (which differences are real), and the wall time. Everything goes to --out (JSON, read back
by shapesedit.load_results), with the command and the UNet used. Rows split over several processes
(--rows) are joined with --merge. This is a benchmark, not a test.
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

UNET = "text2image"  # the UNet notebooks 07-08 edit with (data/<name>)
BEST_UNET_ROW = "mask_locking (edit_friendly)"  # the best fully automatic UNet row of data/shapesedit_results.json
UNET_RESULTS = Path(__file__).resolve().parents[1] / "data" / "shapesedit_results.json"


def rows_spec() -> list[tuple[str, str, dict, bool]]:
    """Return (row name, editing.METHODS name or a reference, options, pass the ground-truth mask), in table order."""
    from course_lib import editing

    rows = [("ground truth (reference)", "ground_truth", {}, False), ("no edit (reference)", "identity", {}, False),
            ("VAE round trip (reference)", "vae", {}, False), ("sdedit", "sdedit", {}, False)]
    for inversion in editing.INVERSIONS:
        rows.append((f"inversion ({inversion})", "inversion", {"inversion": inversion}, False))
    for inversion in editing.INVERSIONS:
        rows.append((f"prompt_to_prompt ({inversion})", "prompt_to_prompt", {"inversion": inversion}, False))
    for inversion in editing.INVERSIONS:
        rows.append((f"mask_locking ({inversion})", "mask_locking", {"inversion": inversion}, False))
    rows += [("prompt_to_prompt (default, no local blend)", "prompt_to_prompt", {"local_blend": False}, False),
             ("mask_locking (default, attention mask)", "mask_locking", {"mask_source": "attention"}, False),
             ("mask_locking (given mask: reference)", "mask_locking", {}, True),
             ("mask_locking (given mask, pixels pasted: reference)", "mask_locking", {"composite": True}, True)]
    return rows


def flow_rows_spec() -> list[tuple[str, str, dict, bool]]:
    """The flow family's rows (notebook 10): the same references, then every flow method of editing.METHODS.

    Each method runs with its registered defaults (the settings tuned on the development cases, seed 1).
    "own mask, pixels pasted" puts the source's pixels back outside KV-Edit's own automatic mask (what
    inpainting pipelines do; a user can run it); the last row is given the case's ground-truth mask (a
    reference line, never a method a user can run).
    """
    from course_lib import editing

    rows = [("ground truth (reference)", "ground_truth", {}, False), ("no edit (reference)", "identity", {}, False),
            ("VAE round trip (reference)", "vae", {}, False)]
    for solver in editing.SOLVERS:
        rows.append((f"flow_inversion ({solver})", "flow_inversion", {"solver": solver}, False))
    rows += [("rf_inversion", "rf_inversion", {}, False), ("flowedit", "flowedit", {}, False),
             ("flow_p2p", "flow_p2p", {}, False), ("kv_edit", "kv_edit", {}, False),
             ("kv_edit (attention mask)", "kv_edit", {"mask_source": "attention"}, False),
             ("kv_edit (own mask, pixels pasted)", "kv_edit", {"composite": True}, False),
             ("kv_edit (given mask: reference)", "kv_edit", {}, True)]
    return rows


# Null-text inversion optimises an embedding at every step (11-19 s an edit in the shipped run, about ten times
# the others): its rows run on the first NULL_TEXT_N cases (10 per kind), which the table's n says.
NULL_TEXT_N = 50

# Methods that need every prompt pair of a batch to align alike (one attention controller per batch).
ONE_AT_A_TIME = ("prompt_to_prompt",)


def load_parts(unet: str, device, family: str = "unet"):
    """Return text2image.Parts with data/<unet> (a shipped name) or a UNet2DConditionModel folder; or the flow system."""
    from course_lib import flow_text2image, text2image

    if family == "flow":
        return flow_text2image.load_system(device=device)

    if Path(unet).is_dir():
        from diffusers import UNet2DConditionModel

        model = UNet2DConditionModel.from_pretrained(unet, torch_dtype=torch.float32, low_cpu_mem_usage=False)
        parts = text2image.load_parts(device=device)
        return text2image.Parts(model.to(device).eval(), parts.vae, parts.tokenizer, parts.text_encoder)
    return text2image.load_parts(unet, device=device)


def make_method(kind: str, options: dict, parts, cases):
    from course_lib import editing
    from course_lib import vae as vae_lib

    if kind == "ground_truth":
        return shapesedit.ground_truth_method(cases)
    if kind == "identity":
        return shapesedit.identity_method
    if kind == "vae":
        def vae_round_trip(image, source_prompt, target_prompt, *, generator=None):
            out = vae_lib.reconstruct(parts.vae, image if image.ndim == 4 else image[None])
            return out if image.ndim == 4 else out[0]
        return vae_round_trip
    editing.METHODS[kind].arguments(options)  # the row's options, checked once before any case runs
    return functools.partial(editing.METHODS[kind], parts, **options)


def masks_iou(parts, cases, seed: int) -> dict:
    """IoU of the automatic masks (editing.edit_mask's defaults, DiffEdit and attention) with the true masks, by kind.

    Each case's generator is seeded as evaluate() seeds the methods' (seed + index), so the DiffEdit
    masks are the ones the default mask_locking rows edit with.
    """
    from course_lib import editing, shapes

    out = {"num_cases": len(cases), "settings": "edit_mask defaults: 4 draws at strength 0.7, thresholds "
           f"{editing.MASK_THRESHOLDS}, grown 1 cell, holes filled; pixels of the latent cells"}
    for source in editing.MASK_SOURCES:
        per_kind = {k: [] for k in shapes.EDIT_KINDS}
        for i, case in enumerate(cases):
            small = editing.edit_mask(parts, case.source_image, case.source_caption, case.target_caption, source=source,
                                      generator=torch.Generator().manual_seed(seed + i))
            found = editing.image_mask(small, case.mask.shape)[0, 0]
            per_kind[case.edit.kind].append(shapesedit.mask_iou(found, case.mask))
        row = {k: round(sum(v) / len(v), 4) for k, v in per_kind.items() if v}
        row["all"] = round(sum(sum(v) for v in per_kind.values()) / len(cases), 4)
        out[source] = row
    return out


def best_unet_row() -> dict | None:
    """The best fully automatic UNet row of the shipped table, the flow rows' reference (None if absent)."""
    if not UNET_RESULTS.is_file():
        return None
    return next((r for r in shapesedit.load_results(UNET_RESULTS) if r["name"] == BEST_UNET_ROW), None)


def report(results: list[dict], wall: float | None = None, family: str = "unet",
           cases_seed: int = shapesedit.DEFAULT_SEED) -> None:
    print("\n== ShapesEdit, all kinds ==")
    print(shapesedit.format_table(results))
    print("\n== edit success by kind ==")
    print(shapesedit.format_kind_table(results, "success"))
    print("\n== locked PSNR (dB) by kind ==")
    print(shapesedit.format_kind_table(results, "locked_psnr"))
    same_cases = cases_seed == shapesedit.DEFAULT_SEED  # the UNet table ran the benchmark's cases
    base = ((best_unet_row() if same_cases else None) if family == "flow" else
            next((r for r in results if r["name"] == shapesedit.BASELINE), None))
    if base is not None:
        print(f"\n== success against {base['name']}: exact McNemar test on the same cases ==")
        for r in results:
            if r is base or "reference" in r["name"]:
                continue
            test = shapesedit.mcnemar(r, base)
            print(f"{r['name']:52s} {100 * test['difference']:+6.1f} pp  (right alone {test['a_only']:3d} vs "
                  f"{test['b_only']:3d}, p = {test['p_value']:.2g}: {'real' if test['real'] else 'not shown'})")
        if family == "flow":
            print(f"\n== locked PSNR against {base['name']}: exact sign test on the same cases ==")
            for r in results:
                if "reference" in r["name"]:
                    continue
                test = shapesedit.sign_test(r, base, "locked_psnr")
                print(f"{r['name']:52s} higher on {test['a_higher']:3d}, lower on {test['b_higher']:3d} cases, median "
                      f"{test['median_difference']:+5.1f} dB, p = {test['p_value']:.2g}: "
                      f"{'real' if test['real'] else 'not shown'}")
    if wall is not None:
        print(f"\nwall time {wall:.0f} s")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=shapesedit.DEFAULT_N, help="cases (250 = the benchmark, 50 per kind)")
    parser.add_argument("--cases-seed", type=int, default=shapesedit.DEFAULT_SEED,
                        help=f"{shapesedit.DEFAULT_SEED}: the benchmark; {shapesedit.DEV_SEED}: the development cases")
    parser.add_argument("--seed", type=int, default=0, help="edit generators are seeded by seed + case index")
    parser.add_argument("--unet", default=UNET, help="a shipped UNet name (data/NAME) or a UNet2DConditionModel folder")
    parser.add_argument("--family", choices=("unet", "flow"), default="unet",
                        help="unet: notebooks 07-08's rows on --unet; flow: notebook 10's rows on data/flow_transformer")
    parser.add_argument("--rows", default=None, help="row names to run, separated by ; (default: all); see rows_spec()")
    parser.add_argument("--merge", nargs="+", default=None, help="join these results files into --out, in row order")
    parser.add_argument("--masks", action="store_true", help="also score the automatic masks (IoU by kind)")
    parser.add_argument("--null-text-n", type=int, default=NULL_TEXT_N,
                        help=f"null-text rows run on the first this many cases only (default {NULL_TEXT_N}: "
                             "its optimisation makes each edit about ten times slower)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", required=True, help="where to write the results JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python benchmarks/bench_shapesedit.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    spec = flow_rows_spec() if args.family == "flow" else rows_spec()
    order = [name for name, *_ in spec]
    if args.merge:
        results, meta = [], {}
        for path in args.merge:
            loaded = shapesedit.load_results(path)
            results += loaded
            meta.setdefault("commands", []).append(loaded[0]["run"]["command"] if loaded else "")
            meta["wall_time_s"] = meta.get("wall_time_s", 0) + (loaded[0]["run"].get("wall_time_s", 0) if loaded else 0)
            meta["unet"] = loaded[0]["run"].get("unet") if loaded else None
            for key in ("mask_iou", "cases_seed", "num_threads", "family"):
                if loaded and key in loaded[0]["run"]:
                    meta[key] = loaded[0]["run"][key]
        results.sort(key=lambda r: order.index(r["name"]) if r["name"] in order else len(order))
        results = [{k: v for k, v in r.items() if k != "run"} for r in results]
        report(results, family=meta.get("family", "unet"), cases_seed=meta.get("cases_seed", shapesedit.DEFAULT_SEED))
        path = shapesedit.save_results(results, args.out, command=command, **meta)
        print(f"wrote {path}")
        return
    start = time.perf_counter()
    cases = shapesedit.cases(args.n, args.cases_seed)
    print(f"ShapesEdit: {len(cases)} cases (seed {args.cases_seed}); torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), device {args.device}; "
          + (f"UNet {args.unet}" if args.family == "unet" else "flow family: data/flow_transformer on data/vae16"))
    torch.manual_seed(0)  # nothing should draw from the global generator; if something does, it is repeatable
    parts = load_parts(args.unet, torch.device(args.device), args.family)
    if args.rows:
        wanted = [r.strip() for r in args.rows.split(";")]
        unknown = [r for r in wanted if r not in order]
        if unknown:
            raise SystemExit(f"unknown rows {unknown}; rows: {order}")
        spec = [row for row in spec if row[0] in wanted]
    results = []
    for name, kind, options, pass_mask in spec:
        t0 = time.perf_counter()
        method = make_method(kind, options, parts, cases)
        row_cases = cases[:args.null_text_n] if options.get("inversion") == "null_text" else cases
        try:
            result = shapesedit.evaluate(method, row_cases, name=name, seed=args.seed, pass_mask=pass_mask)
        except Exception as error:  # a broken method must not cost the other rows
            print(f"{name}: FAILED with {type(error).__name__}: {error}")
            continue
        result["settings"].update(method=kind, options=options)
        results.append(result)
        o = result["summary"]["overall"]
        low, high = o["success_ci"]
        print(f"{name}: {time.perf_counter() - t0:.0f} s, {o['seconds']:.3f} s per edit, success {o['success']:.1%} "
              f"[{low:.0%}, {high:.0%}], locked PSNR {o['locked_psnr']:.1f} dB", flush=True)
    extra = {}
    if args.masks:
        extra["mask_iou"] = masks_iou(parts, cases, args.seed)
        for source in ("diffedit", "attention"):
            print(f"mask IoU ({source}): " + ", ".join(f"{k} {v:.2f}" for k, v in extra["mask_iou"][source].items()))
    wall = time.perf_counter() - start
    report(results, wall, family=args.family, cases_seed=args.cases_seed)
    path = shapesedit.save_results(results, args.out, command=command, wall_time_s=round(wall, 1), family=args.family,
                                   unet=args.unet if args.family == "unet" else "flow_transformer",
                                   num_threads=torch.get_num_threads(), cases_seed=args.cases_seed, **extra)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
