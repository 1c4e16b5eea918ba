#!/usr/bin/python3
"""Writes tests/fixtures/torch/*.bin: small state dicts saved by PyTorch's own torch.save, the
format of Hugging Face's pytorch_model.bin, for tests/io/torch_state_dict_test.cpp; and
tests/fixtures/torch/tiny-llama/: a random LLaMA folder (config.json, pytorch_model.bin in bf16)
with the logits of a plain PyTorch forward written from transformers' LlamaForCausalLM
(reference_logits.json), for tests/model/loader_test.cpp and tests/cli/cli_test.sh.

Run with Debian's python3-torch (/usr/bin/python3; apt-get install python3-torch):
    /usr/bin/python3 scripts/make-torch-fixtures.py tests/fixtures/torch
Values follow value(i) = (i % 17 - 8) / 8 over each tensor's elements in order (exact in bf16 and
f16), which the C++ test recomputes; nothing random.
"""
import collections
import json
import os
import zipfile
import sys

import torch
import torch.serialization


def values(n, dtype=torch.float32):
    i = torch.arange(n)
    return ((i % 17 - 8).to(torch.float32) / 8).to(dtype)


def state_dict():
    sd = collections.OrderedDict()
    embed = values(24).reshape(6, 4)
    sd["model.embed_tokens.weight"] = embed
    sd["lm_head.weight"] = embed  # tied: one storage, as a tied model's state_dict() holds it
    sd["model.layers.0.self_attn.q_proj.weight"] = values(16, torch.bfloat16).reshape(4, 4)
    sd["model.norm.weight"] = values(4, torch.float16)
    big = values(12).reshape(3, 4)
    sd["row"] = big[1]  # a view at storage offset 4 of a 12-element storage
    sd["transposed"] = big.t()  # [4, 3], not contiguous
    sd["ids"] = torch.tensor([0, -5, 1 << 40], dtype=torch.int64)
    sd["flags"] = torch.tensor([True, False])
    sd["scalar"] = torch.tensor(0.5)
    sd["empty"] = torch.zeros(0, 4)
    return sd


class Optimizer:  # an arbitrary Python object, as in a training checkpoint
    def __init__(self):
        self.lr = 0.1


TINY = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32, "hidden_size": 16,
    "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
    "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16",
}


def tiny_llama_state_dict():
    g = torch.Generator().manual_seed(0)
    h, inter, kv = TINY["hidden_size"], TINY["intermediate_size"], 2 * 4
    sd = collections.OrderedDict()
    sd["model.embed_tokens.weight"] = torch.randn(32, h, generator=g)
    for i in range(TINY["num_hidden_layers"]):
        p = "model.layers.%d." % i
        sd[p + "self_attn.q_proj.weight"] = torch.randn(h, h, generator=g) / 2
        sd[p + "self_attn.k_proj.weight"] = torch.randn(kv, h, generator=g) / 2
        sd[p + "self_attn.v_proj.weight"] = torch.randn(kv, h, generator=g) / 2
        sd[p + "self_attn.o_proj.weight"] = torch.randn(h, h, generator=g) / 2
        sd[p + "mlp.gate_proj.weight"] = torch.randn(inter, h, generator=g) / 2
        sd[p + "mlp.up_proj.weight"] = torch.randn(inter, h, generator=g) / 2
        sd[p + "mlp.down_proj.weight"] = torch.randn(h, inter, generator=g) / 2
        sd[p + "input_layernorm.weight"] = 1 + torch.randn(h, generator=g) / 4
        sd[p + "post_attention_layernorm.weight"] = 1 + torch.randn(h, generator=g) / 4
    sd["model.norm.weight"] = 1 + torch.randn(h, generator=g) / 4
    sd["lm_head.weight"] = torch.randn(32, h, generator=g)
    return collections.OrderedDict((k, v.to(torch.bfloat16)) for k, v in sd.items())


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def llama_logits(sd, ids):
    """transformers' LlamaForCausalLM forward, written out plainly in f32 (no cache, no padding)."""
    w = {k: v.float() for k, v in sd.items()}
    n_heads, n_kv, eps = TINY["num_attention_heads"], TINY["num_key_value_heads"], TINY["rms_norm_eps"]
    head_dim = TINY["hidden_size"] // n_heads
    t = len(ids)
    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    inv_freq = 1.0 / (TINY["rope_theta"] ** (torch.arange(0, head_dim, 2).float() / head_dim))
    freqs = torch.outer(torch.arange(t).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.full((t, t), float("-inf")).triu(1)
    for i in range(TINY["num_hidden_layers"]):
        p = "model.layers.%d." % i
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = (h @ w[p + "self_attn.q_proj.weight"].T).view(t, n_heads, head_dim).transpose(0, 1)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).view(t, n_kv, head_dim).transpose(0, 1)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).view(t, n_kv, head_dim).transpose(0, 1)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(n_heads // n_kv, 0), v.repeat_interleave(n_heads // n_kv, 0)
        att = torch.softmax(q @ k.transpose(1, 2) / head_dim ** 0.5 + mask, dim=-1)
        o = (att @ v).transpose(0, 1).reshape(t, -1)
        x = x + o @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate = torch.nn.functional.silu(h @ w[p + "mlp.gate_proj.weight"].T)
        x = x + (gate * (h @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    return x @ w["lm_head.weight"].T


def tiny_llama(out):
    os.makedirs(out, exist_ok=True)
    sd = tiny_llama_state_dict()
    torch.save(sd, os.path.join(out, "pytorch_model.bin"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(TINY, f, indent=2)
    ids = [1, 5, 9, 2, 30, 7, 7, 3]
    with open(os.path.join(out, "reference_logits.json"), "w") as f:
        json.dump({"ids": ids, "logits": llama_logits(sd, ids).tolist()}, f)


def rezip(src, dst, pickle_bytes):
    """`src`'s archive with its data.pkl replaced (fixed timestamps: the same bytes every run)."""
    with zipfile.ZipFile(src) as z:
        with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as w:
            for info in z.infolist():
                data = z.read(info.filename)
                if info.filename.endswith("/data.pkl"):
                    data = pickle_bytes(data)
                w.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)), data)


def rezipped(out):
    """state_dict.bin rewritten by Python's zipfile: deflated, and stored without torch.save's
    64-byte alignment (the reader cannot view either in place and reads them instead)."""
    src = os.path.join(out, "state_dict.bin")
    for name, compression in (("state_dict_deflated.bin", zipfile.ZIP_DEFLATED),
                              ("state_dict_unaligned.bin", zipfile.ZIP_STORED)):
        with zipfile.ZipFile(src) as z, zipfile.ZipFile(os.path.join(out, name), "w", compression) as w:
            for info in z.infolist():
                w.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)),
                           z.read(info.filename), compress_type=compression)


