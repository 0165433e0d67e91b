"""Why compiled Gemma 3 decode recompiles or compiles slowly, and what transformers' continuous batching costs

Random tiny Gemma 3 text models built from `Gemma3TextConfig` in code (no download). Four parts:

1. audit: guards and recompiles of `generate` with a static cache, traced by dynamo only (a backend that runs
   each graph as captured, so it is quick): the engine's compile flags on transformers' hybrid `StaticCache`,
   the `generate` defaults, a static cache made of full-attention layers only, shape buckets, and
   `compile()` on each decoder layer.
2. scaling: inductor compile time of one decode step against depth, compiling the whole model (what
   `generate` does), the whole model with the decoder layer marked as a nested compile region, or only the
   decoder layer (one compiled function that every layer calls with its own slice of the cache). Each
   (variant, depth) runs in a fresh process with the inductor caches off.
3. dispatch: eager decode step time against depth at sizes where the arithmetic is negligible, i.e. the
   host-side (Python and dispatch) cost per layer that eager decoding pays on any device.
4. cb: `generate_batch` (continuous batching) against batched eager `generate` on the same requests: setup,
   host-side scheduling per step, forward time per step and, on the CPU, the share of attention and of the
   KV-cache update in it; tokens/s.

    python bench/compile_scaling.py                                  # all four, CPU defaults
    python bench/compile_scaling.py --parts scaling --layers 4,16,62 --device cuda
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TORCHINDUCTOR_FORCE_DISABLE_CACHES", "1")  # compile times from scratch, every run

import torch
import transformers
from model_decode import hardware, sync
from transformers import (
    CompileConfig,
    ContinuousBatchingConfig,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GenerationConfig,
    StaticCache,
)
from transformers.cache_utils import Cache, StaticLayer

ROOT = Path(__file__).resolve().parents[1]

# Small enough for 2 CPU cores; the sliding window is shorter than the decoded length, so sliding and full
# layers see different masks. Every sixth layer is a full-attention layer (the Gemma 3 pattern).
SCALING_SHAPE: dict[str, Any] = dict(
    hidden_size=256,
    intermediate_size=1024,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
    vocab_size=4096,
    sliding_window=16,
    max_position_embeddings=1024,
)
# The audit keeps prompt + new tokens inside the window, like MedGemma (window 1024) on 256 + 64 tokens.
AUDIT_SHAPE: dict[str, Any] = dict(SCALING_SHAPE, intermediate_size=512, vocab_size=1024, sliding_window=64)
DISPATCH_SHAPE: dict[str, Any] = dict(
    SCALING_SHAPE,
    hidden_size=64,
    intermediate_size=128,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=32,
    vocab_size=512,
)
CB_SHAPE: dict[str, Any] = dict(
    SCALING_SHAPE, intermediate_size=512, sliding_window=1024, max_position_embeddings=2048
)


def build(shape: dict[str, Any], layers: int, device: str, seed: int) -> Any:
    """A random Gemma 3 text model in eval mode, float32."""
    config = Gemma3TextConfig(**shape, num_hidden_layers=layers)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Gemma3ForCausalLM(config)
    return model.eval()


def full_layer_cache(layers: int, length: int) -> Cache:
    """A static cache of full-attention `StaticLayer`s only; the masks still apply the sliding window."""
    return Cache(layers=[StaticLayer(max_cache_len=length) for _ in range(layers)])


class GraphRecorder:
    """A dynamo backend that runs each captured graph unchanged and records its symbolic-int inputs."""

    def __init__(self) -> None:
        self.symint_inputs: list[int] = []

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        self.symint_inputs.append(sum(isinstance(x, torch.SymInt) for x in example_inputs))
        return gm.forward

    def __deepcopy__(self, memo: dict[int, Any]) -> GraphRecorder:
        return self  # `CompileConfig.to_dict` deep-copies its fields; the records must land here


class RecompileReasons(logging.Handler):
    """Collects the first guard failure of each recompile dynamo logs."""

    def __init__(self) -> None:
        super().__init__()
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        lines = record.getMessage().splitlines()
        failures = [line.strip() for line in lines if line.strip().startswith("- ") and "/" in line[:20]]
        if failures:
            self.reasons.append(failures[0].split("#")[0].strip())


def watch_recompiles() -> RecompileReasons:
    torch._logging.set_logs(recompiles=True)
    handler = RecompileReasons()
    logging.getLogger("torch._dynamo.guards.__recompiles").addHandler(handler)
    return handler


def dynamo_config(fullgraph: bool, dynamic: bool | None, backend: Any) -> CompileConfig:
    config = CompileConfig(fullgraph=fullgraph, dynamic=dynamic, backend=backend, mode=None)
    config._compile_all_devices = True  # `generate` compiles on CUDA only unless told
    return config


def greedy(model: Any, ids: torch.Tensor, new: int, **kwargs: Any) -> torch.Tensor:
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            top_p=None,
            top_k=None,
            pad_token_id=0,
            **kwargs,
        )
    return out[:, ids.shape[1] :]


def audit_case(name: str, run: Any) -> dict[str, Any]:
    """Run one audit case on a clean dynamo state: graphs compiled, recompile reasons, outcome."""
    torch._dynamo.reset()
    reasons = watch_recompiles()
    recorder = GraphRecorder()
    row: dict[str, Any] = {"case": name}
    try:
        run(recorder, row)
        row["outcome"] = "ok"
    except Exception as error:  # the failure is the finding
        row["outcome"] = f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"
    row["graphs_compiled"] = len(recorder.symint_inputs)
    row["symint_inputs_per_graph"] = recorder.symint_inputs
    row["recompiles"] = len(reasons.reasons)
    row["first_recompile_reason"] = reasons.reasons[0] if reasons.reasons else None
    return row


def audit(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Dynamo guards of the static-cache decode: which flags and caches recompile, and why."""
    layers, prompt, new, length = 12, 16, 16, 64
    model = build(AUDIT_SHAPE, layers, args.device, args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(10, 1000, (2, prompt), generator=gen).to(args.device)
    reference = greedy(model, ids, new, disable_compile=True)

    def compiled(cache: Cache, fullgraph: bool, dynamic: bool | None) -> Any:
        def run(recorder: GraphRecorder, row: dict[str, Any]) -> None:
            config = dynamo_config(fullgraph, dynamic, recorder)
            out = greedy(model, ids, new, cache=cache, compile_config=config)
            row["tokens_equal_eager"] = bool(torch.equal(out, reference))

        return run

    def buckets(recorder: GraphRecorder, row: dict[str, Any]) -> None:
        shapes = list(itertools.product((1, 2, 4, 8), (64, 128, 192)))
        row["shapes_tried"], row["shapes_completed"] = len(shapes), 0
        config = dynamo_config(True, False, recorder)
        for batch, cache_len in shapes:
            cache = full_layer_cache(layers, cache_len)
            greedy(model, ids[:1].repeat(batch, 1), 2, cache=cache, compile_config=config)
            row["shapes_completed"] += 1

    def per_layer_compile(recorder: GraphRecorder, row: dict[str, Any]) -> None:
        for layer in model.model.layers:
            layer.compile(backend=recorder, fullgraph=True, dynamic=False)
        out = greedy(model, ids, new, cache=full_layer_cache(layers, length), disable_compile=True)
        row["tokens_equal_eager"] = bool(torch.equal(out, reference))

    hybrid = "transformers StaticCache (sliding layers are StaticSlidingWindowLayer)"
    cases = [
        (
            f"engine flags (fullgraph, dynamic=False), {hybrid}",
            compiled(StaticCache(model.config, length), True, False),
        ),
        (
            f"generate defaults (dynamic=None), {hybrid}",
            compiled(StaticCache(model.config, length), False, None),
        ),
        (
            "engine flags, full-attention StaticLayer cache",
            compiled(full_layer_cache(layers, length), True, False),
        ),
        ("engine flags, full-attention cache, 12 (batch, cache length) shapes", buckets),
        ("compile() on each HF decoder layer (fullgraph, dynamic=False)", per_layer_compile),
    ]
    rows = [audit_case(name, run) for name, run in cases]

    # Past the window: a full-attention cache must still give the sliding layers their window (via the mask).
    narrow = build(dict(AUDIT_SHAPE, sliding_window=8), 6, args.device, args.seed)
    expected = greedy(narrow, ids, 24, disable_compile=True)
    got = greedy(narrow, ids, 24, cache=full_layer_cache(6, 64), disable_compile=True)
    rows.append(
        {
            "case": "full-attention cache, 40 tokens through an 8-token window, eager",
            "tokens_equal_eager": bool(torch.equal(expected, got)),
        }
    )
    return rows


class LayerCacheView(Cache):
    """One layer of a static cache, updated whatever layer index the attention passes, so every layer
    calls the compiled decoder layer with inputs of the same kind."""

    def __init__(self, layer: StaticLayer) -> None:
        super().__init__(layers=[layer])

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> Any:
        return self.layers[0].update(key_states, value_states)


def run_layer(
    layer: Any, hidden: torch.Tensor, mask: Any, embeddings: Any, positions: Any, cache: Cache
) -> Any:
    return layer(
        hidden, attention_mask=mask, position_embeddings=embeddings, position_ids=positions, cache=cache
    )


def regional_step(model: Any, compiled_layer: Any) -> Any:
    """The decode forward of `Gemma3ForCausalLM` with the layer loop in Python and each layer compiled."""
    inner, kinds = model.model, model.config.layer_types
    softcap = model.config.final_logit_softcapping

    def step(inputs: dict[str, Any]) -> torch.Tensor:
        positions, masks = inputs["position_ids"], inputs["attention_mask"]
        hidden = inner.embed_tokens(inputs["input_ids"])
        embeddings = {kind: inner.rotary_emb(hidden, positions, kind) for kind in set(kinds)}
        for layer, kind, cache_layer in zip(inner.layers, kinds, inputs["cache"].layers, strict=True):
            view = LayerCacheView(cache_layer)
            hidden = compiled_layer(layer, hidden, masks[kind], embeddings[kind], positions, view)
        logits = model.lm_head(inner.norm(hidden))
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        return logits

    return step


def decode(
    model: Any, step: Any, prompt: torch.Tensor, steps: int, length: int
) -> tuple[list[float], torch.Tensor]:
    """Eager prefill, then `steps` greedy decode steps through `step`: seconds per step and the tokens."""
    cache = full_layer_cache(model.config.num_hidden_layers, length)
    device = str(prompt.device)
    times, tokens = [], []
    with torch.inference_mode():
        out = model(input_ids=prompt, attention_mask=torch.ones_like(prompt), cache=cache, use_cache=True)
        ids = torch.cat([prompt, out.logits[:, -1:].argmax(-1)], dim=1)
        for _ in range(steps):
            inputs = model.prepare_inputs_for_generation(
                ids,
                next_sequence_length=1,
                cache=cache,
                attention_mask=torch.ones_like(ids),
                position_ids=torch.full((ids.shape[0], 1), ids.shape[1] - 1, device=ids.device),
                use_cache=True,
            )
            sync(device)
            t0 = time.perf_counter()
            logits = step(inputs)
            sync(device)
            times.append(time.perf_counter() - t0)
            token = logits[:, -1:].argmax(-1)
            tokens.append(token)
            ids = torch.cat([ids, token], dim=1)
    return times, torch.cat(tokens, dim=1)


def scaling_one(variant: str, layers: int, args: argparse.Namespace) -> dict[str, Any]:
    """Compile time and step time of one (variant, depth), in this (fresh) process."""
    if variant == "nested":
        from transformers.models.gemma3 import modeling_gemma3

        layer_cls = modeling_gemma3.Gemma3DecoderLayer
        layer_cls.forward = torch.compiler.nested_compile_region(layer_cls.forward)
    model = build(SCALING_SHAPE, layers, args.device, args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    prompt = torch.randint(10, 4000, (args.batch, args.prompt_len), generator=gen).to(args.device)
    length = args.prompt_len + args.steps + 8
    eager_times, eager_tokens = decode(
        model, lambda inputs: model(**inputs).logits, prompt, args.steps, length
    )

    options: dict[str, Any] = dict(fullgraph=True, dynamic=False, mode=args.mode)
    if variant == "regional":
        step = regional_step(model, torch.compile(run_layer, **options))
    else:
        whole = torch.compile(model, **options)

        def step(inputs: dict[str, Any]) -> torch.Tensor:
            return whole(**inputs).logits

    torch._dynamo.utils.counters.clear()
    reasons = watch_recompiles()
    row: dict[str, Any] = {"variant": variant, "layers": layers}
    try:
        times, tokens = decode(model, step, prompt, args.steps, length)
    except Exception as error:
        row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        return row
    steady = statistics.median(times[1:])
    counters = torch._dynamo.utils.counters
    row.update(
        compile_s=round(times[0] - steady, 2),
        first_step_s=round(times[0], 2),
        step_ms=round(steady * 1e3, 2),
        eager_step_ms=round(statistics.median(eager_times[1:]) * 1e3, 2),
        graphs=counters["stats"]["unique_graphs"],
        recompiles=len(reasons.reasons),
        graph_breaks=sum(counters["graph_break"].values()),
        rows_equal_to_eager=f"{sum(torch.equal(a, b) for a, b in zip(tokens, eager_tokens, strict=True))}"
        f"/{args.batch}",
    )
    return row


def dispatch(args: argparse.Namespace) -> dict[str, Any]:
    """Eager decode step time of a model too small for its arithmetic to matter, at two depths."""
    rows = []
    for layers in (8, 32):
        model = build(DISPATCH_SHAPE, layers, args.device, args.seed)
        gen = torch.Generator().manual_seed(args.seed)
        prompt = torch.randint(10, 500, (args.batch, args.prompt_len), generator=gen).to(args.device)
        times, _ = decode(model, lambda inputs, m=model: m(**inputs).logits, prompt, 16, args.prompt_len + 24)
        rows.append({"layers": layers, "step_ms": round(statistics.median(times[1:]) * 1e3, 2)})
    per_layer = (rows[1]["step_ms"] - rows[0]["step_ms"]) / (rows[1]["layers"] - rows[0]["layers"])
    return {"shape": DISPATCH_SHAPE, "batch": args.batch, "rows": rows, "ms_per_layer": round(per_layer, 3)}


def in_fresh_process(part: str, spec: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Run one measurement in a new interpreter (clean dynamo and inductor state) and return its row."""
    # The child gets this run's own arguments, so both measure the same thing.
    command = [sys.executable, __file__, *sys.argv[1:], "--one", json.dumps({"part": part, **spec})]
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {**spec, "error": f"exit {done.returncode}: {tail[0][:200]}"}
    return json.loads(lines[-1])


class Timers:
    """Seconds spent in named regions, as running totals (the CPU runs each op before returning)."""

    def __init__(self) -> None:
        self.total: collections.Counter[str] = collections.Counter()

    def wrap(self, owner: Any, name: str, key: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.total[key] += time.perf_counter() - t0

        setattr(owner, name, timed)


def cb_one(args: argparse.Namespace) -> dict[str, Any]:
    """`generate_batch` and batched eager `generate` on the same requests, with per-step timings."""
    from transformers.generation.continuous_batching import cache as cb_cache
    from transformers.generation.continuous_batching import continuous_api
    from transformers.modeling_utils import AttentionInterface

    model = build(CB_SHAPE, args.cb_layers, args.device, args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    prompts = torch.randint(10, 4000, (args.cb_requests, args.cb_prompt_len), generator=gen)
    new = args.cb_new_tokens

    timers = Timers()
    processor = continuous_api.ContinuousBatchProcessor
    timers.wrap(continuous_api.ContinuousBatchingManager, "_create_batch_processor", "setup")
    timers.wrap(processor, "prepare_next_batch", "schedule")
    timers.wrap(processor, "update_batch", "schedule")
    timers.wrap(cb_cache.PagedAttentionCache, "update", "cache_update")
    timers.wrap(Cache, "update", "cache_update")
    sdpa = AttentionInterface._global_mapping["sdpa"]  # the registered function, to time it in place

    def timed_sdpa(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return sdpa(*a, **k)
        finally:
            timers.total["attention"] += time.perf_counter() - t0

    AttentionInterface.register("sdpa", timed_sdpa)

    steps: list[dict[str, Any]] = []
    step_state: dict[str, Any] = {}

    def before(module: Any, args_: Any, kwargs: Any) -> None:
        step_state.update(
            t0=time.perf_counter(), snapshot=dict(timers.total), shape=tuple(kwargs["input_ids"].shape)
        )

    def after(module: Any, args_: Any, kwargs: Any, output: Any) -> None:
        sync(args.device)
        took = time.perf_counter() - step_state["t0"]
        snap = step_state["snapshot"]
        width = step_state["shape"][1]
        decode = width == 1 if step_state["path"] == "generate" else not step_state["prefill"]
        steps.append(
            {
                "path": step_state["path"],
                "decode": decode,
                "s": took,
                **{k: timers.total[k] - snap.get(k, 0.0) for k in ("attention", "cache_update")},
            }
        )

    model.register_forward_pre_hook(before, with_kwargs=True)
    model.register_forward_hook(after, with_kwargs=True)

    original_step = processor._generation_step

    def cb_step(self: Any, model_: Any) -> None:
        io = self.inputs_and_outputs
        step_state["prefill"] = io.total_seqlen_q != io.num_request_in_batch  # some request still prefilling
        original_step(self, model_)

    processor._generation_step = cb_step

    result: dict[str, Any] = {
        "requests": args.cb_requests,
        "prompt_tokens": args.cb_prompt_len,
        "new_tokens": new,
    }
    page = 256
    blocks = math.ceil(args.cb_requests * math.ceil((args.cb_prompt_len + new) / page) * 1.5)
    cb_config = (
        None
        if args.cb_default_memory
        else ContinuousBatchingConfig(
            num_blocks=blocks, max_batch_tokens=args.cb_batch_tokens, page_size=page
        )
    )
    result["cb_config"] = (
        "transformers defaults (cache sized from free memory)"
        if cb_config is None
        else {"num_blocks": blocks, "max_batch_tokens": args.cb_batch_tokens, "page_size": page}
    )
    generation = GenerationConfig(max_new_tokens=new, do_sample=False, eos_token_id=-1, pad_token_id=0)
    step_state["path"] = "generate_batch"
    t0 = time.perf_counter()
    with torch.inference_mode():
        outputs = model.generate_batch(
            prompts.tolist(), generation_config=generation, continuous_batching_config=cb_config
        )
    cb_wall = time.perf_counter() - t0
    cb_schedule, cb_setup = timers.total["schedule"], timers.total["setup"]
    cb_tokens = [outputs[k].generated_tokens for k in sorted(outputs, key=lambda k: int(k.split("_")[1]))]

    step_state["path"] = "generate"
    t0 = time.perf_counter()
    eager_tokens = greedy(model, prompts.to(args.device), new, disable_compile=True).tolist()
    eager_wall = time.perf_counter() - t0

    def summary(path: str, wall: float) -> dict[str, Any]:
        mine = [s for s in steps if s["path"] == path]
        dec = [s for s in mine if s["decode"]]
        out: dict[str, Any] = {
            "wall_s": round(wall, 2),
            "tokens_per_s": round(args.cb_requests * new / wall, 1),
            "forwards": len(mine),
            "prefill_forwards": len(mine) - len(dec),
            "prefill_forward_s": round(sum(s["s"] for s in mine if not s["decode"]), 3),
            "decode_forwards": len(dec),
            "decode_forward_ms_median": round(statistics.median(s["s"] for s in dec) * 1e3, 2)
            if dec
            else None,
            "forward_s_total": round(sum(s["s"] for s in mine), 2),
        }
        if dec and args.device == "cpu":
            for key in ("attention", "cache_update"):
                out[f"decode_{key}_ms_median"] = round(statistics.median(s[key] for s in dec) * 1e3, 2)
        return out

    result["generate_batch"] = summary("generate_batch", cb_wall)
    forwards = [s for s in steps if s["path"] == "generate_batch"]
    result["generate_batch"].update(
        setup_s=round(cb_setup, 2),
        schedule_s_total=round(cb_schedule, 2),
        schedule_ms_per_forward=round(cb_schedule / max(len(forwards), 1) * 1e3, 2),
        # the rest of the wall time: the generation thread's start and stop, the result queue, cleanup
        other_s=round(cb_wall - cb_setup - cb_schedule - sum(s["s"] for s in forwards), 2),
        attn_implementation=model.config._attn_implementation,
    )
    result["generate"] = summary("generate", eager_wall)
    equal = sum(a == b for a, b in zip(cb_tokens, eager_tokens, strict=True))
    result["rows_equal"] = f"{equal}/{args.cb_requests}"
    result["speed_ratio_generate_batch_over_generate"] = round(eager_wall / cb_wall, 3)
    return result


def print_audit(rows: list[dict[str, Any]]) -> None:
    print("\naudit (dynamo only)")
    for row in rows:
        extra = {k: row[k] for k in ("graphs_compiled", "recompiles", "symint_inputs_per_graph") if k in row}
        print(f"  {row['case']}\n    {row.get('outcome', '')} {extra} equal={row.get('tokens_equal_eager')}")
        if row.get("first_recompile_reason"):
            print(f"    first recompile: {row['first_recompile_reason']}")


def print_scaling_header() -> None:
    print("\nscaling (inductor, one decode step)")
    print(
        f"  {'variant':9s} {'layers':>6s} {'compile s':>9s} {'step ms':>8s} {'eager ms':>8s} {'graphs':>6s} "
        f"{'recomp':>6s} {'breaks':>6s}  equal"
    )


def print_scaling_row(r: dict[str, Any]) -> None:
    if "error" in r:
        print(f"  {r['variant']:9s} {r['layers']:6d}  {r['error']}")
        return
    print(
        f"  {r['variant']:9s} {r['layers']:6d} {r['compile_s']:9.2f} {r['step_ms']:8.2f} "
        f"{r['eager_step_ms']:8.2f} {r['graphs']:6d} {r['recompiles']:6d} {r['graph_breaks']:6d}  "
        f"{r['rows_equal_to_eager']}",
        flush=True,
    )


def print_cb(result: dict[str, Any]) -> None:
    if "error" in result:
        print(f"\ncontinuous batching: {result['error']}")
        return
    print(
        f"\ncontinuous batching: {result['requests']} requests x {result['prompt_tokens']} prompt tokens, "
        f"{result['new_tokens']} new; rows equal {result['rows_equal']}"
    )
    for path in ("generate_batch", "generate"):
        print(f"  {path:15s} {json.dumps(result[path])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--parts", default="audit,dispatch,scaling,cb")
    parser.add_argument("--layers", default="2,4,8,16,32")
    parser.add_argument("--variants", default="whole,nested,regional")
    parser.add_argument("--mode", default="default", help="torch.compile mode for the scaling part")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt-len", type=int, default=24)
    parser.add_argument(
        "--steps", type=int, default=8, help="decode steps per scaling run (first one compiles)"
    )
    parser.add_argument("--cb-requests", type=int, default=64)
    parser.add_argument("--cb-prompt-len", type=int, default=256)
    parser.add_argument("--cb-new-tokens", type=int, default=64)
    parser.add_argument("--cb-layers", type=int, default=6)
    parser.add_argument("--cb-batch-tokens", type=int, default=2048)
    parser.add_argument(
        "--cb-default-memory",
        action="store_true",
        help="let generate_batch size its cache from free memory (on the CPU: 60%% of RAM)",
    )
    parser.add_argument("--timeout", type=int, default=900, help="seconds per fresh-process measurement")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra-op threads (two threads on a loaded 2-core machine stall)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.one:
        spec = json.loads(args.one)
        if spec["part"] == "audit":
            print(json.dumps({"rows": audit(args)}))
        elif spec["part"] == "dispatch":
            print(json.dumps(dispatch(args)))
        elif spec["part"] == "scaling":
            print(json.dumps(scaling_one(spec["variant"], spec["layers"], args)))
        else:
            print(json.dumps(cb_one(args)))
        return

    parts = args.parts.split(",")
    result: dict[str, Any] = {
        "benchmark": "compile_scaling",
        "hardware": hardware(args.device),
        "transformers": transformers.__version__,
        "inductor_compile_threads": torch._inductor.config.compile_threads,
        "dtype": "float32",
    }
    if "audit" in parts:
        result["audit"] = {"shape": AUDIT_SHAPE, "layers": 12, **in_fresh_process("audit", {}, args)}
        print_audit(result["audit"].get("rows", []))
    if "dispatch" in parts:
        result["dispatch"] = in_fresh_process("dispatch", {}, args)
        print(f"\ndispatch (eager decode, tiny sizes): {result['dispatch']}")
    if "scaling" in parts:
        rows = []
        depths = [int(n) for n in args.layers.split(",")]
        print_scaling_header()
        for layers, variant in itertools.product(depths, args.variants.split(",")):
            rows.append(in_fresh_process("scaling", {"variant": variant, "layers": layers}, args))
            print_scaling_row(rows[-1])
        result["scaling"] = {
            "shape": SCALING_SHAPE,
            "batch": args.batch,
            "prompt_tokens": args.prompt_len,
            "decode_steps": args.steps,
            "mode": args.mode,
            "options": {"fullgraph": True, "dynamic": False},
            "rows": rows,
        }
    if "cb" in parts:
        result["continuous_batching"] = {
            "shape": CB_SHAPE,
            "layers": args.cb_layers,
            **in_fresh_process("cb", {}, args),
        }
        print_cb(result["continuous_batching"])
    result["hardware"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]

    device_name = (
        "cpu"
        if args.device == "cpu"
        else "".join(c for c in hardware(args.device).get("gpu", "gpu").lower() if c.isalnum())
    )
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"compile_scaling_{device_name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
