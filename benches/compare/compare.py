#!/usr/bin/env python3
"""Joins the vlrl criterion results of `benches/generate.rs` with the HF
results of `hf_generate.py` into one markdown table (tokens/s and ratios).

vlrl times are criterion's median per iteration
(`<criterion dir>/generate_<model>/<prefill|generate>_<backend>/b<B>_p<P>_n<N>/new/estimates.json`);
decode tokens/s uses the same split as the HF side:
batch * (N - 1) / (t_generate - t_prefill).
"""

import argparse
import json
import os
import sys


def criterion_median_s(root: str, group: str, func: str, param: str) -> float:
    path = os.path.join(root, group, func, param, "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"] * 1e-9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--criterion", required=True, help="criterion output dir (target/criterion)")
    ap.add_argument("--hf", required=True, help="JSON written by hf_generate.py --json")
    ap.add_argument("--backend", default="flex", help="vlrl backend label (flex, ndarray)")
    args = ap.parse_args()

    with open(args.hf) as f:
        hf = json.load(f)
    print(f"HF: torch {hf['meta']['torch']}, transformers {hf['meta']['transformers']}, "
          f"{hf['meta']['threads']} threads; vlrl backend: {args.backend}\n")
    print("| model | batch | prompt | new | phase | vlrl tok/s | HF tok/s | vlrl / HF |")
    print("|---|---|---|---|---|---|---|---|")
    missing = False
    for r in hf["results"]:
        b, p, n = r["batch"], r["prompt_len"], r["new_tokens"]
        group = f"generate_{r['model']}"
        try:
            t_pre = criterion_median_s(args.criterion, group, f"prefill_{args.backend}", f"b{b}_p{p}_n1")
            t_gen = criterion_median_s(args.criterion, group, f"generate_{args.backend}", f"b{b}_p{p}_n{n}")
        except FileNotFoundError as e:
            print(f"missing criterion result: {e.filename}", file=sys.stderr)
            missing = True
            continue
        ours = {
            "prefill": b * p / t_pre,
            "decode": b * (n - 1) / (t_gen - t_pre),
        }
        for phase in ("prefill", "decode"):
            theirs = r[f"{phase}_tok_s"]
            print(f"| {r['model']} | {b} | {p} | {n} | {phase} | {ours[phase]:.1f} | "
                  f"{theirs:.1f} | {ours[phase] / theirs:.2f}x |")
    if missing:
        sys.exit(1)


if __name__ == "__main__":
    main()
