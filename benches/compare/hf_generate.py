#!/usr/bin/env python3
"""Hugging Face side of the generation benchmark (issue 3, "Benchmarks").

Times `Qwen2ForCausalLM.generate` (greedy, KV cache, f32; torch CPU with
`--threads` threads, or `--device cuda`) on the same checkpoint directories,
prompts and (batch, prompt length, new tokens) cases as `benches/generate.rs`:

  prefill tokens/s = batch * prompt_len / t(max_new_tokens=1)
  decode  tokens/s = batch * (N - 1) / (t(max_new_tokens=N) - t(max_new_tokens=1))

Times are medians over `--repeats` runs after one warm-up. Run with
/work/pyref/bin/python (torch CPU, transformers 5); `run.sh` drives both sides.

  python benches/compare/hf_generate.py --model qwen2-tiny=tests/fixtures/models/qwen2-tiny \
      --json target/bench-compare/hf.json
"""

import argparse
import json
import platform
import statistics
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM

# Same list as CASES in benches/generate.rs: (batch, prompt length, new tokens).
CASES = [(1, 128, 32), (4, 128, 32)]


def prompt(row: int, length: int, vocab: int) -> list[int]:
    """Same formula as `prompt` in benches/common/mod.rs."""
    return [(i * 7919 + row * 104729) % (vocab - 16) + 8 for i in range(length)]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_generate(model, input_ids, attention_mask, max_new: int) -> tuple[float, torch.Tensor]:
    sync(str(input_ids.device))
    start = time.perf_counter()
    out = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        max_new_tokens=max_new,
        do_sample=False,
        use_cache=True,
    )
    sync(str(input_ids.device))
    return time.perf_counter() - start, out


def bench_model(name: str, path: str, repeats: int, device: str) -> list[dict]:
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device)
    model.eval()
    # Random weights: never stop early, always produce exactly N tokens.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    vocab = model.config.vocab_size
    rows = []
    with torch.inference_mode():
        for batch, length, new in CASES:
            ids = torch.tensor([prompt(r, length, vocab) for r in range(batch)], dtype=torch.long, device=device)
            mask = torch.ones_like(ids)
            times = {}
            for label, max_new in (("prefill", 1), ("generate", new)):
                _, out = timed_generate(model, ids, mask, max_new)  # warm-up
                assert out.shape == (batch, length + max_new), out.shape
                samples = [timed_generate(model, ids, mask, max_new)[0] for _ in range(repeats)]
                times[label] = statistics.median(samples)
            t_pre, t_gen = times["prefill"], times["generate"]
            rows.append(
                {
                    "model": name,
                    "device": device,
                    "batch": batch,
                    "prompt_len": length,
                    "new_tokens": new,
                    "t_prefill_s": t_pre,
                    "t_generate_s": t_gen,
                    "prefill_tok_s": batch * length / t_pre,
                    "decode_tok_s": batch * (new - 1) / (t_gen - t_pre),
                }
            )
            r = rows[-1]
            print(
                f"hf {name} b{batch} p{length} n{new}: prefill {r['prefill_tok_s']:.0f} tok/s "
                f"({t_pre * 1e3:.1f} ms), decode {r['decode_tok_s']:.1f} tok/s "
                f"(generate {t_gen * 1e3:.1f} ms)",
                flush=True,
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="NAME=DIR (repeatable)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--device", default="cpu", help="torch device: cpu (default) or cuda")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    results = []
    for spec in args.model:
        name, _, path = spec.partition("=")
        if not path:
            sys.exit(f"--model expects NAME=DIR, got {spec!r}")
        results.extend(bench_model(name, path, args.repeats, args.device))
    if args.json:
        meta = {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "device": args.device,
            # TF32 off (torch's default for matmul): f32 on both sides.
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        }
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
