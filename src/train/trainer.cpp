// The training loop: AdamW (decoupled weight decay) with warm-up, gradient accumulation and
// clipping; exact-resume checkpoints; validation; progress bar and JSONL log.
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <unistd.h>

#include "xcomp/distributed.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/safetensors.h"
#include "xcomp/train.h"
#include "adamw.h"
#include "data_parallel.h"
#include "lr_schedule.h"

namespace xcomp {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The data order of an epoch: a Fisher-Yates shuffle driven by mt19937_64 (fully specified, so
// the order is the same on every platform and after a resume).
std::vector<size_t> epoch_order(size_t n, uint64_t seed, int64_t epoch) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 rng(seed * 1000003ull + static_cast<uint64_t>(epoch));
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  return order;
}

std::string fmt_time(double s) {
  char buf[32];
  int t = static_cast<int>(s);
  if (t >= 3600) std::snprintf(buf, sizeof(buf), "%dh%02dm", t / 3600, (t / 60) % 60);
  else std::snprintf(buf, sizeof(buf), "%dm%02ds", t / 60, t % 60);
  return buf;
}

// Training units: runs of consecutive examples with the same context, cut into groups of at most
// `per_context` (each example alone when per_context is 1).
std::vector<std::vector<size_t>> context_groups(const std::vector<Example>& train, int64_t per_context) {
  std::vector<std::vector<size_t>> units;
  for (size_t i = 0; i < train.size(); ++i) {
    if (units.empty() || static_cast<int64_t>(units.back().size()) >= per_context ||
        train[units.back().front()].context != train[i].context)
      units.emplace_back();
    units.back().push_back(i);
  }
  return units;
}

// Target tokens of an example (those decoder_loss averages over).
int64_t target_count(const Example& e) {
  return static_cast<int64_t>(e.sequence.size()) - std::max<int64_t>(e.loss_from, 1);
}

}  // namespace

double scheduled_lr(const TrainOptions& o, int64_t step) {
  if (o.lr_schedule != "constant" && o.lr_schedule != "linear" && o.lr_schedule != "cosine")
    throw Error("--lr-schedule", "unknown schedule '" + o.lr_schedule + "'", "use constant, linear or cosine");
  if (o.decay_steps < 0) throw Error("--decay-steps", "must be >= 0");
  if (!(o.min_lr_ratio >= 0.0 && o.min_lr_ratio <= 1.0)) throw Error("--min-lr-ratio", "must be within [0, 1]");
  return warmup_decay_lr(o.lr, step, o.warmup_steps, o.max_steps, o.lr_schedule, o.decay_steps, o.min_lr_ratio);
}

void check_train_options(const TrainOptions& o) {
  if (o.batch_size <= 0 || o.grad_accum <= 0 || o.max_steps <= 0) throw Error("train", "batch size, accumulation and steps must be positive");
  if (o.questions_per_context <= 0) throw Error("--questions-per-context", "must be positive");
  // step % 0 is a division by zero (the process died of SIGFPE after its first step).
  if (o.eval_every < 1) throw Error("--eval-every", "is " + std::to_string(o.eval_every), "must be >= 1");
  if (o.save_every < 1) throw Error("--save-every", "is " + std::to_string(o.save_every), "must be >= 1");
  if (o.val_examples < 0) throw Error("--val-examples", "is " + std::to_string(o.val_examples), "must be >= 0 (0: all)");
  if (!(o.time_limit_s >= 0) || !std::isfinite(o.time_limit_s))
    throw Error("--time-limit", "is " + std::to_string(o.time_limit_s), "must be a number of seconds >= 0 (0: none)");
  if (o.objective != "regen" && o.objective != "qa") throw Error("--objective", "must be regen or qa");
  // A NaN or negative rate trains nothing or diverges, and the run would save what it made.
  check_optimizer_options(o.lr, o.warmup_steps, o.weight_decay, o.clip_norm);
  if (!(std::isfinite(o.memory_lr_scale) && o.memory_lr_scale >= 0))
    throw Error("--memory-lr-scale", "is " + std::to_string(o.memory_lr_scale), "must be a finite number >= 0");
  if (!(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1 && o.eps > 0 && std::isfinite(o.eps)))
    throw Error("train", "AdamW's betas must be in [0, 1) and eps a positive number");
  scheduled_lr(o, 1);  // the schedule's options
}

