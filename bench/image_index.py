"""Image index throughput (images/s) of a MedSigLIP-448-shaped encoder with random weights.

The vision tower has google/medsiglip-448's shape (SigLIP so400m: hidden 1152, 27 layers, 16 heads,
MLP 4304, patch 14, 448 px; ~429M parameters); the text tower is not built (indexing never runs it).
Each run times, on one device, against the same synthetic images (PIL, 512x512 RGB):

- baseline: plain eager one-by-one encoding, float32: transformers' SigLIP image processor on one
  image, then the model's pooled output (what `get_image_features` returns) under `no_grad`;
- eager-batched (GPU only): the same processor and model call on batches of 64 in bfloat16, the
  configuration behind the 330 images/s H100 figure;
- ours: `ImageEncoder.encode_images` (batches of 64 in bfloat16 on GPU, float32 batches on CPU,
  inference_mode, threaded PIL resize overlapping the previous batch, normalisation on the device);
  on a CPU with bfloat16 instructions (AVX512-BF16, AMX) also ours in bfloat16.

It checks that ours and the baseline agree (cosine of embeddings), prints images/s and ratios, and
writes bench/results/image_index_<device>.json naming the hardware.

    python bench/image_index.py [--device cpu|cuda] [--images N] [--baseline-images N] [--batch N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from machine import machine  # bench/machine.py, beside this script
from PIL import Image

from clinicflow.tools.images import ImageEncoder, Preprocess

ROOT = Path(__file__).resolve().parent
MEDSIGLIP_448_VISION = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "image_size": 448,
    "patch_size": 14,
}


def build_vision_model(device: str) -> Any:
    """A random-weight SigLIP vision tower in the MedSigLIP-448 shape, float32, on `device`."""
    from transformers import SiglipVisionConfig, SiglipVisionModel

    v = MEDSIGLIP_448_VISION
    config = SiglipVisionConfig(
        hidden_size=v["hidden_size"],
        intermediate_size=v["intermediate_size"],
        num_hidden_layers=v["num_hidden_layers"],
        num_attention_heads=v["num_attention_heads"],
        image_size=v["image_size"],
        patch_size=v["patch_size"],
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = SiglipVisionModel(config)
    return model.eval()


def synthetic_images(n: int, size: int = 512) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return [Image.fromarray(np.roll(base, 7 * i, axis=1)) for i in range(n)]


def cpu_has_bf16() -> bool:
    """Whether the CPU has native bfloat16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    m = min(len(a), len(b))
    return round(float(np.sum(a[:m] * b[:m], axis=1).min()), 5)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def image_processor(pre: Preprocess) -> Any:
    try:
        from transformers import SiglipImageProcessorPil as Processor
    except ImportError:
        from transformers import SiglipImageProcessor as Processor  # type: ignore[assignment]
    return Processor(
        size={"height": pre.height, "width": pre.width},
        resample=pre.resample,
        image_mean=list(pre.mean),
        image_std=list(pre.std),
    )


def eager(
    model: Any, processor: Any, images: list[Image.Image], batch: int, dtype: torch.dtype, device: str
) -> tuple[float, np.ndarray]:
    """transformers' image processor + the model's pooled output under no_grad; (seconds, embeddings)."""
    out = []
    sync(device)
    started = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(images), batch):
            pixels = processor(images=images[i : i + batch], return_tensors="pt")["pixel_values"]
            feats = model(pixel_values=pixels.to(device, dtype)).pooler_output
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy())
    sync(device)
    return time.perf_counter() - started, np.concatenate(out)


def ours(encoder: ImageEncoder, images: list[Image.Image], device: str) -> tuple[float, np.ndarray]:
    sync(device)
    started = time.perf_counter()
    vectors = encoder.encode_images(images)
    sync(device)
    return time.perf_counter() - started, vectors


def rate(n: int, seconds: float) -> str:
    per_s = n / seconds
    return f"{per_s:8.2f} images/s" if per_s >= 1 else f"{seconds / n:8.1f} s/image"


