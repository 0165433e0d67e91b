"""Decode benchmark: plain eager `generate` against clinicflow's generation path, in one run.

Models: `27b` and `4b` are MedGemma-shaped Gemma 3 text models built from configs in code with random
weights (no download; `--layers N` shrinks the depth, time scales with it); `270m` is the real cached
Gemma 3 270M (the CPU default), loaded by the product's own loader. For each batch size (concurrent
requests) it measures prefill time and decode tokens/s of (a) eager `generate` (dynamic cache, in
`--baseline-dtype`) and (b) our path: the rows sent at once as concurrent requests to the batch
scheduler (as the server and chat model do), which runs them through `generate_batch` in the dtype
the backend picks, with the static-cache / compiled fast path on CUDA (on the CPU: bf16 where the
CPU has it, optionally `--quantization`). The outputs check compares (b) with eager `generate` on
the same weights and dtype, token for token; with another baseline dtype it also reports agreement
with that baseline. It measures the device's copy bandwidth in the same run and the batch-1 bandwidth
floor (weight bytes / bandwidth), prints a ratio table and writes JSON to
bench/results/model_decode_<device>_<model>.json.

    python bench/model_decode.py --model 270m --device cpu --baseline-dtype float32 --batches 1,8
    python bench/model_decode.py --model 27b --layers 4        # a GPU: iterate cheaply
    python bench/model_decode.py --model 27b                   # the full 62 layers, once
    python bench/model_decode.py --model 27b --decode own --cuda-graph   # our own decode loop
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from machine import machine  # bench/machine.py, beside this script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clinicflow.model.batching import BatchScheduler, GenerationRequest  # noqa: E402
from clinicflow.model.engine import (  # noqa: E402
    EngineOptions,
    default_dtype,
    generate_batch,
    quantize_for_cpu,
)

SHAPES: dict[str, dict[str, Any]] = {
    "27b": dict(
        hidden_size=5376,
        num_hidden_layers=62,
        num_attention_heads=32,
        num_key_value_heads=16,
        head_dim=128,
        intermediate_size=21504,
        vocab_size=262144,
        sliding_window=1024,
    ),
    "4b": dict(
        hidden_size=2560,
        num_hidden_layers=34,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=256,
        intermediate_size=10240,
        vocab_size=262208,
        sliding_window=1024,
    ),
}


def copy_bandwidth(device: str) -> float:
    """Bytes/s of a large device-to-device copy (each byte read once and written once)."""
    n = (1 << 30) if device.startswith("cuda") else (1 << 27)
    src = torch.empty(n, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(5):
        sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    del src, dst
    return 2 * n / best


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def build(args: argparse.Namespace) -> tuple[Any, Any, float]:
    """The model (eval mode, on the device), a tokenizer or None, and its load time.

    The 270M loads through `load_model_folder`, the product's own loader, so `load_s` is what a
    workflow waits for (tokenizer and weights, from the converted cache folder).
    """
    t0 = time.perf_counter()
    if args.model == "270m":
        from clinicflow.model.default_model import default_model_dir
        from clinicflow.model.transformers_backend import load_model_folder

        folder = default_model_dir(Path(args.cache_dir))
        loaded = load_model_folder(folder, device=args.device, dtype=args.dtype, shared=False)
        return loaded.model, loaded.tokenizer, time.perf_counter() - t0
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    shape = dict(SHAPES[args.model])
    if args.layers:
        shape["num_hidden_layers"] = args.layers
    config = Gemma3TextConfig(**shape, max_position_embeddings=8192)
    torch.manual_seed(args.seed)
    # Built in its dtype on its device: a float32 27B (108 GB) would not fit beside its bf16 copy.
    default = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, args.dtype))
    try:
        with torch.device(args.device):
            model = Gemma3ForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    for p in model.parameters():
        p.data.normal_(0.0, 0.02)
    return model.eval(), None, time.perf_counter() - t0


def _copy_in(model: Any, dtype: str) -> Any:
    """A copy of the model in another dtype (the eager baseline when it differs from ours)."""
    import copy

    return copy.deepcopy(model).to(getattr(torch, dtype)).eval()


def weight_bytes(model: Any) -> int:
    """Bytes read per decode step: every parameter once (the tied head counted once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


def prompts(args: argparse.Namespace, vocab: int, batch: int, tokenizer: Any) -> list[list[int]]:
    """`batch` prompts of about `--prompt-len` tokens, fixed by the seed."""
    g = torch.Generator().manual_seed(args.seed + batch)
    if tokenizer is not None:
        words = ["fever", "cough", "HbA1c", "anemia", "insulin", "blood", "pressure", "the", "patient", "and"]
        out = []
        for _ in range(batch):
            picks = torch.randint(0, len(words), (args.prompt_len,), generator=g).tolist()
            text = " ".join(words[i] for i in picks)
            ids = tokenizer(f"<bos><start_of_turn>user\n{text}<end_of_turn>\n<start_of_turn>model\n")[
                "input_ids"
            ]
            out.append(ids[: args.prompt_len + 8])
        return out
    return torch.randint(10, vocab - 10, (batch, args.prompt_len), generator=g).tolist()


def eager(
    model: Any, rows: list[list[int]], new: int, device: str, stop: list[int]
) -> tuple[float, list[list[int]]]:
    """Plain `generate` on a left-padded batch, dynamic cache, no compile: seconds and tokens."""
    from clinicflow.model.batching import left_pad

    ids, mask = left_pad(rows, 0)
    sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            input_ids=torch.tensor(ids, device=device),
            attention_mask=torch.tensor(mask, device=device),
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            top_p=None,
            top_k=None,
            eos_token_id=stop,
            pad_token_id=0,
            disable_compile=True,
        )
    sync(device)
    return time.perf_counter() - t0, out[:, len(ids[0]) :].tolist()


