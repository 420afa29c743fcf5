"""Language models in the loop (notebook 09): the prompt writer's accuracy, end-to-end adherence, and ShapesEdit from instructions.

    python benchmarks/bench_instructions.py --threads 1 --out data/instruction_results.json          # everything (~15 min)
    python benchmarks/bench_instructions.py --only sweep --threads 1 --out /tmp/sweep.json          # the IP2P guidance sweep
    python benchmarks/bench_instructions.py --n 25 --out /tmp/quick.json                            # a quick look

Parts, each printed and written to --out (shapesedit.save_results' format, read back by
shapesedit.load_results; the extra figures under "writer", "end_to_end" and "sweep"):

1. sweep: InstructPix2Pix's text and image guidance scales on the development cases
   (shapesedit.DEV_SEED, never the benchmark's), the grid of the paper's two scales; the row with
   the highest success (ties: locked PSNR) is what instruct_pix2pix.TEXT_GUIDANCE / IMAGE_GUIDANCE hold.
2. writer: exact match per kind on held-out examples (language.examples(split="test")), and per
   attribute on the request captions.
3. end_to_end: the shapes judge on images drawn from held-out requests as typed, from the writer's
   captions, and from the true captions (a reference, in the request's order and in reading order).
4. instructions: the ShapesEdit cases (250, seed 0) with one free instruction each in held-out phrasings
   (language.benchmark_instructions): the writer's parse accuracy and how its failures fail
   (language.target_failures); no image is drawn.
5. table: the same cases and instructions (and part 4's figures): mask locking and
   InstructPix2Pix fed by the writer, InstructPix2Pix fed the canonical instruction of the two exact
   captions, and, loaded from data/shapesedit_results.json (same cases, same seeds), the two-caption
   rows of SDEdit, prompt-to-prompt and mask locking. No row sees the case's mask or pastes pixels.
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

from course_lib import editing, environment, instruct_pix2pix, language, shapes, shapesedit, text2image  # noqa: E402

PARTS = ("sweep", "writer", "end_to_end", "instructions", "table")
SWEEP_TEXT = (2.0, 4.0, 7.5)
SWEEP_IMAGE = (1.0, 1.5, 2.5)
SWEEP_CASES = 50
TWO_CAPTION_ROWS = ("sdedit", "prompt_to_prompt (edit_friendly)", "mask_locking (ddim)")  # the methods' defaults


def sweep(ip2p_parts, n: int) -> list[dict]:
    cases = shapesedit.cases(n, shapesedit.DEV_SEED)
    rows = []
    for s_t in SWEEP_TEXT:
        for s_i in SWEEP_IMAGE:
            r = shapesedit.evaluate(lambda *a, **k: instruct_pix2pix.method(ip2p_parts)(*a, guidance_scale=s_t,
                                                                                      image_guidance_scale=s_i, **k),
                                    cases, name=f"s_T={s_t:g}, s_I={s_i:g}")
            o = r["summary"]["overall"]
            rows.append({"guidance_scale": s_t, "image_guidance_scale": s_i, "success": o["success"],
                         "scene_ok": o["scene_ok"], "locked_psnr": round(o["locked_psnr"], 3)})
            print(f"  s_T = {s_t:4.1f}, s_I = {s_i:3.1f}: success {100 * o['success']:5.1f} %, "
                  f"scene ok {100 * o['scene_ok']:5.1f} %, locked PSNR {o['locked_psnr']:5.2f} dB", flush=True)
    best = max(rows, key=lambda r: (r["success"], r["locked_psnr"]))
    print(f"  best on the development cases: s_T = {best['guidance_scale']:g}, s_I = {best['image_guidance_scale']:g} "
          f"(the library's defaults: {instruct_pix2pix.TEXT_GUIDANCE:g}, {instruct_pix2pix.IMAGE_GUIDANCE:g})")
    return rows


def writer_figures(writer, n: int) -> dict:
    rows = language.examples(n, 0, "test")
    prompts = [p for _, p, _ in rows]
    expected = [language.resolved(k, p, e) for k, p, e in rows]
    out = {}
    for guard in (True,):  # the model alone never reads raw text: it is trained on what the reader leaves
        answers = writer.answer(prompts, guard=guard)
        got = [language.resolved(k, p, a) for (k, p, _), a in zip(rows, answers)]
        tag = "" if guard else "lm_alone_"
        for kind in ("request", "refusal", "instruction"):
            pairs = [(g, e) for (k, _, _), g, e in zip(rows, got, expected) if k == kind]
            out[tag + kind] = {"n": len(pairs), "exact": round(sum(g == e for g, e in pairs) / len(pairs), 4)}
            print(f"  {'with the guard' if guard else 'the LM alone':15s} {kind:12s} n = {len(pairs):4d}: "
                  f"exact {100 * out[tag + kind]['exact']:5.1f} %")
        if guard:
            pairs = [f"{c} {s}" for c, s in shapes.HELDOUT_PAIRS]
            unseen = [(g, e) for (k, _, _), g, e in zip(rows, got, expected) if k != "refusal" and any(p in e for p in pairs)]
            out["unseen_pair"] = {"n": len(unseen), "exact": round(sum(g == e for g, e in unseen) / max(1, len(unseen)), 4)}
            print(f"  answers naming a colour-shape pair no training answer names (n = {len(unseen)}): "
                  f"exact {100 * out['unseen_pair']['exact']:.1f} %")
            captions = [(g, e) for (k, _, _), g, e in zip(rows, got, expected) if k == "request"]
            out["request_attributes"] = {k: round(v, 4) for k, v in language.score_answers(*zip(*captions)).items()}
            print(f"  request captions per attribute: {out['request_attributes']}")
            false_refusals = sum(g.startswith(language.REFUSALS) and not e.startswith(language.REFUSALS)
                                 for g, e in zip(got, expected))
            out["false_refusals"] = false_refusals
            print(f"  refused although the world can do it: {false_refusals} of {sum(not e.startswith(language.REFUSALS) for e in expected)}")
    seen = language.examples(n // 3, 99, "train")  # training phrasings (a seed no training run drew): the gap to held-out
    answers = writer.answer([p for _, p, _ in seen])
    out["training_phrasings"] = {}
    for kind in ("request", "refusal", "instruction"):
        pairs = [(language.resolved(k, p, a), language.resolved(k, p, e)) for (k, p, e), a in zip(seen, answers) if k == kind]
        out["training_phrasings"][kind] = round(sum(g == e for g, e in pairs) / len(pairs), 4)
    print(f"  training phrasings, fresh draws (n = {len(seen)}): {out['training_phrasings']}")
    typo_rows = language.examples(n // 3, 1, "test", typo_rate=1.0, kinds=("request", "instruction"))
    answers = writer.answer([p for _, p, _ in typo_rows])
    out["with_one_typo"] = round(sum(language.resolved(k, p, a) == language.resolved(k, p, e)
                                     for (k, p, e), a in zip(typo_rows, answers)) / len(typo_rows), 4)
    print(f"  requests and instructions with one typo each (n = {len(typo_rows)}): exact {100 * out['with_one_typo']:.1f} %")
    return out


def show_e2e(e2e: dict) -> None:
    for name, figures in e2e.items():
        if "all" not in figures:
            print(f"  {name:32s} " + "  ".join(f"{k} {100 * v:5.1f}" for k, v in figures.items()))
            continue
        print(f"  {name:32s} all right {100 * figures['all']:5.1f} %  " +
              "  ".join(f"{k} {100 * v:5.1f}" for k, v in figures.items() if k != "all"))


def merge(paths, out, argv) -> None:
    import json

    results, meta, commands = [], {}, []
    for path in paths:
        doc = json.loads(Path(path).read_text())
        commands += doc.get("commands", [doc["command"]])
        for k, v in doc.items():
            if k in ("end_to_end", "end_to_end_final") and k in meta:  # rows measured in separate runs: each row from the last run that drew it
                meta[k] = {row: {**meta[k].get(row, {}), **figures} for row, figures in {**meta[k], **v}.items()}
            elif k in PARTS + ("num_threads", "e2e_n", "end_to_end_final", "end_to_end_final_part"):
                meta[k] = v
        meta["wall_time_s"] = round(meta.get("wall_time_s", 0) + doc.get("wall_time_s", 0), 1)
        results += doc["results"]
    command = "python benchmarks/bench_instructions.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    path = shapesedit.save_results(results, out, command=command, commands=commands, **meta)
    print(f"wrote {path}: {len(results)} rows from {len(paths)} runs")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=shapesedit.DEFAULT_N, help="ShapesEdit cases (250: the benchmark)")
    parser.add_argument("--writer-n", type=int, default=1500, help="held-out writer examples")
    parser.add_argument("--e2e-n", type=int, default=200, help="requests for the end-to-end adherence")
    parser.add_argument("--e2e-rows", default=";".join(language.E2E_ROWS),
                        help=f"semicolon-separated rows of the end-to-end part, of {language.E2E_ROWS}")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {PARTS}")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--table-rows", default=None, help="only the table rows whose names contain one of these (comma-separated)")
    parser.add_argument("--merge", nargs="+", default=None, help="join the files of runs split with --only, then stop")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.merge:
        merge(args.merge, args.out, argv)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    only = args.only.split(",")
    started = time.perf_counter()
    writer = language.load_writer()
    t2i = text2image.load_parts(device="cpu")
    ip2p_parts = instruct_pix2pix.load_parts(device="cpu")
    meta = {"num_threads": torch.get_num_threads()}
    results = []
    if "sweep" in only:
        print("== InstructPix2Pix guidance on the development cases ==")
        meta["sweep"] = sweep(ip2p_parts, SWEEP_CASES)
    if "writer" in only:
        print("== the prompt writer on held-out phrasings ==")
        meta["writer"] = writer_figures(writer, args.writer_n)
    if "end_to_end" in only:
        print("== end to end: the shapes judge on generated images ==")
        meta["end_to_end"] = language.end_to_end(writer, t2i, args.e2e_n, rows=args.e2e_rows.split(";"))
        meta["e2e_n"] = args.e2e_n
        print("  -- generated held-out requests --")
        show_e2e(meta["end_to_end"])
        print(f"  -- the hand-written {language.PARTS[-1]} held-out requests (the freshest set) the judge can check --")
        meta["end_to_end_final"] = language.end_to_end(writer, t2i, args.e2e_n, rows=args.e2e_rows.split(";"),
                                                       part=language.PARTS[-1])
        meta["end_to_end_final_part"] = language.PARTS[-1]
        show_e2e(meta["end_to_end_final"])
    if "instructions" in only or "table" in only:
        cases = shapesedit.cases(args.n)
        instructions = language.benchmark_instructions(cases)
        targets = language.writer_targets(writer, cases, instructions)
        parse = sum(t == c.target_caption for t, c in zip(targets, cases)) / len(cases)
        meta["instructions"] = {"parse_accuracy": round(parse, 4), "refused_or_invalid": sum(t is None for t in targets),
                                "failures": language.target_failures(writer, cases, instructions),
                                "examples": [[c.source_caption, i, t] for c, i, t in list(zip(cases, instructions, targets))[:10]]}
        print(f"== ShapesEdit from instructions ({len(cases)} cases): the writer's target caption is exact for "
              f"{100 * parse:.1f} %, {meta['instructions']['refused_or_invalid']} refused or not one edit: "
              f"{meta['instructions']['failures']} ==")
    if "table" in only:
        runs = [("mask_locking (instruction, prompt writer)", functools.partial(editing.METHODS["mask_locking"], t2i), targets),
                ("instruct_pix2pix (instruction, prompt writer)", instruct_pix2pix.method(ip2p_parts), targets),
                ("instruct_pix2pix (canonical instruction)", instruct_pix2pix.method(ip2p_parts), None)]
        if args.table_rows:
            runs = [r for r in runs if any(part in r[0] for part in args.table_rows.split(","))]
        for name, method, prompts in runs:
            t0 = time.perf_counter()
            r = shapesedit.evaluate(method, cases, name=name, target_prompts=prompts)
            o = r["summary"]["overall"]
            print(f"  {name:48s} success {100 * o['success']:5.1f} %  locked PSNR {o['locked_psnr']:5.2f} dB  "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
            results.append(r)
        if args.n == shapesedit.DEFAULT_N and (not args.table_rows or "two captions" in args.table_rows):
            shipped = {r["name"]: r for r in shapesedit.load_results(environment.DATA_DIR / "shapesedit_results.json")}
            for name in TWO_CAPTION_ROWS:
                row = {k: v for k, v in shipped[name].items() if k != "run"}
                row["name"] = f"{name} (two captions)"
                results.append(row)
        print(shapesedit.format_table(results, baseline="sdedit (two captions)" if args.n == shapesedit.DEFAULT_N else "mask_locking (instruction"))
    meta["wall_time_s"] = round(time.perf_counter() - started, 1)
    command = "python benchmarks/bench_instructions.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    path = shapesedit.save_results(results, args.out, command=command, **meta)
    print(f"wrote {path} ({meta['wall_time_s']:.0f} s)")


if __name__ == "__main__":
    main()