def row(name: str, batch: int, dtype: torch.dtype, n: int, seconds: float) -> dict[str, Any]:
    return {
        "name": name,
        "batch": batch,
        "dtype": str(dtype).removeprefix("torch."),
        "images": n,
        "seconds": round(seconds, 3),
        "images_per_s": round(n / seconds, 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--images", type=int, help="images for ours (default: 512 on GPU, 4 on CPU)")
    parser.add_argument("--baseline-images", type=int, help="images for the one-by-one baseline")
    parser.add_argument("--batch", type=int, help="batch size for ours and eager-batched (64 GPU, 4 CPU)")
    parser.add_argument(
        "--out", type=Path, help="result JSON (default bench/results/image_index_<device>.json)"
    )
    args = parser.parse_args(argv)
    device: str = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device visible", file=sys.stderr)
        return 2
    gpu = device == "cuda"
    load_at_start = round(os.getloadavg()[0], 2)
    n = args.images or (512 if gpu else 4)
    n_base = args.baseline_images or (64 if gpu else min(n, 4))
    batch = args.batch or (64 if gpu else n)
    fast_dtype = torch.bfloat16 if gpu else torch.float32
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    t0 = time.perf_counter()
    model = build_vision_model(device)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"{device}: MedSigLIP-448-shaped vision tower, {params / 1e6:.0f}M params, built in "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    pre = Preprocess(height=448, width=448, resample=2)
    processor = image_processor(pre)
    images = synthetic_images(max(n, n_base))
    rows: list[dict[str, Any]] = []

    warm = images[: min(2, n_base)]
    if gpu:
        eager(model, processor, warm, 1, torch.float32, device)
    base_s, base_vecs = eager(model, processor, images[:n_base], 1, torch.float32, device)
    rows.append(row("baseline: eager one-by-one", 1, torch.float32, n_base, base_s))
    print(f"  baseline eager one-by-one fp32: {rate(n_base, base_s)}", flush=True)

    if gpu:
        model = model.to(fast_dtype)
        eager(model, processor, images[:batch], batch, fast_dtype, device)
        eb_s, _ = eager(model, processor, images[:n], batch, fast_dtype, device)
        rows.append(row("eager batched (HF processor)", batch, fast_dtype, n, eb_s))
        print(f"  eager batched {batch} bf16:          {rate(n, eb_s)}", flush=True)

    encoder = ImageEncoder.from_model(model, pre, name="medsiglip-448-shaped (random)", batch_size=batch)
    if gpu:
        ours(encoder, images[:batch], device)
    ours_s, ours_vecs = ours(encoder, images[:n], device)
    rows.append(row("ours: ImageEncoder.encode_images", batch, fast_dtype, n, ours_s))
    print(f"  ours batched {batch} {str(fast_dtype)[6:]}:         {rate(n, ours_s)}", flush=True)
    encoder.close()
    agreement = {"ours": cosine_min(ours_vecs, base_vecs)}

    if not gpu and cpu_has_bf16():
        encoder = ImageEncoder.from_model(model.to(torch.bfloat16), pre, name="bf16", batch_size=batch)
        bf_s, bf_vecs = ours(encoder, images[:n], device)
        encoder.close()
        rows.append(row("ours: ImageEncoder.encode_images, CPU bf16", batch, torch.bfloat16, n, bf_s))
        print(f"  ours batched {batch} bfloat16 (CPU has bf16): {rate(n, bf_s)}", flush=True)
        agreement["ours_cpu_bf16"] = cosine_min(bf_vecs, base_vecs)

    base_rate = n_base / base_s
    ratios = {r["name"]: round(r["images"] / r["seconds"] / base_rate, 2) for r in rows[1:]}
    for name, ratio in ratios.items():
        print(f"  {name}: {ratio:.2f}x baseline")
    if gpu:
        print(f"  ours vs eager batched: {rows[-1]['images_per_s'] / rows[1]['images_per_s']:.2f}x")
    for name, cos in agreement.items():
        print(f"  cosine({name}, baseline) min {cos:.4f} over {min(n, n_base)} images")

    result = {
        "benchmark": "image_index",
        "device": device,
        "hardware": {
            **machine(device, packages=("torch", "transformers")),
            "load_avg_1m_at_start": load_at_start,
        },
        "encoder": {"vision_config": MEDSIGLIP_448_VISION, "params": params, "weights": "random"},
        "input": "synthetic 512x512 RGB PIL images (decoding not timed)",
        "rows": rows,
        "ratio_vs_baseline": ratios,
        "cosine_vs_baseline_min": agreement,
        "reference": "330 images/s eager bf16 batch 64 on an H100 (architecture notes)",
    }
    out = args.out or ROOT / "results" / f"image_index_{device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
