"""Images through the in-process backend, on a tiny random Gemma 3 image-text model built here.

The model is a `Gemma3ForConditionalGeneration` from a `Gemma3Config` (a 32x32 SigLIP with 8x8
patches, 4 soft tokens per image, 2 text layers) with the Gemma 3 tokenizer of the converted 270M
(plus the `<image_soft_token>` it lacks) and a `Gemma3Processor` sized to match. Its weights are
random, so its replies are noise; what the tests check is that the image reaches the model.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from langchain_core.messages import HumanMessage, SystemMessage
from PIL import Image

from clinicflow.model import ModelInputError, TransformersChatModel
from clinicflow.model.server import create_app

MM_TOKENS_PER_IMAGE = 4
QUESTION = "What does this image show?"


@pytest.fixture(scope="module")
def tiny_gemma3_dir(tmp_path_factory: pytest.TempPathFactory, gemma_dir: Path) -> Path:
    from transformers import (
        AutoTokenizer,
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
    )

    image_tokens = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"}
    tokenizer = AutoTokenizer.from_pretrained(
        gemma_dir, extra_special_tokens={**image_tokens, "image_token": "<image_soft_token>"}
    )
    assert tokenizer.image_token_id == len(tokenizer) - 1, "the 270M lacks the soft token; it is added last"
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
        image_seq_length=MM_TOKENS_PER_IMAGE,
    )
    config = Gemma3Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "layer_types": ["sliding_attention", "full_attention"],
            "sliding_window": 64,
            "max_position_embeddings": 1024,
        },
        vision_config={
            "model_type": "siglip_vision_model",
            "image_size": 32,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
        },
        mm_tokens_per_image=MM_TOKENS_PER_IMAGE,
        image_token_index=tokenizer.image_token_id,
        boi_token_index=tokenizer.boi_token_id,
        eoi_token_index=tokenizer.eoi_token_id,
    )
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(config)
    # Gemma 3 initializes the vision-to-text projection to zeros, which would hide every image.
    torch.nn.init.normal_(model.model.multi_modal_projector.mm_input_projection_weight, std=0.5)
    folder = tmp_path_factory.mktemp("tiny-gemma3")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def chat(tiny_gemma3_dir: Path) -> TransformersChatModel:
    model = TransformersChatModel(
        model_path=str(tiny_gemma3_dir), device="cpu", dtype="float32", max_new_tokens=8
    )
    model.load()
    return model


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two different noise images, larger than the model's 32x32 so the processor resizes them."""
    folder = tmp_path_factory.mktemp("scans")
    rng = np.random.default_rng(7)
    paths = []
    for i in range(2):
        path = folder / f"scan-{i}.png"
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def ask(image: dict[str, Any] | None) -> list[Any]:
    content: list[Any] = [{"type": "text", "text": QUESTION}]
    return [HumanMessage(content=[*content, image] if image else content)]


def the_three_forms(path: Path) -> list[dict[str, Any]]:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return [
        {"type": "image_url", "image_url": {"url": str(path)}},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
        {"type": "image", "fhir_attachment": {"contentType": "image/png", "data": data, "title": "CXR"}},
    ]


def test_the_same_image_in_three_forms_gives_one_reply_and_another_image_another(
    chat: TransformersChatModel, scans: list[Path]
) -> None:
    first = [chat.invoke(ask(block)) for block in the_three_forms(scans[0])]
    second = chat.invoke(ask(the_three_forms(scans[1])[0]))
    assert len({r.content for r in first}) == 1
    assert first[0].content and first[0].content != second.content
    assert all(r.response_metadata["images"] == 1 for r in [*first, second])


def test_the_prompt_holds_the_image_soft_tokens(chat: TransformersChatModel, scans: list[Path]) -> None:
    with_image = chat.invoke(ask(the_three_forms(scans[0])[0])).usage_metadata
    text_only = chat.invoke(ask(None)).usage_metadata
    two_images = chat.invoke(
        [HumanMessage(content=[QUESTION, *(the_three_forms(p)[0] for p in scans)])]  # type: ignore[list-item]
    ).usage_metadata
    assert with_image and text_only and two_images
    per_image = with_image["input_tokens"] - text_only["input_tokens"]
    # the soft tokens plus <start_of_image>, <end_of_image> and the blank lines around them
    assert MM_TOKENS_PER_IMAGE + 2 <= per_image <= MM_TOKENS_PER_IMAGE + 6
    assert two_images["input_tokens"] - text_only["input_tokens"] >= 2 * (MM_TOKENS_PER_IMAGE + 2)


