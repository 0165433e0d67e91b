"""A tiny random SigLIP checkpoint in the google/medsiglip-448 folder layout, built offline."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

IMAGE_SIZE = 32
WORDS = " ".join(
    [
        "a an the of with without no photo image x-ray chest ct mri scan skin rash lesion normal",
        "pneumothorax effusion fracture nodule left right lung heart brain arm leg cat dog",
    ]
).split()


def word_level_tokenizer() -> Any:
    """A lower-casing whitespace tokenizer over `WORDS` that appends `</s>`, as a fast tokenizer."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "</s>": 2}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="</s>", model_max_length=16
    )


def sentencepiece_tokenizer(work: Path) -> Any:
    """SigLIP's own `SiglipTokenizer` over a SentencePiece model trained here on a few sentences."""
    import sentencepiece as spm
    from transformers import SiglipTokenizer

    corpus = work / "corpus.txt"
    corpus.write_text("\n".join([" ".join(WORDS[i : i + 6]) for i in range(0, len(WORDS), 3)] * 10))
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(work / "spiece"),
        vocab_size=64,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    return SiglipTokenizer(vocab_file=str(work / "spiece.model"), model_max_length=16)


def make_tiny_siglip(path: Path, *, seed: int = 0, sentencepiece: bool = False) -> Path:
    """Save a 2-layer SigLIP (32 px images, 8 px patches), its image processor and tokenizer.

    The tokenizer is a word-level fast tokenizer, or with `sentencepiece` SigLIP's own SentencePiece
    `SiglipTokenizer` (the google/medsiglip-448 layout: `spiece.model`; needs sentencepiece, protobuf).
    """
    import torch
    from transformers import SiglipConfig, SiglipModel

    try:
        from transformers import SiglipImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import SiglipImageProcessor as ImageProcessor  # type: ignore[assignment]

    path.mkdir(parents=True, exist_ok=True)
    tokenizer = sentencepiece_tokenizer(path.parent) if sentencepiece else word_level_tokenizer()
    config = SiglipConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": None,
            "eos_token_id": tokenizer.eos_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": 8,
        },
    )
    torch.manual_seed(seed)
    model = SiglipModel(config).eval()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-5.0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, resample=2).save_pretrained(path)
    return path
