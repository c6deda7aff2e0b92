"""Tiny llama-architecture GGUF models with random weights, made on the spot (no model hub).

Decoding speed and API behaviour do not depend on weight values, so a 64-wide, 2-block
model exercises a real llama-server in milliseconds. Such a model emits arbitrary byte
tokens: streamed text contains invalid and split UTF-8, as real models' streams can.
Needs the `gguf` package (a test extra); the demo uses it only when it is installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

WORDS = ["the", "sky", "is", "blue", "because", "light", "scatters", "in", "air", "and", "we", "see", "it",
         "every", "day", "hello", "world", "model", "answer", "yes", "no", "one", "two", "three"]
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _vocab() -> tuple[list[bytes], list[float], list[int]]:
    import gguf

    tokens = [b"<unk>", b"<s>", b"</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{i:02X}>".encode() for i in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    tokens += [("\u2581" + w).encode() for w in WORDS] + [w.encode() for w in WORDS]
    types += [gguf.TokenType.NORMAL] * (2 * len(WORDS))
    scores = [0.0] * 3 + [-1000.0] * 256 + [-float(i) for i in range(2 * len(WORDS))]
    return tokens, scores, [int(t) for t in types]


def _writer(path: Path, name: str, shape: tuple[int, ...], vocab: tuple[list, list, list], file_type,
            rope_base: float | None = None):
    """A GGUFWriter with the llama metadata and tokenizer written; the tensors are the caller's."""
    import gguf

    n_ctx, n_embd, n_layer, n_ff, n_head, n_head_kv = shape
    tokens, scores, types = vocab
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(n_embd // n_head)
    if rope_base is not None:
        writer.add_rope_freq_base(rope_base)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(file_type)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_chat_template(CHAT_TEMPLATE)
    return writer


def make_tiny_llama(path: Path, *, seed: int = 0, n_embd: int = 64, n_layer: int = 2, n_head: int = 4,
                    n_head_kv: int = 2, n_ff: int = 128, n_ctx: int = 2048, name: str = "tiny") -> Path:
    import gguf

    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocab()
    writer = _writer(path, name, (n_ctx, n_embd, n_layer, n_ff, n_head, n_head_kv), (tokens, scores, types),
                     gguf.LlamaFileType.ALL_F32)
    for tensor_name, shape in _tensors(len(tokens), n_embd, n_layer, n_head, n_head_kv, n_ff):
        scale = 1.0 if tensor_name.endswith("norm.weight") else 0.2
        data = np.ones(shape, np.float32) if scale == 1.0 else (rng.standard_normal(shape) * scale).astype(np.float32)
        writer.add_tensor(tensor_name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# Real architectures' shapes (n_embd, n_layer, n_ff, n_head, n_head_kv): random weights of these
# shapes decode at the real models' speed (weights' values do not change the work).
SHAPES = {"llama-3.2-1b": (2048, 16, 8192, 32, 8), "llama-3.2-3b": (3072, 28, 8192, 24, 8)}


def make_shaped_llama(path: Path, shape: str | tuple[int, int, int, int, int], *, n_vocab: int = 32000,
                      n_ctx: int = 131072, seed: int = 0, name: str | None = None) -> Path:
    """A llama-architecture GGUF of a real model's shape with f16 random weights, written fast:
    one pool of random numbers is drawn once and every matrix is a (contiguous) view into it at
    its own offset, so a multi-GB file costs about its write time. Norms are f32 ones. The
    vocabulary is the tiny one padded with filler pieces to `n_vocab` (a smaller vocabulary than
    the real model keeps the file small; decode cost is dominated by the blocks)."""
    import gguf

    n_embd, n_layer, n_ff, n_head, n_head_kv = SHAPES[shape] if isinstance(shape, str) else shape
    tokens, scores, types = _vocab()
    if n_vocab < len(tokens):
        raise ValueError(f"n_vocab must be at least {len(tokens)}")
    filler = n_vocab - len(tokens)
    tokens += [f"\u2581w{i}".encode() for i in range(filler)]
    scores += [-float(len(scores) + i) for i in range(filler)]
    types += [int(gguf.TokenType.NORMAL)] * filler
    specs = list(_tensors(n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff))
    biggest = max(int(np.prod(dims)) for _, dims in specs)
    spare = 1 << 20
    rng = np.random.default_rng(seed)
    pool = (rng.standard_normal(biggest + spare, dtype=np.float32) * 0.02).astype(np.float16)
    writer = _writer(path, name or path.stem, (n_ctx, n_embd, n_layer, n_ff, n_head, n_head_kv),
                     (tokens, scores, types), gguf.LlamaFileType.MOSTLY_F16, rope_base=500000.0)
    for i, (tensor_name, dims) in enumerate(specs):  # `shape` is the model's, `dims` one tensor's
        if len(dims) == 1:
            writer.add_tensor(tensor_name, np.ones(dims, np.float32))
            continue
        offset = (i * 7919) % spare
        writer.add_tensor(tensor_name, pool[offset:offset + int(np.prod(dims))].reshape(dims))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _tensors(n_vocab: int, n_embd: int, n_layer: int, n_head: int, n_head_kv: int,
             n_ff: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    kv = n_embd // n_head * n_head_kv
    yield "token_embd.weight", (n_vocab, n_embd)
    yield "output_norm.weight", (n_embd,)
    yield "output.weight", (n_vocab, n_embd)
    for i in range(n_layer):
        p = f"blk.{i}"
        yield f"{p}.attn_norm.weight", (n_embd,)
        yield f"{p}.attn_q.weight", (n_embd, n_embd)
        yield f"{p}.attn_k.weight", (kv, n_embd)
        yield f"{p}.attn_v.weight", (kv, n_embd)
        yield f"{p}.attn_output.weight", (n_embd, n_embd)
        yield f"{p}.ffn_norm.weight", (n_embd,)
        yield f"{p}.ffn_gate.weight", (n_ff, n_embd)
        yield f"{p}.ffn_up.weight", (n_ff, n_embd)
        yield f"{p}.ffn_down.weight", (n_embd, n_ff)
