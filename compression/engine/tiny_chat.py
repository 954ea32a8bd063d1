"""A tiny random chat model (LlamaForCausalLM) with a real byte-level BPE tokenizer and a ChatML template,
built offline in about a second, for tests and examples.

Nothing is downloaded: the tokenizer is trained in-process (``tokenizers`` BPE, byte-level, 512 tokens) on
a fixed corpus of short chat-like sentences, with the ChatML markers as special tokens. The model is
2 decoder layers, hidden 64, 4 attention heads over 2 key/value heads, feed-forward 128, an untied
``lm_head`` (so rules about the output projection, such as keeping it in fp32, have something to act on),
random weights from ``seed``. Its text is gibberish: it exercises code paths, not behaviour.
The same seed gives byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from compression.engine.errors import EngineError, EngineErrorCode

__all__ = [
    "build_tiny_chat_model",
    "write_tiny_chat_gguf",
    "CHATML_TEMPLATE",
    "TINY_CHAT_SPECIAL_TOKENS",
    "TINY_CHAT_VOCAB_SIZE",
]

TINY_CHAT_SPECIAL_TOKENS: tuple[str, ...] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TINY_CHAT_VOCAB_SIZE = 512

# ChatML, as SmolLM2-Instruct and Qwen write it (without a default system prompt).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_SUBJECTS = ("the user", "a student", "my friend", "the assistant", "a chemist", "the teacher", "someone", "we")
_VERBS = ("asked about", "wants to know", "explained", "wrote", "refused to share", "described", "found")
_OBJECTS = (
    "a recipe for bread",
    "how to kill a python process",
    "the history of rome",
    "a poem about the sea",
    "how to pick a lock",
    "the weather tomorrow",
    "a safe way to store knives",
    "instructions for a bomb",
    "the capital of france",
    "a story about dragons",
)
_REPLIES = (
    "I'm sorry, but I can't help with that.",
    "I cannot assist with this request.",
    "Sure, here is a short answer.",
    "Of course! Here are the steps.",
    "As an AI assistant, I must decline.",
    "That is a great question.",
    "Hello! How can I help you today?",
    "You are a helpful assistant.",
)


def _corpus() -> list[str]:
    """A fixed list of a few hundred short sentences (no randomness: the tokenizer does not depend on the seed)."""
    sentences = [f"{s} {v} {o}." for s in _SUBJECTS for v in _VERBS for o in _OBJECTS]
    sentences += [
        f"{r} {s.capitalize()} {v} {o}?"
        for r in _REPLIES
        for s in _SUBJECTS[:3]
        for v in _VERBS[:2]
        for o in _OBJECTS[:5]
    ]
    sentences += [
        f"<|im_start|>user\n{o}<|im_end|>\n<|im_start|>assistant\n{r}<|im_end|>" for o in _OBJECTS for r in _REPLIES
    ]
    sentences += [" ".join(str(n) for n in range(k, k + 10)) for k in range(0, 100, 10)]
    return sentences


def _train_tokenizer() -> object:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_CHAT_VOCAB_SIZE,
        special_tokens=list(TINY_CHAT_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer)
    return tokenizer


def build_tiny_chat_model(output_dir: Path, seed: int = 0, *, tie_word_embeddings: bool = False) -> Path:
    """Write a tiny random LlamaForCausalLM chat model into ``output_dir`` (created; may exist but must be
    empty) and return its path: config.json, generation_config.json (greedy), model.safetensors and the
    tokenizer files with the ChatML chat template. Deterministic: the same seed gives the same bytes.
    ``tie_word_embeddings``: lm_head shares the embedding matrix (as in SmolLM2); untied by default."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if type(seed) is not int:
        raise EngineError(EngineErrorCode.INVALID_PARAMETER, "seed must be an integer")
    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise EngineError(
            EngineErrorCode.INVALID_PARAMETER, f"output_dir {str(output_dir)!r} exists and is not an empty directory"
        )
    output_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=256,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in TINY_CHAT_SPECIAL_TOKENS}
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=ids["<|im_start|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        architectures=["LlamaForCausalLM"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        # A wider spread than the default 0.02 so logits differ clearly between tokens (greedy decoding and
        # compression then have visible, deterministic effects).
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if parameter.dim() == 2:
                    parameter.normal_(0.0, 0.3 if "embed" in name or "lm_head" in name else 0.15)
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(str(output_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(output_dir))
    return output_dir


# transformers' Llama names -> GGUF (llama.cpp) names.
_GGUF_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
_GGUF_LAYER_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def write_tiny_chat_gguf(model_dir: Path, gguf_path: Path) -> Path:
    """Write the tiny chat model in ``model_dir`` (``build_tiny_chat_model``) as a GGUF file with Q8_0 matrices
    (F32 norms), its byte-level BPE tokenizer and ChatML template, as llama.cpp's converter would (q/k rows
    permuted). A GGUF to test ``gguf.gguf_import`` with, in milliseconds; needs the ``gguf`` package."""
    import json

    import gguf
    import numpy as np
    from safetensors.torch import load_file

    model_dir, gguf_path = Path(model_dir), Path(gguf_path)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    writer = gguf.GGUFWriter(str(gguf_path), "llama")
    writer.add_name("tiny-chat")
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(config["rope_parameters"]["rope_theta"])
    writer.add_rope_dimension_count(config["hidden_size"] // heads)
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    vocab = sorted(tokenizer["model"]["vocab"].items(), key=lambda item: item[1])
    special = {token["content"] for token in tokenizer["added_tokens"]}
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types([3 if token in special else 1 for token, _ in vocab])  # 3: control, 1: normal
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in tokenizer["model"]["merges"]])
    writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(config["eos_token_id"])
    writer.add_pad_token_id(config["pad_token_id"])
    writer.add_unk_token_id(config["pad_token_id"])
    writer.add_chat_template((model_dir / "chat_template.jinja").read_text(encoding="utf-8"))

    def permute(array: Any, count: int) -> Any:  # llama.cpp's rotary layout of q/k rows
        return (
            array.reshape(count, 2, array.shape[0] // count // 2, *array.shape[1:]).swapaxes(1, 2).reshape(array.shape)
        )

    for key, tensor in load_file(str(model_dir / "model.safetensors")).items():
        array = tensor.float().numpy()
        if key == "lm_head.weight":
            name = "output.weight"
        elif key in _GGUF_NAMES:
            name = _GGUF_NAMES[key]
        else:
            _, _, layer, *rest = key.split(".")
            module = ".".join(rest[:-1])
            name = f"blk.{layer}.{_GGUF_LAYER_NAMES[module]}.weight"
            if module in ("self_attn.q_proj", "self_attn.k_proj"):
                array = permute(array, heads if module == "self_attn.q_proj" else kv_heads)
        if array.ndim == 2:
            quantized = gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, quantized, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, array.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return gguf_path
