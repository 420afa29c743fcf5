"""Steps against quality for every sampler (notebook 03b): ODE error and order, digits, text-to-image, seconds per image.

    python benchmarks/bench_samplers.py --threads 1 --out data/sampler_results.json   # what notebook 03b loads
    (or, on two cores, the same with --only ode,digits and --only text2image in two processes)
    python benchmarks/bench_samplers.py --quick --threads 1 --out /tmp/samplers.json  # a quick look (~2 min)

Prints and writes (JSON, --out):
  1. the Gaussian mixture (the ring of notebook 02) with the exact eps*: RMS error of x_0 against the
     probability-flow ODE's own solution from the same x_T, per sampler and NFE, on the smooth log-sigma
     grid (sigma 80 -> 0.002, Karras et al.) and on the course's own grid (linear betas, trailing
     spacing); the order each shows (the fitted log-log slope, NFE >= 33);
  2. digits (data/ddpm_digits_cond, CFG g = 2, 300 samples): classifier accuracy, mean confidence and
     RMS distance to a Heun-100 (199 NFE) solve from the same x_T, per sampler and NFE;
  3. text-to-image (data/text2image, g = 4, 200 'test' prompts, trailing spacing): adherence and the
     latent distance to a Heun-100 solve;
  4. per study, the fewest NFE at which each sampler is as close to the fine solve as DDIM with 51
     (fast_sampling.matching_evaluations), and its seconds per image on this CPU.
No GPU here: the Stable Diffusion 1.5 figures printed last are quoted from diffusers' documentation,
not measured by the course. A benchmark, not a test: nothing here fails.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_lib import checkpoints, environment, fast_sampling, models, text2image  # noqa: E402

def show(rows, keys):
    for r in rows:
        print("   " + "  ".join(f"{k}={r[k]:.4g}" if isinstance(r[k], float) else f"{k}={r[k]}" for k in keys))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and prompts")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="write every row here (JSON; sections already there are kept)")
    parser.add_argument("--samplers", default=",".join(fast_sampling.STUDY_SAMPLERS),
                        help="comma-separated samplers for the digits and text-to-image studies; rows of other "
                             "samplers already in --out are kept")
    parser.add_argument("--only", default="ode,digits,text2image",
                        help="comma-separated sections to run (two processes can share the two cores)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(environment.describe())
    doc = {"benchmark": "samplers", "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "command": "python benchmarks/bench_samplers.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
           "versions": environment.versions(), "num_threads": torch.get_num_threads(), "quick": args.quick}
    only = set(args.only.split(","))
    nfes = (5, 9, 17, 33, 65, 129, 257)

    start = time.perf_counter()
    if "ode" in only:
        ode(doc, nfes, args)
    studies = []
    names = args.samplers.split(",")
    previous = json.loads(Path(args.out).read_text()) if args.out and Path(args.out).exists() else {}
    if "digits" in only:
        start = time.perf_counter()
        digits = checkpoints.load("ddpm_digits_cond", device="cpu")
        rows = fast_sampling.digits_study(digits, names, per_class=10 if args.quick else 30)
        studies.append(("digits", rows, ("sampler", "evaluations", "accuracy", "confidence", "distance",
                                         "seconds_per_image"), "accuracy"))
        print(f"\n2. digits, g = 2 ({time.perf_counter() - start:.0f} s)")
        show(*studies[-1][1:3])
    if "text2image" in only:
        start = time.perf_counter()
        parts = text2image.load_parts(device="cpu")
        rows = fast_sampling.text_study(parts, names, num_prompts=40 if args.quick else 200)
        studies.append(("text2image", rows, ("sampler", "evaluations", "adherence", "distance", "seconds_per_image"),
                        "adherence"))
        print(f"\n3. text-to-image, g = 4 ({time.perf_counter() - start:.0f} s)")
        show(*studies[-1][1:3])

    print("\n4. fewest NFE as close to the fine solve as DDIM with 51 (and as good by the judge, within 1 pp),"
          " and seconds per image there (this CPU)")
    for name, rows, _, score in studies:
        kept = [r for r in previous.get(name, {}).get("rows", []) if r["sampler"] not in names]
        rows = kept + rows  # the rows of samplers this run did not redo, from --out
        doc[name] = {"rows": rows}
        for key, options in (("distance", {}), (score, {"higher_is_better": True, "tolerance": 0.01})):
            match = fast_sampling.matching_evaluations(rows, target=("ddim", 51), key=key, **options)
            seconds = {k: next(r["seconds_per_image"] for r in rows if r["sampler"] == k and r["evaluations"] == v)
                       for k, v in match.items() if v is not None}
            print(f"  {name}, {key}: " + ", ".join(f"{k} {v} NFE ({seconds.get(k, float('nan')) * 1000:.1f} ms/image)"
                                                   for k, v in match.items()))
            doc[name][f"matching_ddim_51_{key}"] = {"evaluations": match, "seconds_per_image": seconds}

    print("\n5. Stable Diffusion 1.5 on a GPU: not measured here. Quoted (fast_sampling.GPU_QUOTES, read in 06b):")
    for quote in fast_sampling.GPU_QUOTES:
        print(f"  {quote['setting']}: {quote['value']} {quote['unit']} ({quote['source']})")
    if args.out:  # merged with what another process (--only) wrote there meanwhile; the commands are all kept
        out = Path(args.out)
        previous = json.loads(out.read_text()) if out.exists() else {}
        commands = [*previous.get("commands", []), doc["command"]]
        out.write_text(json.dumps({**previous, **doc, "commands": commands}, indent=1) + "\n")
        print(f"\nwrote {args.out}")


def ode(doc, nfes, args):
    start = time.perf_counter()
    print("\n1. Gaussian mixture, exact eps*: RMS error of x_0 against the ODE's solution")
    for tag, kwargs in (("log_sigma", {}),
                        ("course_grid", {"alpha_bars": models.SCHEDULE.alpha_bars.double(), "spacing": "trailing"})):
        rows = fast_sampling.ode_errors(evaluations=nfes, n=200 if args.quick else 1000, **kwargs)
        orders = {name: fast_sampling.fitted_order(rows, name, min_evaluations=33) for name in fast_sampling.STUDY_SAMPLERS}
        print(f"  {tag}: fitted order (NFE >= 33) " + ", ".join(f"{k} {v:.2f}" for k, v in orders.items()))
        show(rows, ("sampler", "evaluations", "error"))
        doc[f"ode_{tag}"] = {"rows": rows, "orders": orders}
    print(f"  ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
