"""The prompt writer on the hand-written held-out benchmark (notebook 09): the table before and after, and typos.

    python benchmarks/bench_writer.py --out data/writer_benchmark/results.json                 # the shipped writer
    python benchmarks/bench_writer.py --writer /tmp/pw --label "retrained" --out /tmp/w.json     # another writer folder
    python benchmarks/bench_writer.py --merge before.json after.json --out results.json        # two runs in one file

Prints, per writer: requests and instructions (exact, false refusals, impossible refused, silent
wrong, per attribute), the tagged subsets (two-object requests measured on their own), and exact
match with one- and two-character typos in held-out slot words against the same requests typed right.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from course_lib import environment, language  # noqa: E402
from course_lib.language import heldout  # noqa: E402

COLUMNS = ("n", "exact", "false refusals", "impossible refused", "silent wrong", "colour", "shape", "position", "count")


def run(folder, label: str, part: str) -> dict:
    start = time.perf_counter()
    writer = language.load_writer(folder)
    scored = heldout.score_heldout(writer, part)
    table = heldout.heldout_table(scored)
    typos = {f"{k} typo(s)": heldout.score_typos(writer, k, part=part) for k in (1, 2)}
    lexicon_names = {split: heldout.score_lexicon(writer, split) for split in ("train", "heldout")}
    return {"label": label, "part": part, "writer": str(folder), "table": table, "typos": typos, "lexicon": lexicon_names,
            "misses": {kind: [{k: r[k] for k in ("id", "answer", "refused", "expected")}
                              for r in rows if not r["exact"]] for kind, rows in scored.items()},
            "wall_time_s": round(time.perf_counter() - start, 1)}


def show(result: dict) -> None:
    print(f"\n{result['label']} ({result['writer']}), {result['part']} set, {result['wall_time_s']} s")
    print(f"  {'':28}" + "".join(f"{c:>12}" for c in COLUMNS))
    for name, row in result["table"].items():
        print(f"  {name:28}" + "".join(f"{row[c]:>12}" if c == "n" else f"{100 * row[c]:>11.1f}%" for c in COLUMNS))
    for name, row in result["typos"].items():
        print(f"  {name:28} n = {row['n']}, exact {100 * row['exact']:.1f} %, refused {100 * row['refused']:.1f} %")
    for split, row in result.get("lexicon", {}).items():
        print(f"  colour names, {split:7} split  {row['mapped']} mapped: {100 * row['mapped right']:.1f} % right; "
              f"{row['refused']} refused by the lexicon: {100 * row['refused right']:.1f} % refused")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writer", default=language.NAME, help="a writer folder or a name under data/")
    parser.add_argument("--label", default="shipped writer")
    parser.add_argument("--parts", default=",".join(language.PARTS), help="which held-out parts to score (benchmark_set.PARTS)")
    parser.add_argument("--merge", nargs="+", help="JSON files of earlier runs to put side by side")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.merge:
        runs = [r for f in args.merge for r in json.loads(Path(f).read_text())["runs"]]
    else:
        runs = [run(args.writer, args.label, part) for part in args.parts.split(",")]
    for r in runs:
        show(r)
    if args.out:
        args.out.write_text(json.dumps({"benchmark": "writer_benchmark", "versions": environment.versions(),
                                        "command": "python " + " ".join(sys.argv), "runs": runs}, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
