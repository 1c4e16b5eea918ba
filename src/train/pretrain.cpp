// Base LM pretraining (windows of a document stream + copy rows) and the copy test.
#include "xcomp/pretrain.h"

#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "adamw.h"
#include "data_parallel.h"
#include "lr_schedule.h"
#include "xcomp/activation_checkpoint.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/model_loader.h"
#include "xcomp/safetensors.h"

namespace xcomp {
namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Row r of step `step`: a window of the concatenated stream, or (copy rows) a passage twice.
std::vector<int64_t> make_row(const std::vector<int64_t>& stream, const std::vector<std::vector<int64_t>>& docs,
                              int64_t len, double copy_fraction, uint64_t seed, int64_t step, int64_t row, int64_t eos) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) * 1000003ull + static_cast<uint64_t>(row));
  const double u = static_cast<double>(rng() >> 11) / 9007199254740992.0;
  std::vector<int64_t> out;
  const auto& d = docs[rng() % docs.size()];
  // A passage of random length (so copying must find its source by content, not at a fixed
  // offset), then the same passage again, until the row is full.
  const int64_t longest = std::min<int64_t>(static_cast<int64_t>(d.size()), len / 2);
  const int64_t shortest = std::max<int64_t>(1, std::min<int64_t>(longest, len / 8));
  const int64_t half = longest > 0 ? shortest + static_cast<int64_t>(rng() % (longest - shortest + 1)) : 0;
  if (u < copy_fraction && half > 0) {
    const int64_t start = static_cast<int64_t>(d.size()) > half ? static_cast<int64_t>(rng() % (d.size() - half + 1)) : 0;
    std::vector<int64_t> passage(d.begin() + start, d.begin() + start + half);
    while (static_cast<int64_t>(out.size()) < len + 1) {
      out.insert(out.end(), passage.begin(), passage.end());
      out.push_back(eos);
    }
    out.resize(static_cast<size_t>(len + 1));
    return out;
  }
  const int64_t start = static_cast<int64_t>(rng() % (stream.size() - static_cast<size_t>(len)));
  return std::vector<int64_t>(stream.begin() + start, stream.begin() + start + len + 1);
}

torch::Tensor lm_loss(LlamaForCausalLM& model, const std::vector<std::vector<int64_t>>& rows) {
  const int64_t b = static_cast<int64_t>(rows.size()), t = static_cast<int64_t>(rows[0].size()) - 1;
  std::vector<int64_t> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  auto all = torch::tensor(flat).view({b, t + 1}).to(model->device());
  KVCache cache;
  auto targets = all.narrow(1, 1, t).reshape({b * t});
  if (model->activation_checkpointing() && torch::GradMode::is_enabled()) {  // logits a chunk at a time
    auto hidden = model->hidden_states(all.narrow(1, 0, t), cache).reshape({b * t, -1});
    const auto& head = model->lm_head ? model->lm_head->weight : model->model->embed_tokens->weight;
    const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 26) / model->config().vocab_size);
    LlamaForCausalLM m = model;
    auto logits_of = [m](const torch::Tensor& h) mutable { return m->logits(h); };
    return chunked_cross_entropy(logits_of, hidden, targets, {head}, chunk);
  }
  auto logits = model->forward(all.narrow(1, 0, t), cache).to(torch::kFloat32);
  return torch::nn::functional::cross_entropy(logits.reshape({b * t, -1}), targets);
}

}  // namespace