def deflated_aligned(out):
    """state_dict.bin with its data.pkl stored and its tensor records deflated, each entry's data
    at a 64-byte offset (extra-field padding, as torch.save aligns): where a reader would view
    stored records in place, these it must inflate."""
    src = os.path.join(out, "state_dict.bin")
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(os.path.join(out, "state_dict_deflated_aligned.bin"), "w") as w:
        for info in z.infolist():
            stored = info.filename.endswith("/data.pkl") or "/data/" not in info.filename
            entry = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            header = w.fp.tell() + 30 + len(info.filename.encode())
            pad = (-(header + 4)) % 64
            entry.extra = b"FB" + pad.to_bytes(2, "little") + b"Z" * pad
            w.writestr(entry, z.read(info.filename))
            assert (header + len(entry.extra)) % 64 == 0


def malformed(out):
    """Damaged archives that libtorch's unpickler would run into undefined behaviour."""
    os.makedirs(out, exist_ok=True)
    one = os.path.join(out, "..", "one_tensor_plain.bin")
    rezip(one, os.path.join(out, "stack_underflow.bin"), lambda p: b"\x80\x02R.")
    rezip(one, os.path.join(out, "tuple_without_mark.bin"), lambda p: b"\x80\x02t.")
    rezip(one, os.path.join(out, "huge_memo_id.bin"), lambda p: b"\x80\x02}r\xff\xff\xff\x7f.")
    rezip(one, os.path.join(out, "truncated_pickle.bin"), lambda p: p[: len(p) // 2])

    def view_past_storage(p):  # the 5-float storage claimed as 255, the tensor's size 200
        assert p.count(b"K\x05t") == 1 and p.count(b"K\x05\x85") == 1
        return p.replace(b"K\x05t", b"K\xfft").replace(b"K\x05\x85", b"K\xc8\x85")

    rezip(one, os.path.join(out, "view_past_storage.bin"), view_past_storage)

    def quantized_storage(p):  # a storage type of a quantized dtype: a tensor without quantizer
        assert p.count(b"FloatStorage") == 1
        return p.replace(b"FloatStorage", b"QInt8Storage")

    rezip(one, os.path.join(out, "quantized_storage.bin"), quantized_storage)


def unsupported_dtypes(out):
    """Tensors of dtypes xcomp does not read, as torch.save writes them."""
    torch.save({"w": values(3), "q": torch.quantize_per_tensor(values(4), 0.125, 0, torch.qint8)},
               os.path.join(out, "quantized.bin"))
    torch.save({"w": values(3), "c": torch.complex(values(2), values(2))}, os.path.join(out, "complex.bin"))


def main(out):
    os.makedirs(out, exist_ok=True)
    sd = state_dict()
    torch.save(sd, os.path.join(out, "state_dict.bin"))  # OrderedDict: model.state_dict()
    torch.save(dict(sd), os.path.join(out, "state_dict_plain.bin"))  # dict: transformers' shards
    torch.save(sd, os.path.join(out, "state_dict_legacy.bin"), _use_new_zipfile_serialization=False)
    torch.save({"a": values(3), "step": 3}, os.path.join(out, "not_tensors.bin"))
    torch.save([values(3), values(2)], os.path.join(out, "a_list.bin"))
    torch.save({"a": values(3), "opt": Optimizer()}, os.path.join(out, "an_object.bin"))
    # One entry: the pickle's SETITEM instead of MARK ... SETITEMS (a shard holding one tensor).
    torch.save(collections.OrderedDict(w=values(5)), os.path.join(out, "one_tensor.bin"))
    torch.save({"w": values(5)}, os.path.join(out, "one_tensor_plain.bin"))
    # 1,001 entries: pickle fills a dict 1,000 at a time, the last one by SETITEM (0-d views of
    # one storage, so that the file stays small).
    many = values(1001)
    torch.save(collections.OrderedDict(("t%04d" % i, many[i]) for i in range(1001)),
               os.path.join(out, "thousand_and_one.bin"))
    # Tensors saved from a GPU carry the location "cuda:0"; written here without one.
    location_tag = torch.serialization.location_tag
    torch.serialization.location_tag = lambda storage: "cuda:0"
    try:
        torch.save(collections.OrderedDict(w=values(5), b=values(2, torch.bfloat16)),
                   os.path.join(out, "saved_on_gpu.bin"))
    finally:
        torch.serialization.location_tag = location_tag
    rezipped(out)
    deflated_aligned(out)
    tiny_llama(os.path.join(out, "tiny-llama"))
    malformed(os.path.join(out, "malformed"))
    unsupported_dtypes(out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/torch")
