// The committed default model (models/): every shipped compressor must make its frozen base
// predict better than the base can without it, on arXiv test abstracts it never trained on:
// regeneration compressors lower the loss of the text itself, QA compressors the loss of the
// answer to a question about the text. A compressor whose memory carries nothing fails here.
#include <gtest/gtest.h>

#include <filesystem>

#include "test_util.h"
#include "xcomp/compressor.h"
#include "xcomp/io.h"
#include "xcomp/model_loader.h"
#include "xcomp/qa_synth.h"
#include "xcomp/train.h"

namespace xcomp {
namespace {

const std::string kModels = std::string(XCOMP_SOURCE_DIR) + "/models";

// Mean cross-entropy of seqs[r][j] for j >= from[r], by the base alone (no prefix).
double plain_loss(LlamaForCausalLM& base, const std::vector<std::vector<int64_t>>& seqs, const std::vector<int64_t>& from) {
  double total = 0;
  int64_t count = 0;
  for (size_t r = 0; r < seqs.size(); ++r) {
    KVCache cache;
    auto logits = base->forward(torch::tensor(seqs[r]).view({1, -1}), cache)[0].to(torch::kFloat32).log_softmax(-1);
    for (size_t j = static_cast<size_t>(std::max<int64_t>(from[r], 1)); j < seqs[r].size(); ++j, ++count)
      total -= logits[static_cast<int64_t>(j) - 1][seqs[r][j]].item<double>();
  }
  return total / static_cast<double>(count);
}

TEST(ShippedModels, SlowCompressorsBeatTheBaseAlone) {
  std::vector<std::string> dirs;
  if (std::filesystem::exists(kModels + "/compressors"))
    for (const auto& e : std::filesystem::directory_iterator(kModels + "/compressors"))
      if (std::filesystem::exists(e.path() / "compressor.json")) dirs.push_back(e.path().string());
  if (dirs.empty()) GTEST_SKIP() << "no compressors in " << kModels;
  std::sort(dirs.begin(), dirs.end());
  LoadOptions lo;
  lo.dtype = torch::kBFloat16;
  torch::NoGradGuard ng;
  // 32 test abstracts: their first 96 tokens for regeneration, one synthesised question each for QA.
  // The margin, 0.1 nats/token over ~3,000 (regeneration) or ~300 (QA) target tokens, is far
  // beyond the noise of the sample; the weakest shipped compressor (icae N=1) clears it by 2x.
  auto abstracts = read_jsonl_texts(test::data_dir() + "/arxiv/test.jsonl.gz", 128);
  for (const auto& dir : dirs) {
    auto m = load_model(kModels + "/base", lo);
    auto& tok = *m.tokenizer;
    auto c = Compressor::load(dir, m.model);
    const bool qa = dir.find("-qa-") != std::string::npos;
    std::vector<std::vector<int64_t>> contexts, seqs;
    std::vector<int64_t> from;
    for (const auto& a : abstracts) {
      if (contexts.size() == 32) break;
      auto ids = tok.encode(a);
      if (!qa) {
        if (ids.size() < 96) continue;
        ids.resize(96);
        auto e = make_regen_example(ids, tok.bos_id(), tok.eos_id());
        contexts.push_back(e.context);
        seqs.push_back(e.sequence);
        from.push_back(e.loss_from);
      } else {
        auto pairs = synthesize_qa(a, QaSynthOptions{});
        if (pairs.empty() || static_cast<int64_t>(ids.size()) > c->config().context_length) continue;
        auto e = make_qa_example(tok, ids, pairs[0].question, pairs[0].answer, tok.eos_id());
        contexts.push_back(e.context);
        seqs.push_back(e.sequence);
        from.push_back(e.loss_from);
      }
    }
    ASSERT_EQ(contexts.size(), 32u) << dir;
    const double with_memory = c->decoder_loss(c->compress(contexts), !qa, seqs, from).item<double>();
    const double alone = plain_loss(m.model, seqs, from);
    std::cerr << dir << ": loss " << with_memory << " with the compressed prompt, " << alone << " without\n";
    EXPECT_LT(with_memory, alone - 0.1) << dir << ": the compressed prompt does not help the base";
  }
}

}  // namespace
}  // namespace xcomp
