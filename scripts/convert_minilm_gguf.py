#!/usr/bin/env python3
"""Convert sentence-transformers/all-MiniLM-L6-v2 (safetensors + WordPiece vocab)
to a GGUF file that llama.cpp loads with its "bert" architecture.

Only numpy, safetensors and the PyPI `gguf` writer are needed: no torch, no
transformers. The metadata keys and tensor names below were taken from the
llama.cpp sources vendored in llama-cpp-python 0.3.36 (src/models/bert.cpp,
src/llama-vocab.cpp, src/llama-arch.cpp, gguf-py/gguf/constants.py); if a
future llama.cpp renames any of them, this is the place to follow.

Usage: convert_minilm_gguf.py MODEL_DIR OUT.gguf [--outtype f16|f32]
MODEL_DIR is the package's `model/` folder (config.json, model.safetensors,
vocab.txt, tokenizer.json, modules.json, 1_Pooling/config.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

import gguf

ARCH = "bert"

# HF BertModel names -> llama.cpp BERT names. "{i}" is the layer index.
EMBEDDING_TENSORS = {
    "embeddings.word_embeddings.weight": "token_embd.weight",
    "embeddings.token_type_embeddings.weight": "token_types.weight",
    "embeddings.position_embeddings.weight": "position_embd.weight",
    "embeddings.LayerNorm.weight": "token_embd_norm.weight",
    "embeddings.LayerNorm.bias": "token_embd_norm.bias",
}
LAYER_TENSORS = {
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
}
# Present in the checkpoint but unused by an embedding-only BERT graph.
IGNORED_TENSORS = {"embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"}

# Tensors llama.cpp reads with a row lookup (ggml_get_rows / a 1-row view):
# upstream keeps these in f32 even in "f16" files, so do the same.
KEEP_F32 = {"position_embd.weight", "token_types.weight"}


def map_tensor_name(hf_name: str, n_layer: int) -> str | None:
    if hf_name.startswith("bert."):
        hf_name = hf_name[len("bert."):]
    if hf_name in IGNORED_TENSORS:
        return None
    if hf_name in EMBEDDING_TENSORS:
        return EMBEDDING_TENSORS[hf_name]
    prefix = "encoder.layer."
    if hf_name.startswith(prefix):
        idx_str, rest = hf_name[len(prefix):].split(".", 1)
        idx = int(idx_str)
        if not 0 <= idx < n_layer:
            raise ValueError(f"layer index out of range in {hf_name}")
        module, _, suffix = rest.rpartition(".")  # suffix: weight | bias
        if module in LAYER_TENSORS and suffix in ("weight", "bias"):
            return f"blk.{idx}.{LAYER_TENSORS[module]}.{suffix}"
    raise ValueError(f"unexpected tensor in checkpoint: {hf_name}")


def pick_dtype(gguf_name: str, arr: np.ndarray, outtype: str) -> np.ndarray:
    # ggml only supports f32 for 1-D tensors (biases, norms) in most ops.
    if outtype == "f32" or arr.ndim < 2 or gguf_name in KEEP_F32:
        return arr.astype(np.float32)
    return arr.astype(np.float16)


def read_vocab(model_dir: Path) -> list[str]:
    with open(model_dir / "vocab.txt", encoding="utf-8") as f:
        # vocab.txt is one token per line; the line number is the id.
        return [line.rstrip("\n") for line in f]


def special_tokens(model_dir: Path, vocab: list[str]) -> dict[str, int]:
    ids = {tok: i for i, tok in enumerate(vocab)}
    names = {"unk": "[UNK]", "sep": "[SEP]", "pad": "[PAD]", "cls": "[CLS]", "mask": "[MASK]"}
    cfg_path = model_dir / "tokenizer_config.json"
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        for key in names:
            if isinstance(cfg.get(f"{key}_token"), str):
                names[key] = cfg[f"{key}_token"]
    return {key: ids[tok] for key, tok in names.items()}


def pooling_type(model_dir: Path) -> gguf.PoolingType:
    # sentence-transformers records its pooling module in modules.json.
    modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
    for mod in modules:
        if mod["type"].endswith("Pooling"):
            cfg = json.loads((model_dir / mod["path"] / "config.json").read_text(encoding="utf-8"))
            if cfg.get("pooling_mode_mean_tokens"):
                return gguf.PoolingType.MEAN
            if cfg.get("pooling_mode_cls_token"):
                return gguf.PoolingType.CLS
            raise ValueError(f"unsupported pooling config: {cfg}")
    raise ValueError("no Pooling module in modules.json")


def normalizer_flags(model_dir: Path) -> tuple[bool, bool]:
    lowercase, strip_accents = True, None
    tok_path = model_dir / "tokenizer.json"
    if tok_path.is_file():
        norm = json.loads(tok_path.read_text(encoding="utf-8")).get("normalizer") or {}
        if norm.get("type") == "BertNormalizer":
            lowercase = bool(norm.get("lowercase", True))
            strip_accents = norm.get("strip_accents")
    # HF semantics: strip_accents=None means "follow lowercase".
    return lowercase, lowercase if strip_accents is None else bool(strip_accents)


def convert(model_dir: Path, out_path: Path, outtype: str) -> None:
    hp = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if hp.get("model_type") != "bert":
        raise ValueError(f"expected a BERT config, got model_type={hp.get('model_type')!r}")
    if hp.get("position_embedding_type", "absolute") != "absolute" or hp.get("hidden_act") != "gelu":
        raise ValueError("only absolute positions + gelu are supported by llama.cpp's bert graph")
    n_layer = int(hp["num_hidden_layers"])

    vocab = read_vocab(model_dir)
    if len(vocab) != hp["vocab_size"]:
        raise ValueError(f"vocab.txt has {len(vocab)} tokens, config says {hp['vocab_size']}")
    special = special_tokens(model_dir, vocab)
    control_ids = set(special.values())

    # llama.cpp's WordPiece tokenizer works on "phantom space" pieces: a token
    # that starts a word carries a leading U+2581, a "##" continuation piece
    # loses its "##". Control tokens stay verbatim so they never match text.
    tokens, toktypes = [], []
    for i, tok in enumerate(vocab):
        if i in control_ids:
            tokens.append(tok)
            toktypes.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(tok[2:] if tok.startswith("##") else "\u2581" + tok)
            toktypes.append(gguf.TokenType.NORMAL)

    weights = load_file(str(model_dir / "model.safetensors"))

    w = gguf.GGUFWriter(str(out_path), ARCH)
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name("all-MiniLM-L6-v2")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16" else gguf.LlamaFileType.ALL_F32)

    w.add_context_length(int(hp["max_position_embeddings"]))
    w.add_embedding_length(int(hp["hidden_size"]))
    w.add_feed_forward_length(int(hp["intermediate_size"]))
    w.add_block_count(n_layer)
    w.add_head_count(int(hp["num_attention_heads"]))
    w.add_layer_norm_eps(float(hp["layer_norm_eps"]))
    w.add_causal_attention(False)  # bidirectional encoder
    w.add_pooling_type(pooling_type(model_dir))

    w.add_tokenizer_model("bert")  # selects llama.cpp's WPM tokenizer
    # For WPM vocabularies llama.cpp ignores the pre-tokenizer name; "default" is honest.
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(toktypes)
    w.add_token_type_count(int(hp.get("type_vocab_size", 2)))
    # llama.cpp's WPM path prepends the BOS id and appends the SEP id, so BOS must be [CLS].
    w.add_bos_token_id(special["cls"])
    w.add_uint32("tokenizer.ggml.cls_token_id", special["cls"])  # no helper in gguf 0.19
    w.add_sep_token_id(special["sep"])
    # No EOS id on purpose: an encoder has no end-of-generation token, and
    # marking [SEP] as EOS only makes llama.cpp warn that EOS is not an EOG token.
    w.add_unk_token_id(special["unk"])
    w.add_pad_token_id(special["pad"])
    w.add_mask_token_id(special["mask"])
    w.add_add_bos_token(True)
    w.add_add_sep_token(True)
    w.add_add_eos_token(False)
    lowercase, strip_accents = normalizer_flags(model_dir)
    # Keys read by llama-vocab.cpp; gguf 0.19 on PyPI has no helpers for them.
    w.add_bool("tokenizer.ggml.normalizer.lowercase", lowercase)
    w.add_bool("tokenizer.ggml.normalizer.strip_accents", strip_accents)

    written = set()
    for hf_name in sorted(weights):
        name = map_tensor_name(hf_name, n_layer)
        if name is None:
            continue
        arr = pick_dtype(name, weights[hf_name], outtype)
        # gguf-py reverses numpy's shape into ggml's ne[], so a torch Linear
        # weight (out, in) lands as ne = {in, out}, which is what bert.cpp asks for.
        w.add_tensor(name, np.ascontiguousarray(arr))
        written.add(name)

    expected = set(EMBEDDING_TENSORS.values()) | {
        f"blk.{i}.{t}.{s}" for i in range(n_layer) for t in LAYER_TENSORS.values() for s in ("weight", "bias")
    }
    if written != expected:
        raise ValueError(f"tensor set mismatch: missing={sorted(expected - written)} extra={sorted(written - expected)}")

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path, help="folder with config.json, model.safetensors, vocab.txt, ...")
    ap.add_argument("output", type=Path, help="GGUF file to write")
    ap.add_argument("--outtype", choices=("f16", "f32"), default="f16")
    args = ap.parse_args()

    # Write to a temp name first so an interrupted run never leaves a
    # truncated file at the path the setup script treats as "done".
    tmp = args.output.with_name(args.output.name + ".tmp")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    convert(args.model_dir, tmp, args.outtype)
    tmp.replace(args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes, {args.outtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