def test_the_image_reaches_the_logits(chat: TransformersChatModel, scans: list[Path]) -> None:
    loaded = chat.load()
    image_token = loaded.image_token_id
    assert image_token is not None
    logits = []
    for path in [scans[0], scans[1], scans[0]]:
        prompt, images = chat._prompt(loaded, ask(the_three_forms(path)[0]))
        ids, pixel_values = loaded.encode(prompt, images)
        assert ids.count(image_token) == MM_TOKENS_PER_IMAGE
        with torch.inference_mode():
            output = loaded.model(input_ids=torch.tensor([ids]), pixel_values=pixel_values)
        logits.append(output.logits[0, -1])
    assert torch.equal(logits[0], logits[2])
    assert (logits[0] - logits[1]).abs().max() > 0.1


async def test_image_and_text_requests_share_a_batch_and_reply_as_alone(
    chat: TransformersChatModel, scans: list[Path]
) -> None:
    requests = [ask(the_three_forms(scans[0])[1]), ask(None), ask(the_three_forms(scans[1])[2])]
    alone = [await chat.ainvoke(r) for r in requests]
    together = await asyncio.gather(*(chat.ainvoke(r) for r in requests))
    assert [r.content for r in together] == [r.content for r in alone]
    assert max(r.response_metadata["batch_size"] for r in together) > 1


def test_the_static_cache_path_gives_the_eager_reply(
    chat: TransformersChatModel, tiny_gemma3_dir: Path, scans: list[Path]
) -> None:
    fast = TransformersChatModel(
        model_path=str(tiny_gemma3_dir), device="cpu", dtype="float32", max_new_tokens=8, fast_path="on"
    )
    for request in [ask(the_three_forms(scans[0])[0]), ask(None), ask(the_three_forms(scans[0])[0])]:
        assert fast.invoke(request).content == chat.invoke(request).content


async def test_a_streamed_reply_with_an_image_matches_the_whole_one(
    chat: TransformersChatModel, scans: list[Path]
) -> None:
    request = [SystemMessage("You read scans."), *ask(the_three_forms(scans[1])[2])]
    streamed = "".join([str(chunk.content) async for chunk in chat.astream(request)])
    assert streamed.strip() == str(chat.invoke(request).content).strip()


def test_the_server_passes_openai_image_parts_to_the_model(
    chat: TransformersChatModel, scans: list[Path]
) -> None:
    client = TestClient(create_app(chat, "tiny-gemma3"))
    data_url = the_three_forms(scans[0])[1]
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": QUESTION}, data_url]}]}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == chat.invoke(ask(data_url)).content
    web = {"type": "image_url", "image_url": {"url": "https://example.org/cxr.png"}}
    refused = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": [web]}]})
    assert refused.status_code == 400
    assert "makes no network requests" in refused.json()["error"]["message"]


def test_message_text_cannot_smuggle_image_tokens(chat: TransformersChatModel, scans: list[Path]) -> None:
    with pytest.raises(ModelInputError, match="image soft tokens of its own"):
        chat.invoke([HumanMessage("look: <image_soft_token>")])
    with pytest.raises(ModelInputError, match=r"image markers do not match the number of images \(1\)"):
        chat.invoke([*ask(the_three_forms(scans[0])[0]), HumanMessage("<start_of_image>")])


def test_a_text_only_model_refuses_images(
    gemma: TransformersChatModel, chat: TransformersChatModel, scans: list[Path]
) -> None:
    assert (gemma.takes_images(), chat.takes_images()) == (False, True)
    with pytest.raises(ModelInputError, match=r"the model in .*gemma-3-270m takes no images"):
        gemma.invoke(ask(the_three_forms(scans[0])[0]))