PretrainResult pretrain(LlamaForCausalLM& model, const std::vector<std::vector<int64_t>>& docs,
                        const std::vector<std::vector<int64_t>>& val_docs, int64_t eos, const PretrainOptions& o,
                        ProcessGroup* group) {
  ProcessGroup solo(DistributedOptions{});
  ProcessGroup& g = group != nullptr ? *group : solo;
  const int world = g.world_size(), rank = g.rank();
  const bool main_rank = g.is_main();  // the one that writes files and prints progress
  if (docs.empty()) throw Error("pretrain", "no training documents");
  if (o.out_dir.empty()) throw Error("--out", "an output folder is required");
  if (o.seq_len < 2 || o.batch_size <= 0 || o.max_steps <= 0) throw Error("pretrain", "seq_len >= 2, batch and steps > 0");
  if (o.seq_len > model->config().max_position_embeddings)
    throw Error("--seq-len", std::to_string(o.seq_len) + " exceeds the model's max_position_embeddings " +
                                 std::to_string(model->config().max_position_embeddings),
                "raise it in config.json, or train shorter rows");
  // step % 0 is a division by zero (the process died of SIGFPE after its first step).
  if (o.eval_every < 1) throw Error("--eval-every", "is " + std::to_string(o.eval_every), "must be >= 1");
  if (o.save_every < 1) throw Error("--save-every", "is " + std::to_string(o.save_every), "must be >= 1");
  if (o.val_rows < 0) throw Error("pretrain", "val_rows is " + std::to_string(o.val_rows), "must be >= 0");
  check_optimizer_options(o.lr, o.warmup_steps, o.weight_decay, o.clip_norm);
  if (!(o.min_lr_ratio >= 0.0 && o.min_lr_ratio <= 1.0)) throw Error("--min-lr-ratio", "must be within [0, 1]");
  if (!(o.copy_fraction >= 0.0 && o.copy_fraction <= 1.0)) throw Error("--copy-fraction", "must be within [0, 1]");
  std::vector<int64_t> stream;
  for (const auto& d : docs) stream.insert(stream.end(), d.begin(), d.end());
  model->set_activation_checkpointing(o.activation_checkpointing);
  if (static_cast<int64_t>(stream.size()) <= o.seq_len + 1) throw Error("pretrain", "the corpus is shorter than one row");
  std::vector<int64_t> val_stream;
  for (const auto& d : val_docs) val_stream.insert(val_stream.end(), d.begin(), d.end());
  std::vector<std::vector<int64_t>> val_rows;
  for (int64_t i = 0; i < o.val_rows && static_cast<int64_t>(val_stream.size()) >= (i + 1) * (o.seq_len + 1); ++i)
    val_rows.emplace_back(val_stream.begin() + i * (o.seq_len + 1), val_stream.begin() + (i + 1) * (o.seq_len + 1));

  if (main_rank) make_dirs(o.out_dir);
  std::map<std::string, torch::Tensor> params;
  for (auto& p : model->named_parameters()) {
    p.value().set_requires_grad(true);
    params[p.key()] = p.value();
  }
  AdamWOptions ao;
  ao.beta2 = 0.95;
  ao.weight_decay = o.weight_decay;
  AdamW adam(params, ao);
  int64_t step = 0;
  const std::string ckpt = o.out_dir + "/checkpoint", log_path = o.out_dir + "/pretrain_log.jsonl";
  // Data parallel: every rank must compute its share of the same steps.
  int64_t numel = 0;
  for (const auto& [n, p] : params) numel += p.numel();
  g.check_agree({{"the training tokens", static_cast<int64_t>(stream.size())},
                 {"the validation rows", static_cast<int64_t>(val_rows.size())},
                 {"--seq-len", o.seq_len},
                 {"--batch-size", o.batch_size},
                 {"--steps", o.max_steps},
                 {"--seed", static_cast<int64_t>(o.seed)},
                 {"--resume", o.resume ? 1 : 0},
                 {"the model's parameters", numel}});
  // Rank 0 reads the checkpoint and hands it on (with the initial weights, whatever they were).
  g.run_and_agree("--resume", [&] {
    if (!main_rank || !o.resume) return;
    if (!path_exists(ckpt + "/state.json")) throw Error(ckpt, "no checkpoint to resume from");
    const std::string state_path = ckpt + "/state.json";
    const auto st = parse_json_line(read_file(state_path), state_path);
    uint64_t saved_seed = 0;
    try {
      step = st.at("step").get<int64_t>();
      saved_seed = st.at("seed").get<uint64_t>();
    } catch (const nlohmann::json::exception& e) {
      throw Error(state_path, std::string("step or seed is missing or not an integer: ") + e.what(),
                  "the checkpoint is damaged: start again");
    }
    if (saved_seed != o.seed) throw Error(ckpt, "was made with another --seed");
    SafetensorsFile w(ckpt + "/model.safetensors"), opt(ckpt + "/optimizer.safetensors");
    torch::NoGradGuard ng;
    for (auto& [n, p] : params) p.copy_(w.get(n));
    std::map<std::string, torch::Tensor> moments;
    for (const auto& n : opt.names()) moments[n] = opt.get(n);
    adam.load_state(moments, ckpt + "/optimizer.safetensors");
    if (o.progress) std::fprintf(stderr, "resuming from step %lld\n", (long long)step);
  });
  broadcast_start(g, params, adam, {&step});
  std::ofstream log;
  if (main_rank) log.open(log_path, o.resume ? std::ios::app : std::ios::trunc);
  auto save_checkpoint = [&]() {
    const std::string tmp = ckpt + ".tmp", old = ckpt + ".old";
    remove_tree(tmp);
    make_dirs(tmp);
    save_safetensors(tmp + "/model.safetensors", params, {{"step", std::to_string(step)}});
    save_safetensors(tmp + "/optimizer.safetensors", adam.state(), {{"step", std::to_string(step)}});
    write_file_atomic(tmp + "/state.json", nlohmann::json({{"step", step}, {"seed", o.seed}}).dump() + "\n");
    remove_tree(old);
    if (path_exists(ckpt)) rename_path(ckpt, old);
    rename_path(tmp, ckpt);
    remove_tree(old);
  };
  PretrainResult r;
  const double t0 = now_s();
  const int64_t first = step;
  const bool tty = isatty(fileno(stderr)) != 0;
  while (step < o.max_steps) {
    model->train();
    // The world's batch is batch_size x world rows (a row a function of the step and its
    // index); rank r computes rows [r B, (r + 1) B). Rows are of equal length, so the mean of
    // the ranks' mean losses is the whole batch's.
    std::vector<std::vector<int64_t>> rows;
    for (int64_t i = rank * o.batch_size; i < (rank + 1) * o.batch_size; ++i)
      rows.push_back(make_row(stream, docs, o.seq_len, o.copy_fraction, o.seed, step, i, eos));
    auto loss = lm_loss(model, rows);
    if (world > 1) loss = loss / static_cast<double>(world);
    loss.backward();
    auto loss_value = loss.detach().to(torch::kCPU, torch::kDouble).reshape({1});
    sum_gradients(g, params, {loss_value});
    ++step;
    const double lr = warmup_decay_lr(o.lr, step, o.warmup_steps, o.max_steps, "cosine", 0, o.min_lr_ratio);
    adam.clip_grad_norm(o.clip_norm);
    adam.step(step, lr);
    r.last_loss = loss_value.item<double>();
    const double elapsed = now_s() - t0;
    const double tok_s = static_cast<double>((step - first) * o.batch_size * world * o.seq_len) / std::max(elapsed, 1e-9);
    if (main_rank)
      log << nlohmann::json({{"step", step}, {"loss", r.last_loss}, {"lr", lr}, {"tokens_per_s", tok_s}, {"world_size", world}})
                 .dump()
          << "\n";
    if ((step % o.eval_every == 0 || step == o.max_steps) && !val_rows.empty()) {
      torch::NoGradGuard ng;
      model->eval();
      // Chunks of 8 rows, chunk c on rank c mod world; the sums over the ranks.
      auto sums = torch::zeros({1}, torch::kDouble);
      for (size_t i = 0, chunk = 0; i < val_rows.size(); i += 8, ++chunk)
        if (static_cast<int>(chunk % static_cast<size_t>(world)) == rank)
          sums[0] += lm_loss(model, std::vector<std::vector<int64_t>>(val_rows.begin() + i,
                                                                     val_rows.begin() + std::min(val_rows.size(), i + 8)))
                         .item<double>() *
                     static_cast<double>(std::min<size_t>(8, val_rows.size() - i));
      g.all_reduce_sum({sums});
      r.last_val_loss = sums[0].item<double>() / static_cast<double>(val_rows.size());
      if (main_rank)
        log << nlohmann::json({{"step", step}, {"val_loss", r.last_val_loss}, {"val_ppl", std::exp(r.last_val_loss)}}).dump()
            << "\n";
    }
    if (main_rank) log.flush();
    const int64_t every = std::max<int64_t>(1, o.max_steps / 50);
    if (o.progress && main_rank && (tty || step % every == 0 || step == o.max_steps)) {
      const double eta = elapsed / static_cast<double>(step - first) * static_cast<double>(o.max_steps - step);
      std::fprintf(stderr, "%sstep %lld/%lld  loss %.4f  val %.4f  lr %.2e  %.0f tok/s  ETA %dm%02ds   %s", tty ? "\r" : "",
                   (long long)step, (long long)o.max_steps, r.last_loss, r.last_val_loss, lr, tok_s, (int)eta / 60,
                   (int)eta % 60, tty ? "" : "\n");
      std::fflush(stderr);
    }
    if (main_rank && (step % o.save_every == 0 || step == o.max_steps)) save_checkpoint();
  }
  if (o.progress && main_rank && tty) std::fprintf(stderr, "\n");
  model->eval();
  model->set_activation_checkpointing(false);
  for (auto& [n, p] : params) p.set_requires_grad(false);
  if (main_rank) save_model(model, o.out_dir);
  r.steps = step;
  return r;
}

