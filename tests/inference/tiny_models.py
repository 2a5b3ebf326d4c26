"""Tiny random-weight models written in the tests: real file formats, real loaders, no downloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def write_tiny_gguf(
    path: Path,
    *,
    embedding: int = 32,
    layers: int = 2,
    extra_vocab: int = 0,
    context_length: int = 256,
    seed: int = 0,
) -> Path:
    """A llama-architecture GGUF with random weights and a byte-level SentencePiece vocabulary.

    ``extra_vocab`` pads the vocabulary with filler tokens, which makes the file (and the model in
    memory) larger by ``extra_vocab * embedding * 8`` bytes: a knob for the memory-eviction tests.
    """
    import gguf

    rng = np.random.default_rng(seed)
    tokens: list[bytes] = [b"<unk>", b"<s>", b"</s>", b"<|im_start|>", b"<|im_end|>"]
    types = [
        gguf.TokenType.UNKNOWN,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
        gguf.TokenType.CONTROL,
    ]
    tokens += [f"<0x{b:02X}>".encode() for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    words = ["\u2581the", "\u2581patient", "\u2581is", "\u2581well", "\u2581"]
    words += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    words += [f"\u2581{chr(c)}" for c in range(ord("a"), ord("z") + 1)]
    tokens += [w.encode() for w in words]
    types += [gguf.TokenType.NORMAL] * len(words)
    tokens += [f"<filler{i}>".encode() for i in range(extra_vocab)]
    types += [gguf.TokenType.USER_DEFINED] * extra_vocab
    scores = [0.0] * 261 + [-float(i) for i in range(len(words))] + [-1000.0] * extra_vocab
    vocab = len(tokens)

    heads, ffn = 4, embedding * 2
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-random-llama")
    writer.add_context_length(context_length)
    writer.add_embedding_length(embedding)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_rope_dimension_count(embedding // heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(4)
    writer.add_add_bos_token(True)
    writer.add_chat_template(CHATML_TEMPLATE)

    def tensor(name: str, *shape: int) -> None:
        writer.add_tensor(name, rng.normal(0.0, 0.5, size=shape).astype(np.float32))

    tensor("token_embd.weight", vocab, embedding)
    writer.add_tensor("output_norm.weight", np.ones(embedding, dtype=np.float32))
    output = rng.normal(0.0, 0.5, size=(vocab, embedding)).astype(np.float32)
    # control and byte tokens score 0 while the random rows of the others score above: greedy decoding never
    # ends early and always produces whole UTF-8 text (streams can hand every piece on at once)
    output[:261] = 0.0
    writer.add_tensor("output.weight", output)
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(embedding, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(embedding, dtype=np.float32))
        for part in ("attn_q", "attn_k", "attn_v", "attn_output"):
            tensor(f"blk.{i}.{part}.weight", embedding, embedding)
        tensor(f"blk.{i}.ffn_gate.weight", ffn, embedding)
        tensor(f"blk.{i}.ffn_up.weight", ffn, embedding)
        tensor(f"blk.{i}.ffn_down.weight", embedding, ffn)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


CORPUS = [
    "the patient is well and was discharged home",
    "chest pain with raised troponin treated with aspirin",
    "pneumonia treated with amoxicillin and oxygen",
    "blood pressure heart rate temperature respiratory rate",
]


def write_tiny_transformers(folder: Path, *, seed: int = 0) -> Path:
    """A random-weight Llama causal LM saved from a config, with a small byte-level BPE tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 10, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="<|im_end|>", pad_token="</s>"
    )
    tokenizer.chat_template = CHATML_TEMPLATE

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # control tokens never win greedy decoding: generations run to max_tokens
        model.lm_head.weight[: len(special)] = 0.0
        model.lm_head.weight[len(special) :] *= 20.0
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