double evaluate_loss(Compressor& c, const std::vector<Example>& examples, int64_t batch_size, bool regenerate,
                     ProcessGroup* group) {
  torch::NoGradGuard ng;
  c.set_training(false);
  const int world = group != nullptr ? group->world_size() : 1, rank = group != nullptr ? group->rank() : 0;
  double total = 0;
  int64_t weight = 0;
  for (size_t i = 0, batch = 0; i < examples.size(); i += static_cast<size_t>(batch_size), ++batch) {
    if (static_cast<int>(batch % static_cast<size_t>(world)) != rank) continue;  // another rank's batch
    std::vector<std::vector<int64_t>> contexts, seqs;
    std::vector<int64_t> from;
    int64_t targets = 0;
    for (size_t k = i; k < std::min(examples.size(), i + static_cast<size_t>(batch_size)); ++k) {
      contexts.push_back(examples[k].context);
      seqs.push_back(examples[k].sequence);
      from.push_back(examples[k].loss_from);
      targets += target_count(examples[k]);
    }
    auto prompt = c.compress(contexts);
    total += c.decoder_loss(prompt, regenerate, seqs, from).item<double>() * static_cast<double>(targets);
    weight += targets;
  }
  if (world > 1) {
    auto sums = torch::tensor({total, static_cast<double>(weight)}, torch::kDouble);
    group->all_reduce_sum({sums});
    total = sums[0].item<double>();
    weight = static_cast<int64_t>(sums[1].item<double>());
  }
  return weight > 0 ? total / static_cast<double>(weight) : 0.0;
}