CopyTestResult copy_test(LlamaForCausalLM& model, const std::vector<std::vector<int64_t>>& texts, int64_t length,
                         int64_t bos, int64_t eos, int64_t limit) {
  const int64_t positions = model->config().max_position_embeddings;
  if (length < 1) throw Error("--length", "is " + std::to_string(length), "the copy test needs texts of >= 1 token");
  if (2 * length + 2 > positions)
    throw Error("--length", "[BOS] text [EOS] text of " + std::to_string(length) + " tokens needs " +
                                std::to_string(2 * length + 2) + " positions, the model has " + std::to_string(positions),
                "at most " + std::to_string((positions - 2) / 2) + " here");
  if (limit < 0) throw Error("--limit", "is " + std::to_string(limit), "must be >= 0 (0: all)");
  torch::NoGradGuard ng;
  CopyTestResult r;
  for (const auto& t : texts) {
    if (static_cast<int64_t>(t.size()) < length) continue;
    if (limit > 0 && r.texts >= limit) break;
    std::vector<int64_t> seq{bos};
    seq.insert(seq.end(), t.begin(), t.begin() + length);
    seq.push_back(eos);
    seq.insert(seq.end(), t.begin(), t.begin() + length);
    auto ids = torch::tensor(seq).view({1, -1}).to(model->device());
    KVCache cache;
    auto logp = model->forward(ids, cache)[0].to(torch::kFloat32).log_softmax(-1).to(torch::kCPU);  // [T, vocab]
    double first = 0, second = 0, top1 = 0;
    for (int64_t j = 1; j <= length; ++j) first -= logp[j - 1][seq[j]].item<double>();
    for (int64_t j = length + 2; j < static_cast<int64_t>(seq.size()); ++j) {
      second -= logp[j - 1][seq[j]].item<double>();
      top1 += logp[j - 1].argmax().item<int64_t>() == seq[j];
    }
    r.first_loss += first / length;
    r.second_loss += second / length;
    r.second_top1 += top1 / length;
    ++r.texts;
  }
  if (r.texts == 0)
    throw Error("--data", "has no text of at least " + std::to_string(length) + " tokens", "give a shorter --length");
  r.first_loss /= r.texts;
  r.second_loss /= r.texts;
  r.second_top1 /= r.texts;
  return r;
}

}  // namespace xcomp
