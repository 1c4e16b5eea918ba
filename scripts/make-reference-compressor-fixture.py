#!/usr/bin/python3
"""Writes tests/fixtures/torch/reference-kv/: a 500xCompressor (kv) state dict in the form the
paper's reference code saves and loads (torch.save of its LoRA and memory parameters, under the
names its L3LoraL3 module gives them: "llama.base_model.model.<module>.lora_A.default.weight",
"memory_embeddings" [1, N, hidden]), made for tests/fixtures/torch/tiny-llama, and what the
reference computes with it (reference.json): the memory positions' K/V after the text padded
with EOS to the context length, and the frozen base's greedy decoding from them (regeneration
after BOS; a QA prompt), written out plainly in f32 the way the reference's compress() and
predict() run transformers + PEFT (LoRA: W x + (alpha / r) B A x, dropout off).

And tests/fixtures/torch/reference-icae/: the reference's ICAE (its ICAEL3 module: the same LoRA
and memory names, plus "ae_embedding" [1, 1, hidden]) and what it computes: the memory positions'
final-norm hidden states (hidden_states[-1]), the frozen base's greedy decoding from
[memory, AE embedding] (regeneration: the text right after the AE embedding, no BOS) and from
[memory] + a QA prompt, and its regeneration loss over [memory, AE] + text (targets text + EOS).

For tests/compress/reference_import_test.cpp. Run with Debian's python3-torch (/usr/bin/python3):
    /usr/bin/python3 scripts/make-reference-compressor-fixture.py tests/fixtures/torch
"""
import collections
import importlib.util
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("fixtures", os.path.join(HERE, "make-torch-fixtures.py"))
fixtures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fixtures)
TINY = fixtures.TINY

CONTEXT_LENGTH = 12  # the reference's context_len (500 there)
N = 2  # memory tokens
R = 4  # LoRA rank (64 there)
ALPHA = 32.0  # the reference's lora_alpha
TARGETS = ("q_proj", "v_proj")  # PEFT's default for LLaMA, which the reference keeps
TEXT = [5, 9, 30, 7, 3]
BOS, EOS = TINY["bos_token_id"], TINY["eos_token_id"]
QA_PROMPT = [12, 4, 17, 21]


def reference_state_dict(seed=1, icae=False):
    g = torch.Generator().manual_seed(seed)
    h = TINY["hidden_size"]
    kv = TINY["num_key_value_heads"] * h // TINY["num_attention_heads"]
    sd = collections.OrderedDict()
    for i in range(TINY["num_hidden_layers"]):
        for name in TARGETS:
            out = h if name == "q_proj" else kv
            p = "llama.base_model.model.model.layers.%d.self_attn.%s." % (i, name)
            sd[p + "lora_A.default.weight"] = torch.randn(R, h, generator=g) / 4
            sd[p + "lora_B.default.weight"] = torch.randn(out, R, generator=g) / 8
    sd["memory_embeddings"] = torch.randn(1, N, h, generator=g)
    if icae:
        sd["ae_embedding"] = torch.randn(1, 1, h, generator=g)
    return collections.OrderedDict((k, v.to(torch.bfloat16)) for k, v in sd.items())