TrainResult train_compressor(Compressor& c, const std::vector<Example>& train, const std::vector<Example>& val_all,
                             const TrainOptions& o, ProcessGroup* group) {
  ProcessGroup solo(DistributedOptions{});
  ProcessGroup& g = group != nullptr ? *group : solo;
  const int world = g.world_size(), rank = g.rank();
  const bool main_rank = g.is_main();  // the one that writes files and prints progress
  if (train.empty()) throw Error("train", "no training examples");
  if (o.out_dir.empty()) throw Error("--out", "an output folder is required");
  check_train_options(o);  // before any file is touched
  const auto units = context_groups(train, o.questions_per_context);
  const bool regenerate = o.objective == "regen";
  if (regenerate && c.config().method == "icae" && c.config().regeneration_prefix == "none")
    throw Error("--objective regen", "this ICAE compressor has no AE embedding (regeneration_prefix 'none')",
                "train it on qa, or regenerate with one that has one");
  if (main_rank) make_dirs(o.out_dir);
  std::vector<Example> val(val_all.begin(), val_all.begin() + static_cast<std::ptrdiff_t>(
                                                  o.val_examples > 0 ? std::min<size_t>(val_all.size(), o.val_examples) : val_all.size()));

  c.set_activation_checkpointing(o.activation_checkpointing);

  // Parameters and AdamW state.
  auto state = c.trainable_state();
  AdamWOptions adam_options;
  adam_options.beta1 = o.beta1;
  adam_options.beta2 = o.beta2;
  adam_options.eps = o.eps;
  adam_options.weight_decay = o.weight_decay;
  AdamW adam(state, adam_options);
  std::map<std::string, double> lr_scale;
  for (const auto& [n, p] : state)
    for (const auto& m : c.memory_parameters())
      if (m.is_same(p)) lr_scale[n] = o.memory_lr_scale;
  int64_t step = 0, epoch = 0, cursor = 0;
  const std::string ckpt_dir = o.out_dir + "/checkpoint";
  const std::string log_path = o.out_dir + "/train_log.jsonl";
  // Data parallel: every rank must compute its share of the same steps.
  int64_t trainable_numel = 0;
  for (const auto& [n, p] : state) trainable_numel += p.numel();
  g.check_agree({{"the training examples", static_cast<int64_t>(train.size())},
                 {"the validation examples", static_cast<int64_t>(val.size())},
                 {"--batch-size", o.batch_size},
                 {"--grad-accum", o.grad_accum},
                 {"--steps", o.max_steps},
                 {"--seed", static_cast<int64_t>(o.seed)},
                 {"--questions-per-context", o.questions_per_context},
                 {"--resume", o.resume ? 1 : 0},
                 {"the trainable parameters", trainable_numel}});
  // Rank 0 reads the checkpoint (the others need not see its files) and hands it on below.
  g.run_and_agree("--resume", [&] {
    if (!main_rank) return;
    if (o.resume) {
      if (!path_exists(ckpt_dir + "/state.json")) throw Error(ckpt_dir, "no checkpoint to resume from");
      const std::string state_path = ckpt_dir + "/state.json";
      const auto st = parse_json_line(read_file(state_path), state_path);
      int64_t saved_examples = 0, saved_questions = 1, saved_steps = o.max_steps;
      uint64_t saved_seed = 0;
      std::string saved_schedule;
      try {
        step = st.at("step").get<int64_t>();
        epoch = st.at("epoch").get<int64_t>();
        cursor = st.at("cursor").get<int64_t>();
        saved_examples = st.at("train_examples").get<int64_t>();
        saved_seed = st.at("seed").get<uint64_t>();
        saved_questions = st.value("questions_per_context", int64_t{1});
        // Checkpoints before the schedule existed were constant.
        saved_schedule = st.value("lr_schedule", std::string("constant"));
        saved_steps = st.value("max_steps", o.max_steps);
      } catch (const nlohmann::json::exception& e) {
        throw Error(state_path, std::string("a field is missing or of the wrong type: ") + e.what(),
                    "the checkpoint is damaged: start again (or from --init)");
      }
      if (saved_examples != static_cast<int64_t>(train.size()) || saved_seed != o.seed)
        throw Error(ckpt_dir, "was made with other training data or seed", "resume with the same --train and --seed");
      // The cursor counts groups of examples: their size must be the same to resume.
      if (saved_questions != o.questions_per_context)
        throw Error(ckpt_dir, "was made with --questions-per-context " + std::to_string(saved_questions),
                    "resume with the same --questions-per-context");
      // A decaying lr follows the step and the run's length: resuming with another schedule or
      // --steps would jump it (a constant one may be extended).
      if (saved_schedule != o.lr_schedule || (saved_schedule != "constant" && saved_steps != o.max_steps))
        throw Error(ckpt_dir, "was made with --lr-schedule " + saved_schedule + " --steps " + std::to_string(saved_steps),
                    "resume a decaying schedule with the same --lr-schedule and --steps (or start a new run with --init)");
      SafetensorsFile params(ckpt_dir + "/trainable.safetensors"), opt(ckpt_dir + "/optimizer.safetensors");
      if (params.metadata().at("step") != std::to_string(step) || opt.metadata().at("step") != std::to_string(step))
        throw Error(ckpt_dir, "files are from different steps (interrupted write?)");
      std::map<std::string, torch::Tensor> loaded;
      for (const auto& n : params.names()) loaded[n] = params.get(n);
      c.load_trainable_state(loaded, ckpt_dir + "/trainable.safetensors");
      std::map<std::string, torch::Tensor> moments;
      for (const auto& n : opt.names()) moments[n] = opt.get(n);
      adam.load_state(moments, ckpt_dir + "/optimizer.safetensors");
      // Keep the log up to the checkpoint's step.
      if (path_exists(log_path)) {
        std::ifstream in(log_path);
        std::string line, kept;
        while (std::getline(in, line)) {
          // A line cut short (the process killed while writing it) is dropped with the others
          // past the checkpoint.
          const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
          if (j.is_object() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() <= step)
            kept += line + "\n";
        }
        write_file_atomic(log_path, kept);
      }
      if (o.progress) std::cerr << "resuming from step " << step << "\n";
    } else if (path_exists(log_path)) {
      write_file_atomic(log_path, "");
    }
  });
  broadcast_start(g, state, adam, {&step, &epoch, &cursor});  // every rank from rank 0's state
  std::ofstream log;
  if (main_rank) log.open(log_path, std::ios::app);

  auto save_checkpoint = [&]() {
    const std::string tmp = ckpt_dir + ".tmp";
    remove_tree(tmp);
    make_dirs(tmp);
    std::map<std::string, std::string> meta{{"step", std::to_string(step)}};
    save_safetensors(tmp + "/trainable.safetensors", c.trainable_state(), meta);
    save_safetensors(tmp + "/optimizer.safetensors", adam.state(), meta);
    nlohmann::json st = {{"step", step}, {"epoch", epoch}, {"cursor", cursor}, {"seed", o.seed},
                         {"train_examples", train.size()}, {"objective", o.objective},
                         {"questions_per_context", o.questions_per_context}, {"lr_schedule", o.lr_schedule},
                         {"max_steps", o.max_steps}, {"world_size", world}};
    write_file_atomic(tmp + "/state.json", st.dump(2) + "\n");
    // Swap in: the old checkpoint stays whole until the new one is complete.
    const std::string old = ckpt_dir + ".old";
    remove_tree(old);
    if (path_exists(ckpt_dir)) rename_path(ckpt_dir, old);
    rename_path(tmp, ckpt_dir);
    remove_tree(old);
  };

  std::vector<size_t> order = epoch_order(units.size(), o.seed, epoch);
  const double t_start = now_s();
  const int64_t first_step = step;
  int64_t tokens_seen = 0;
  TrainResult result;
  while (step < o.max_steps) {
    c.set_training(true);
    // Dropout: the same after a resume; each rank its own masks.
    torch::manual_seed(o.seed * 7919ull + static_cast<uint64_t>(step) + static_cast<uint64_t>(rank) * 104729ull);
    double loss_sum = 0;
    for (int64_t micro = 0; micro < o.grad_accum; ++micro) {
      // The world's micro-batch is batch_size x world units in data order; rank r takes the r-th
      // batch_size of them. Every rank walks all of them (the data position stays in step).
      std::vector<std::vector<int64_t>> contexts, seqs;
      std::vector<int64_t> from, prompt_row;  // prompt_row: each sequence's context in `contexts`
      int64_t world_targets = 0, rank_targets = 0;
      for (int64_t k = 0; k < o.batch_size * world; ++k) {
        if (cursor >= static_cast<int64_t>(order.size())) {
          ++epoch;
          cursor = 0;
          order = epoch_order(units.size(), o.seed, epoch);
        }
        const auto& unit = units[order[static_cast<size_t>(cursor++)]];
        const bool mine = k / o.batch_size == rank;
        tokens_seen += static_cast<int64_t>(train[unit.front()].context.size());
        if (mine) contexts.push_back(train[unit.front()].context);
        for (size_t i : unit) {
          tokens_seen += static_cast<int64_t>(train[i].sequence.size());
          world_targets += target_count(train[i]);
          if (!mine) continue;
          rank_targets += target_count(train[i]);
          seqs.push_back(train[i].sequence);
          from.push_back(train[i].loss_from);
          prompt_row.push_back(static_cast<int64_t>(contexts.size()) - 1);
        }
      }
      auto prompt = c.compress(contexts);
      if (seqs.size() != contexts.size()) prompt = prompt.rows(prompt_row);
      auto loss = c.decoder_loss(prompt, regenerate, seqs, from) / static_cast<double>(o.grad_accum);
      // Data parallel: weighted by this rank's share of the world's targets, so that the summed
      // gradients are those of one process with the whole micro-batch (mean per target token).
      if (world > 1) loss = loss * (static_cast<double>(rank_targets) / static_cast<double>(world_targets));
      loss.backward();
      loss_sum += loss.item<double>();
    }
    if (world > 1) {  // sum the gradients (and the logged loss) over the ranks
      auto loss_total = torch::full({1}, loss_sum, torch::kDouble);
      sum_gradients(g, state, {loss_total});
      loss_sum = loss_total.item<double>();
    }
    ++step;
    const double lr = scheduled_lr(o, step);
    adam.clip_grad_norm(o.clip_norm);
    adam.step(step, lr, lr_scale);
    result.last_loss = loss_sum;
    const double elapsed = now_s() - t_start;
    const double tok_s = tokens_seen / std::max(elapsed, 1e-9);
    const double eta = elapsed / static_cast<double>(step - first_step) * static_cast<double>(o.max_steps - step);
    if (main_rank)
      log << nlohmann::json({{"step", step}, {"loss", loss_sum}, {"lr", lr}, {"epoch", epoch}, {"tokens_per_s", tok_s},
                             {"elapsed_s", elapsed}, {"world_size", world}}).dump() << "\n";
    if (step % o.eval_every == 0 || step == o.max_steps) {
      if (!val.empty()) {
        result.last_val_loss = evaluate_loss(c, val, o.batch_size, regenerate, &g);
        if (main_rank) log << nlohmann::json({{"step", step}, {"val_loss", result.last_val_loss}}).dump() << "\n";
      }
    }
    if (main_rank) log.flush();
    const bool tty = isatty(fileno(stderr)) != 0;
    const int64_t every = std::max<int64_t>(1, o.max_steps / 20);
    if (o.progress && main_rank && (tty || step % every == 0 || step == o.max_steps)) {
      std::fprintf(stderr, "%sstep %lld/%lld  loss %.4f  val %s  lr %.2e  %.0f tok/s  ETA %s   ",
                   tty ? "\r" : "", (long long)step, (long long)o.max_steps, loss_sum,
                   result.last_val_loss >= 0 ? std::to_string(result.last_val_loss).substr(0, 6).c_str() : "-", lr, tok_s,
                   fmt_time(eta).c_str());
      if (!tty) std::fprintf(stderr, "\n");
      std::fflush(stderr);
    }
    // A time budget (under the constant schedule, stopping early is just a shorter run; a decaying
    // one stops partway down, and --resume continues it).
    // (Data parallel: the ranks stop together, when the first of them runs out.)
    bool out_of_time = o.time_limit_s > 0 && elapsed >= o.time_limit_s && step < o.max_steps;
    if (world > 1 && o.time_limit_s > 0) out_of_time = g.max(out_of_time ? 1.0 : 0.0) > 0;
    if (out_of_time && !val.empty() && step % o.eval_every != 0) {
      result.last_val_loss = evaluate_loss(c, val, o.batch_size, regenerate, &g);
      if (main_rank) {
        log << nlohmann::json({{"step", step}, {"val_loss", result.last_val_loss}}).dump() << "\n";
        log.flush();
      }
    }
    if (main_rank && (step % o.save_every == 0 || step == o.max_steps || out_of_time)) save_checkpoint();
    if (out_of_time) {
      if (o.progress && main_rank)
        std::fprintf(stderr, "\ntime limit of %.0f s reached at step %lld; stopping\n", o.time_limit_s, (long long)step);
      break;
    }
  }
  if (o.progress && main_rank && isatty(fileno(stderr))) std::fprintf(stderr, "\n");
  c.set_training(false);
  c.set_activation_checkpointing(false);
  if (main_rank) c.save(o.out_dir);
  result.steps = step;
  return result;
}

}  // namespace xcomp
