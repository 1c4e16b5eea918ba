// llama2.c .bin -> Hugging Face folder (config.json, model.safetensors, tokenizer.bin).
#include "xcomp/llama2c.h"

#include <torch/torch.h>

#include <cstring>

#include "xcomp/config.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/safetensors.h"
#include "xcomp/tokenizer.h"

namespace xcomp {

namespace {
// llama2.c (Meta layout) rotates interleaved pairs (x0,x1),(x2,x3)...; Hugging Face rotates the
// two halves. Permuting each head's output rows maps one onto the other.
torch::Tensor permute_rope_rows(const torch::Tensor& w, int64_t n_heads) {
  const int64_t out = w.size(0), in = w.size(1), head_dim = out / n_heads;
  return w.view({n_heads, head_dim / 2, 2, in}).transpose(1, 2).reshape({out, in}).contiguous();
}
}  // namespace

void convert_llama2c(const std::string& model_bin, const std::string& tokenizer_bin, const std::string& out_dir) {
  std::string data = read_file(model_bin);
  if (data.size() < 28) throw Error(model_bin, "truncated: no llama2.c header");
  int32_t h[7];
  std::memcpy(h, data.data(), sizeof(h));
  const int64_t dim = h[0], hidden = h[1], n_layers = h[2], n_heads = h[3], n_kv = h[4], seq_len = h[6];
  const bool shared = h[5] > 0;
  const int64_t vocab = shared ? h[5] : -static_cast<int64_t>(h[5]);
  if (dim <= 0 || hidden <= 0 || n_layers <= 0 || n_heads <= 0 || n_kv <= 0 || vocab <= 0 || seq_len <= 0 ||
      dim % n_heads != 0 || n_heads % n_kv != 0)
    throw Error(model_bin, "inconsistent llama2.c header: dim " + std::to_string(dim) + ", hidden " +
                               std::to_string(hidden) + ", layers " + std::to_string(n_layers) + ", heads " +
                               std::to_string(n_heads) + ", kv heads " + std::to_string(n_kv) + ", vocab " +
                               std::to_string(vocab) + ", seq_len " + std::to_string(seq_len));
  const int64_t head = dim / n_heads, kv_dim = n_kv * head;
  const int64_t floats = vocab * dim + n_layers * (2 * dim + dim * dim * 2 + dim * kv_dim * 2 + 3 * dim * hidden) +
                         dim + seq_len * head + (shared ? 0 : vocab * dim);
  const size_t expected = 28 + static_cast<size_t>(floats) * 4;
  if (data.size() != expected)
    throw Error(model_bin, "file is " + std::to_string(data.size()) + " bytes, the header implies " +
                               std::to_string(expected), "truncated or not a llama2.c checkpoint");

  auto all = torch::from_blob(data.data() + 28, {floats}, torch::kFloat32);
  int64_t at = 0;
  auto take = [&](std::vector<int64_t> shape) {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    auto t = all.narrow(0, at, n).view(shape).clone();
    at += n;
    return t;
  };
  std::map<std::string, torch::Tensor> w;
  w["model.embed_tokens.weight"] = take({vocab, dim});
  auto rms_att = take({n_layers, dim});
  auto wq = take({n_layers, dim, dim});
  auto wk = take({n_layers, kv_dim, dim});
  auto wv = take({n_layers, kv_dim, dim});
  auto wo = take({n_layers, dim, dim});
  auto rms_ffn = take({n_layers, dim});
  auto w1 = take({n_layers, hidden, dim});
  auto w2 = take({n_layers, dim, hidden});
  auto w3 = take({n_layers, hidden, dim});
  w["model.norm.weight"] = take({dim});
  at += seq_len * head;  // freq_cis_real and freq_cis_imag: recomputed from rope_theta
  if (!shared) w["lm_head.weight"] = take({vocab, dim});
  for (int64_t l = 0; l < n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    w[p + "input_layernorm.weight"] = rms_att[l].clone();
    w[p + "self_attn.q_proj.weight"] = permute_rope_rows(wq[l], n_heads);
    w[p + "self_attn.k_proj.weight"] = permute_rope_rows(wk[l], n_kv);
    w[p + "self_attn.v_proj.weight"] = wv[l].clone();
    w[p + "self_attn.o_proj.weight"] = wo[l].clone();
    w[p + "post_attention_layernorm.weight"] = rms_ffn[l].clone();
    w[p + "mlp.gate_proj.weight"] = w1[l].clone();
    w[p + "mlp.down_proj.weight"] = w2[l].clone();
    w[p + "mlp.up_proj.weight"] = w3[l].clone();
  }

  // The tokenizer must load and match the model's vocabulary before anything is written.
  auto tok = load_llama2c_tokenizer(tokenizer_bin);
  if (tok->vocab_size() != vocab)
    throw Error(tokenizer_bin, "has " + std::to_string(tok->vocab_size()) + " tokens, the model " + std::to_string(vocab));

  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.vocab_size = vocab;
  c.hidden_size = dim;
  c.intermediate_size = hidden;
  c.num_hidden_layers = n_layers;
  c.num_attention_heads = n_heads;
  c.num_key_value_heads = n_kv;
  c.head_dim = head;
  c.max_position_embeddings = seq_len;
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = shared;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  c.torch_dtype = "float32";
  c.validate(model_bin);

  make_dirs(out_dir);
  save_safetensors(out_dir + "/model.safetensors", w, {{"format", "pt"}, {"source", "llama2.c"}});
  write_file_atomic(out_dir + "/tokenizer.bin", read_file(tokenizer_bin));
  write_file_atomic(out_dir + "/config.json", c.to_json().dump(2) + "\n");
}

}  // namespace xcomp
