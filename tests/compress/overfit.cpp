// Overfitting four sentences to exact regeneration (see overfit.h).
#include "overfit.h"

#include <torch/torch.h>

#include "test_util.h"
#include "xcomp/compressor.h"
#include "xcomp/generate.h"
#include "xcomp/train.h"

namespace xcomp::test {

OverfitResult overfit_four_sentences(const std::string& method, const LoadOptions& base_options) {
  auto m = load_model(stories_model_dir(), base_options);
  auto& tok = *m.tokenizer;
  OverfitResult r;
  r.texts = {"Tom had a red ball.", "The cat sat on a big mat.", "Lily likes to sing songs.", "A bird flew over the sea."};
  std::vector<Example> data;
  for (const auto& t : r.texts) data.push_back(make_regen_example(tok.encode(t), tok.bos_id(), tok.eos_id()));
  CompressorConfig cfg;
  cfg.method = method;
  cfg.memory_tokens = 4;
  cfg.context_length = 24;
  cfg.encoder = "full";
  cfg.memory_init = "embeddings";
  Compressor c(m.model, cfg, 3);
  TrainOptions o;
  o.lr = 3e-3;
  o.memory_lr_scale = 10;
  o.warmup_steps = 10;
  o.max_steps = 300;
  o.batch_size = 4;
  o.progress = false;
  o.out_dir = temp_dir("overfit_" + method);
  r.final_loss = train_compressor(c, data, {}, o).last_loss;
  torch::NoGradGuard ng;
  for (const auto& e : data) {
    GenerationOptions g;
    g.max_new_tokens = static_cast<int64_t>(e.context.size());
    g.stop_tokens = {tok.eos_id()};
    auto out = generate_compressed(m.model, c.compress({e.context}), /*regenerate=*/true, {{tok.bos_id()}}, g)[0];
    if (!out.empty() && out.back() == tok.eos_id()) out.pop_back();
    r.regenerated.push_back(tok.decode(out));
  }
  return r;
}

}  // namespace xcomp::test