def forward(w, lora, x, positions, past=None):
    """LlamaModel's forward over embeddings x [t, hidden] at `positions`, after the cached
    per-layer (k, v) [n_kv, p, head_dim] of `past` (attended in full, as transformers does with
    past_key_values and no mask); `lora` None: the adapter disabled. Returns the final-norm hidden
    states and every layer's (k, v) including the new positions (keys after RoPE)."""
    n_heads, n_kv, eps = TINY["num_attention_heads"], TINY["num_key_value_heads"], TINY["rms_norm_eps"]
    head_dim = TINY["hidden_size"] // n_heads
    t = x.shape[0]
    inv_freq = 1.0 / (TINY["rope_theta"] ** (torch.arange(0, head_dim, 2).float() / head_dim))
    freqs = torch.outer(torch.tensor(positions).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    p_len = 0 if past is None else past[0][0].shape[1]
    mask = torch.zeros(t, p_len + t)
    mask[:, p_len:] = torch.full((t, t), float("-inf")).triu(1)
    scale = ALPHA / R
    cache = []

    def proj(h, prefix, name):
        y = h @ w[prefix + name + ".weight"].T
        if lora is not None and name in TARGETS:
            a = lora["llama.base_model.model." + prefix + name + ".lora_A.default.weight"]
            b = lora["llama.base_model.model." + prefix + name + ".lora_B.default.weight"]
            y = y + scale * ((h @ a.T) @ b.T)
        return y

    for i in range(TINY["num_hidden_layers"]):
        p = "model.layers.%d." % i
        h = fixtures.rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = proj(h, p + "self_attn.", "q_proj").view(t, n_heads, head_dim).transpose(0, 1)
        k = proj(h, p + "self_attn.", "k_proj").view(t, n_kv, head_dim).transpose(0, 1)
        v = proj(h, p + "self_attn.", "v_proj").view(t, n_kv, head_dim).transpose(0, 1)
        q, k = q * cos + fixtures.rotate_half(q) * sin, k * cos + fixtures.rotate_half(k) * sin
        if past is not None:
            k, v = torch.cat((past[i][0], k), 1), torch.cat((past[i][1], v), 1)
        cache.append((k, v))
        kr, vr = k.repeat_interleave(n_heads // n_kv, 0), v.repeat_interleave(n_heads // n_kv, 0)
        att = torch.softmax(q @ kr.transpose(1, 2) / head_dim ** 0.5 + mask, dim=-1)
        o = (att @ vr).transpose(0, 1).reshape(t, -1)
        x = x + o @ w[p + "self_attn.o_proj.weight"].T
        h = fixtures.rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate = torch.nn.functional.silu(h @ w[p + "mlp.gate_proj.weight"].T)
        x = x + (gate * (h @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
    return fixtures.rms_norm(x, w["model.norm.weight"], eps), cache


def greedy(w, past, prompt, steps):
    """The reference's predict(): the disabled-adapter base from position N after the memory K/V."""
    logits_first, tokens, ids, pos = None, [], list(prompt), N
    for _ in range(steps):
        hidden, past = forward(w, None, w["model.embed_tokens.weight"][torch.tensor(ids)], list(range(pos, pos + len(ids))), past)
        logits = hidden[-1] @ w["lm_head.weight"].T
        if logits_first is None:
            logits_first = logits
        top2 = torch.topk(logits, 2).values
        assert float(top2[0] - top2[1]) > 1e-3, "a near tie: pick other fixture values"
        pos += len(ids)
        ids = [int(torch.argmax(logits))]
        tokens.append(ids[0])
    return logits_first, tokens


def greedy_embeds(w, x, steps):
    """ICAEL3.predict(): the disabled-adapter base over input embeddings x [t, hidden] from
    position 0, then each argmax token's embedding."""
    logits_first, tokens, past, pos = None, [], None, 0
    for _ in range(steps):
        hidden, past = forward(w, None, x, list(range(pos, pos + x.shape[0])), past)
        logits = hidden[-1] @ w["lm_head.weight"].T
        if logits_first is None:
            logits_first = logits
        top2 = torch.topk(logits, 2).values
        assert float(top2[0] - top2[1]) > 1e-3, "a near tie: pick other fixture values"
        pos += x.shape[0]
        tokens.append(int(torch.argmax(logits)))
        x = w["model.embed_tokens.weight"][torch.tensor([tokens[-1]])]
    return logits_first, tokens


def main_icae(out, w):
    out = os.path.join(out, "reference-icae")
    os.makedirs(out, exist_ok=True)
    sd = reference_state_dict(seed=2, icae=True)
    torch.save(sd, os.path.join(out, "lora_params.pth"))
    lora = {k: v.float() for k, v in sd.items()}
    embed = w["model.embed_tokens.weight"]
    # compress(): as kv's, but the memory positions' final-norm hidden states are the prompt.
    ids = TEXT + [EOS] * (CONTEXT_LENGTH - len(TEXT))
    x = torch.cat((embed[torch.tensor(ids)], lora["memory_embeddings"][0]), 0)
    hidden, _ = forward(w, lora, x, list(range(CONTEXT_LENGTH + N)))
    mem = hidden[CONTEXT_LENGTH:]
    ae = lora["ae_embedding"][0]
    regen_logits, regen_tokens = greedy_embeds(w, torch.cat((mem, ae), 0), 6)
    qa_logits, qa_tokens = greedy_embeds(w, torch.cat((mem, embed[torch.tensor(QA_PROMPT)]), 0), 4)
    # The regeneration loss (ICAEL3.forward): [memory, AE] + text; the AE position and each text
    # token predict the next text token, the last one EOS.
    h, _ = forward(w, None, torch.cat((mem, ae, embed[torch.tensor(TEXT)]), 0), list(range(N + 1 + len(TEXT))))
    logits = h[N:] @ w["lm_head.weight"].T
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(TEXT + [EOS]))
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump({"context_length": CONTEXT_LENGTH, "memory_tokens": N, "lora_r": R, "lora_alpha": ALPHA,
                   "text": TEXT, "qa_prompt": QA_PROMPT, "embeds": mem.tolist(),
                   "regen_first_logits": regen_logits.tolist(), "regen_tokens": regen_tokens,
                   "qa_first_logits": qa_logits.tolist(), "qa_tokens": qa_tokens,
                   "regen_loss": float(loss)}, f)


def main(out):
    main_kv(out)
    base = os.path.join(HERE, "..", "tests", "fixtures", "torch", "tiny-llama", "pytorch_model.bin")
    main_icae(out, {k: v.float() for k, v in torch.load(base).items()})


def main_kv(out):
    out = os.path.join(out, "reference-kv")
    os.makedirs(out, exist_ok=True)
    base = os.path.join(HERE, "..", "tests", "fixtures", "torch", "tiny-llama", "pytorch_model.bin")
    w = {k: v.float() for k, v in torch.load(base).items()}  # the committed weights, as xcomp reads them
    sd = reference_state_dict()
    torch.save(sd, os.path.join(out, "lora_params.pth"))
    lora = {k: v.float() for k, v in sd.items()}
    # compress(): text + EOS padding to the context length, then the memory; the adapter on.
    ids = TEXT + [EOS] * (CONTEXT_LENGTH - len(TEXT))
    x = torch.cat((w["model.embed_tokens.weight"][torch.tensor(ids)], lora["memory_embeddings"][0]), 0)
    _, cache = forward(w, lora, x, list(range(CONTEXT_LENGTH + N)))
    memory_kv = [(k[:, CONTEXT_LENGTH:], v[:, CONTEXT_LENGTH:]) for k, v in cache]
    regen_logits, regen_tokens = greedy(w, memory_kv, [BOS], 6)
    qa_logits, qa_tokens = greedy(w, memory_kv, QA_PROMPT, 4)
    with open(os.path.join(out, "reference.json"), "w") as f:
        json.dump({"context_length": CONTEXT_LENGTH, "memory_tokens": N, "lora_r": R, "lora_alpha": ALPHA,
                   "text": TEXT, "qa_prompt": QA_PROMPT,
                   "kv": [[k.tolist(), v.tolist()] for k, v in memory_kv],
                   "regen_first_logits": regen_logits.tolist(), "regen_tokens": regen_tokens,
                   "qa_first_logits": qa_logits.tolist(), "qa_tokens": qa_tokens}, f)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/torch")
