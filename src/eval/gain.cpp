// The gain of a compressed prompt: teacher-forced loss of the frozen base with the prompt against
// the base alone, on the same target tokens. The default model's shipping rule is built on it.
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <unistd.h>

#include "xcomp/compressor.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/eval.h"
#include "xcomp/model_loader.h"
#include "xcomp/model_ops.h"
#include "xcomp/train.h"
#include "sharding.h"
#include "stored_prompt.h"

namespace xcomp {
namespace {

int64_t target_count(const Example& s) {
  return static_cast<int64_t>(s.sequence.size()) - std::max<int64_t>(s.loss_from, 1);
}

// Summed cross-entropy of the base alone over one sequence's targets (no prefix: the sequence
// starts at position 0, as a prompt without context would).
double plain_loss_sum(LlamaForCausalLM& base, const Example& s) {
  KVCache cache;
  auto ids = torch::tensor(s.sequence).view({1, -1}).to(base->device());
  auto logp = base->forward(ids, cache)[0].to(torch::kFloat32).log_softmax(-1);  // [t, vocab]
  const int64_t from = std::max<int64_t>(s.loss_from, 1), t = static_cast<int64_t>(s.sequence.size());
  auto rows = torch::arange(from - 1, t - 1).to(logp.device());
  auto targets = torch::tensor(std::vector<int64_t>(s.sequence.begin() + from, s.sequence.end())).to(logp.device());
  return -logp.index_select(0, rows).gather(1, targets.unsqueeze(1)).sum().item<double>();
}

}  // namespace

std::vector<GainRow> eval_gain(const std::string& model_dir, const std::vector<std::string>& compressors,
                               const std::string& objective, const std::vector<std::string>& texts,
                               const std::vector<QaExample>& qa_examples, int64_t regen_length,
                               const EvalOptions& o) {
  if (objective != "regen" && objective != "qa") throw Error("gain", "objective '" + objective + "' must be regen or qa");
  if (objective == "regen" && regen_length <= 0) throw Error("gain", "the regeneration length must be positive");
  check_eval_options(o);
  torch::NoGradGuard ng;
  LoadOptions lo;
  lo.device = o.device;
  lo.dtype = o.dtype;
  lo.weights_dtype = o.weights_dtype;
  std::vector<GainRow> rows;
  // The base alone scores the same sequences for every compressor (they depend on the data and
  // the tokenizer only; truncation touches contexts): computed for the first, then reused.
  std::vector<double> alone_loss;  // [examples] summed over each one's targets (NaN: not yet)
  auto plain = load_model(model_dir, lo);
  auto& tok = *plain.tokenizer;
  for (const auto& dir : compressors) {
    LoadedModel m;
    m.model = share_weights(plain.model);  // the same weights in modules of its own, for its LoRA
    auto c = Compressor::load(dir, m.model);
    const int64_t ctx_len = c->config().context_length;
    GainRow row;
    row.compressor = path_basename(dir);
    row.objective = objective;
    std::vector<Example> samples;
    const size_t limit = o.limit > 0 ? static_cast<size_t>(o.limit) : SIZE_MAX;
    if (objective == "regen") {
      if (regen_length > ctx_len)
        throw Error(dir, "regeneration length " + std::to_string(regen_length) + " exceeds the context length " +
                             std::to_string(ctx_len));
      for (const auto& t : texts) {
        if (samples.size() >= limit) break;
        auto ids = tok.encode(t);
        if (static_cast<int64_t>(ids.size()) < regen_length) continue;
        ids.resize(static_cast<size_t>(regen_length));
        samples.push_back(make_regen_example(ids, tok.bos_id(), tok.eos_id()));
      }
    } else {
      for (const auto& q : qa_examples) {
        if (samples.size() >= limit) break;
        if (q.answers.empty()) continue;
        auto ids = tok.encode(q.context);
        if (ids.empty()) continue;
        if (static_cast<int64_t>(ids.size()) > ctx_len) {
          ids.resize(static_cast<size_t>(ctx_len));
          ++row.truncated;
        }
        samples.push_back(make_qa_example(tok, ids, q.question, q.answers[0], tok.eos_id(), c->config().question_template));
      }
    }
    if (samples.empty())
      throw Error("gain", "no usable example for " + row.compressor,
                  objective == "regen" ? "give texts of at least " + std::to_string(regen_length) + " tokens"
                                       : "give QA examples with answers");
    // Same data and limit give the same examples in the same order: only their count can differ.
    if (alone_loss.size() != samples.size()) alone_loss.assign(samples.size(), std::nan(""));
    // Per batch (this rank's: every P-th with a group): the summed losses and the target count.
    std::map<int64_t, eval_detail::Item> mine;
    size_t batch_index = 0;
    const bool tty = isatty(fileno(stderr)) != 0;
    for (size_t i = 0; i < samples.size(); i += static_cast<size_t>(o.batch_size), ++batch_index) {
      const size_t end = std::min(samples.size(), i + static_cast<size_t>(o.batch_size));
      if (!eval_detail::owns_batch(o.group, batch_index)) continue;
      double alone_sum = 0;
      std::vector<std::vector<int64_t>> contexts, seqs;
      std::vector<int64_t> from;
      int64_t batch_targets = 0;
      for (size_t k = i; k < end; ++k) {
        contexts.push_back(samples[k].context);
        seqs.push_back(samples[k].sequence);
        from.push_back(samples[k].loss_from);
        batch_targets += target_count(samples[k]);
        if (std::isnan(alone_loss[k])) alone_loss[k] = plain_loss_sum(m.model, samples[k]);
        alone_sum += alone_loss[k];
      }
      // decoder_loss is the mean over the batch's targets: weight it back to a sum.
      const double with_sum = c->decoder_loss(eval_detail::stored(c->compress(contexts), o), objective == "regen", seqs, from).item<double>() *
                              static_cast<double>(batch_targets);
      mine[static_cast<int64_t>(batch_index)] = {{with_sum, alone_sum, static_cast<double>(batch_targets)}, ""};
      if (o.progress && eval_detail::prints(o.group) && (tty || end == samples.size()))
        std::fprintf(stderr, "%sgain %s: %zu/%zu   %s", tty ? "\r" : "", row.compressor.c_str(), end, samples.size(),
                     end == samples.size() ? "\n" : "");
    }
    const int64_t n_batches = static_cast<int64_t>((samples.size() + static_cast<size_t>(o.batch_size) - 1) /
                                                   static_cast<size_t>(o.batch_size));
    if (o.progress && eval_detail::prints(o.group) && !eval_detail::owns_batch(o.group, n_batches - 1))
      std::fprintf(stderr, "%sgain %s: %zu/%zu   \n", tty ? "\r" : "", row.compressor.c_str(), samples.size(),
                   samples.size());  // this rank's last batch was not the last
    double with_sum = 0, alone_sum = 0;
    for (const auto& batch : eval_detail::gather_items(o.group, mine, n_batches)) {
      with_sum += batch.values[0];
      alone_sum += batch.values[1];
      row.targets += static_cast<int64_t>(batch.values[2]);
    }
    row.count = static_cast<int64_t>(samples.size());
    row.loss_with = with_sum / static_cast<double>(row.targets);
    row.loss_alone = alone_sum / static_cast<double>(row.targets);
    rows.push_back(row);
  }
  return rows;
}

}  // namespace xcomp