def ours(
    scheduler: BatchScheduler, rows: list[list[int]], new: int, device: str
) -> tuple[float, list[list[int]]]:
    """clinicflow's path: the rows submitted at once as concurrent requests to the batch scheduler (which
    the server and chat model use), which runs them through `generate_batch`: seconds and tokens."""
    sync(device)
    t0 = time.perf_counter()
    futures = [scheduler.submit(GenerationRequest(prompt_ids=r, max_new_tokens=new)) for r in rows]
    outputs = [f.result() for f in futures]
    sync(device)
    took = time.perf_counter() - t0
    if max(o.batch_size for o in outputs) != len(rows):
        raise RuntimeError(f"the scheduler split {len(rows)} concurrent requests into several batches")
    return took, [o.tokens for o in outputs]


def measure(run: Any, rows: list[list[int]], new: int, repeats: int, *, warm_decode: bool) -> dict[str, Any]:
    """Prefill seconds (1 new token) and decode tokens/s ((new - 1) further tokens per row).

    `warm_decode` runs one whole generation untimed first, so a compiled decode step is compiled
    (and its CUDA graphs recorded) before the clock starts; its time is reported as `first_call_s`.
    """
    from torch._dynamo.utils import counters

    graphs_before = counters["stats"]["unique_graphs"]
    run(rows, 1)
    first_call_s = run(rows, new)[0] if warm_decode else None
    prefill = min(run(rows, 1)[0] for _ in range(repeats))
    total, tokens = min((run(rows, new) for _ in range(repeats)), key=lambda r: r[0])
    decode_s = max(total - prefill, 1e-9)
    return {
        "prefill_s": round(prefill, 4),
        "total_s": round(total, 4),
        "decode_tokens_per_s": round(len(rows) * (new - 1) / decode_s, 2),
        "first_call_s": None if first_call_s is None else round(first_call_s, 2),
        "graphs_compiled": counters["stats"]["unique_graphs"] - graphs_before,
        "tokens": tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["27b", "4b", "270m"], default="27b")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--layers", type=int, default=0, help="shrink the depth (27b/4b); 0 keeps it")
    parser.add_argument("--batches", default="1,8,32,64")
    parser.add_argument("--prompt-len", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--dtype", default=None, help="ours; default: what the backend picks for the device")
    parser.add_argument(
        "--baseline-dtype", default=None, help="eager baseline's dtype (default: --dtype), e.g. float32"
    )
    parser.add_argument("--quantization", choices=["none", "int8", "int8-head"], default="none")
    parser.add_argument("--fast-path", choices=["auto", "on", "off"], default="auto")
    parser.add_argument(
        "--decode",
        choices=["generate", "own"],
        default="generate",
        help="who runs the decode steps of ours: transformers `generate` or clinicflow's own loop",
    )
    parser.add_argument(
        "--cuda-graph", action="store_true", help="with --decode own on CUDA: one CUDA graph per decode step"
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "clinicflow"))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    args.dtype = args.dtype or default_dtype(args.device)
    args.baseline_dtype = args.baseline_dtype or args.dtype
    batches = [int(b) for b in args.batches.split(",")]

    info = machine(args.device, packages=("torch", "transformers"))
    bandwidth = copy_bandwidth(args.device)
    model, tokenizer, load_s = build(args)
    vocab = model.config.get_text_config().vocab_size
    stop = [1, 106] if tokenizer is not None else [vocab - 1]
    base_bytes = weight_bytes(model)
    baseline = model if args.baseline_dtype == args.dtype else _copy_in(model, args.baseline_dtype)
    fast = model
    quantize_s = 0.0
    if args.quantization != "none":
        import copy

        t0 = time.perf_counter()
        fast = quantize_for_cpu(copy.deepcopy(model), args.quantization)
        quantize_s = time.perf_counter() - t0
    loaded = SimpleNamespace(
        model=fast,
        tokenizer=tokenizer,
        pad_id=0,
        stop_ids=stop,
        options=dataclasses.replace(
            EngineOptions.for_device(args.device, args.fast_path),
            decode=args.decode,
            cuda_graph=args.cuda_graph,
        ),
    )
    scheduler = BatchScheduler(lambda requests: generate_batch(loaded, requests), max_batch=max(batches))
    floor = bandwidth / base_bytes
    print(
        f"{args.model} x{model.config.num_hidden_layers} layers, {base_bytes / 1e9:.2f} GB weights, "
        f"copy bandwidth {bandwidth / 1e9:.1f} GB/s, batch-1 floor {floor:.1f} tok/s, load {load_s:.1f} s",
        flush=True,
    )
    rows_out: list[dict[str, Any]] = []
    result = {
        "benchmark": "model_decode",
        "hardware": info,
        "model": args.model,
        "layers": model.config.num_hidden_layers,
        "dtype": args.dtype,
        "baseline_dtype": args.baseline_dtype,
        "quantization": args.quantization,
        "engine_options": dataclasses.asdict(loaded.options),
        "prompt_tokens": args.prompt_len,
        "new_tokens": args.new_tokens,
        "weight_bytes": base_bytes,
        "copy_bandwidth_bytes_per_s": round(bandwidth),
        "bandwidth_floor_tokens_per_s_batch1": round(floor, 2),
        "load_s": round(load_s, 2),
        "quantize_s": round(quantize_s, 2),
        "results": rows_out,
    }
    device_name = "cpu" if args.device == "cpu" else re.sub(r"[^a-z0-9]+", "", info.get("gpu", "gpu").lower())
    default = ROOT / "bench" / "results" / f"model_decode_{device_name}_{args.model}.json"
    out = Path(args.out) if args.out else default
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"writing {out} after each batch size", flush=True)
    for batch in batches:
        rows = prompts(args, vocab, batch, tokenizer)
        new, repeats = args.new_tokens, args.repeats
        a = measure(
            lambda r, n: eager(baseline, r, n, args.device, stop), rows, new, repeats, warm_decode=False
        )
        b = measure(lambda r, n: ours(scheduler, r, n, args.device), rows, new, repeats, warm_decode=True)
        a_tokens, b_tokens = a.pop("tokens"), b.pop("tokens")
        # The outputs check: ours against eager `generate` on the same weights and dtype.
        same = a_tokens if baseline is model else eager(model, rows, new, args.device, stop)[1]
        equal = sum(x == y for x, y in zip(same, b_tokens, strict=True))
        row = {
            "batch": batch,
            "eager": a,
            "ours": b,
            "speedup": round(b["decode_tokens_per_s"] / a["decode_tokens_per_s"], 2),
            "rows_equal_to_eager": f"{equal}/{batch}",
        }
        if baseline is not model:
            agree = sum(x == y for x, y in zip(a_tokens, b_tokens, strict=True))
            row[f"rows_equal_to_eager_{args.baseline_dtype}"] = f"{agree}/{batch}"
        if batch == 1:
            row["ours_fraction_of_floor"] = round(b["decode_tokens_per_s"] / floor, 3)
            row["eager_fraction_of_floor"] = round(a["decode_tokens_per_s"] / floor, 3)
        rows_out.append(row)
        out.write_text(json.dumps(result, indent=2) + "\n")  # a run cut short keeps what it measured
        print(
            f"batch {batch:3d}  prefill eager {a['prefill_s']:.3f} s ours {b['prefill_s']:.3f} s  "
            f"decode eager {a['decode_tokens_per_s']:8.1f} tok/s ours {b['decode_tokens_per_s']:8.1f} tok/s  "
            f"x{row['speedup']:.2f}  equal {row['rows_equal_to_eager']}  "
            f"(ours: first call {b['first_call_s']} s, {b['graphs_compiled']} graphs compiled)",
            flush=True,
        )


if __name__ == "__main__":
    main()
