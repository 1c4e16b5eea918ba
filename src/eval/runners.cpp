// Evaluation runners: regeneration by length, QA with baselines, efficiency.
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "xcomp/compressor.h"
#include "xcomp/error.h"
#include "xcomp/eval.h"
#include "xcomp/generate.h"
#include "xcomp/io.h"
#include "xcomp/metrics.h"
#include "xcomp/model_loader.h"
#include "xcomp/model_ops.h"
#include "xcomp/text_stream.h"
#include "xcomp/train.h"
#include "sharding.h"
#include "stored_prompt.h"

namespace xcomp {

using eval_detail::gather_items;
using eval_detail::Item;
using eval_detail::owns_batch;
using eval_detail::stored;
namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

LoadedModel load_base(const std::string& model_dir, const EvalOptions& o) {
  LoadOptions lo;
  lo.device = o.device;
  lo.dtype = o.dtype;
  lo.weights_dtype = o.weights_dtype;
  return load_model(model_dir, lo);
}

std::string strip(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\n\r"), e = s.find_last_not_of(" \t\n\r");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// `ids` without the stop token that ended them, if one did.
std::vector<int64_t> without_stop(std::vector<int64_t> ids, const Tokenizer& tok) {
  const auto stops = tok.stop_ids();
  if (!ids.empty() && std::find(stops.begin(), stops.end(), ids.back()) != stops.end())
    ids.pop_back();
  return ids;
}

// Evaluation decodes deterministically (the base-alone floor is one text per length).
void check_eval_decoding(const EvalOptions& o) {
  check_eval_options(o);
  if (o.decoding.temperature > 0.0f)
    throw Error("decoding", "evaluation does not sample", "use greedy or beam search (temperature 0)");
}

void progress(const EvalOptions& o, const std::string& what, size_t done, size_t total) {
  if (o.progress && eval_detail::prints(o.group)) std::fprintf(stderr, "\r%s: %zu/%zu   %s", what.c_str(), done, total, done == total ? "\n" : "");
}

}  // namespace

void check_eval_options(const EvalOptions& o) {
  // A batch size below 1 wrapped around as a size_t: every text fell in no batch and scored 0.
  if (o.batch_size < 1) throw Error("--batch-size", "is " + std::to_string(o.batch_size), "must be >= 1");
  if (o.limit < 0) throw Error("--limit", "is " + std::to_string(o.limit), "must be >= 0 (0: all)");
  check_generation_options(o.decoding);
}

std::vector<RegenRow> eval_regen(const std::string& model_dir, const std::vector<std::string>& compressors,
                                 const std::vector<std::string>& texts_in, const std::vector<int64_t>& lengths,
                                 const EvalOptions& o) {
  torch::NoGradGuard ng;
  check_eval_decoding(o);
  if (compressors.empty()) throw Error("--compressors", "no compressor to evaluate");
  if (lengths.empty()) throw Error("--lengths", "no text length given");
  for (int64_t len : lengths)
    if (len < 1) throw Error("--lengths", "has " + std::to_string(len), "text lengths are counts of tokens >= 1");
  std::vector<RegenRow> rows;
  std::vector<std::string> texts = texts_in;
  if (o.limit > 0 && static_cast<int64_t>(texts.size()) > o.limit) texts.resize(static_cast<size_t>(o.limit));
  std::vector<std::vector<int64_t>> ids;  // the texts' tokens: one tokenizer (model_dir's) for every row
  auto plain = load_base(model_dir, o);
  auto& tok = *plain.tokenizer;
  for (const auto& dir : compressors) {
    LoadedModel m;
    m.model = share_weights(plain.model);  // each compressor's LoRA attaches to its own modules
    auto c = Compressor::load(dir, m.model);
    if (ids.empty())
      for (const auto& t : texts) ids.push_back(tok.encode(t));
    for (int64_t len : lengths) {
      if (len > c->config().context_length) {
        std::cerr << "note: " << dir << ": length " << len << " exceeds its context length " << c->config().context_length << "; skipped\n";
        continue;
      }
      std::vector<std::vector<int64_t>> cut;
      for (const auto& t : ids)
        if (static_cast<int64_t>(t.size()) >= len) cut.emplace_back(t.begin(), t.begin() + len);
      RegenRow row{path_basename(dir), c->config().method, c->config().memory_tokens, len, static_cast<int64_t>(cut.size())};
      GenerationOptions g = o.decoding;
      g.max_new_tokens = len;
      g.stop_tokens = tok.stop_ids();
      std::map<int64_t, Item> mine;  // text -> ROUGE-L, BLEU-4, exact, the scripts' ROUGE-L and BLEU-4
      size_t batch_index = 0, shown = 0;
      for (size_t i = 0; i < cut.size(); i += static_cast<size_t>(o.batch_size), ++batch_index) {
        if (!owns_batch(o.group, batch_index)) continue;
        std::vector<std::vector<int64_t>> batch(cut.begin() + i, cut.begin() + std::min(cut.size(), i + static_cast<size_t>(o.batch_size)));
        auto prompt = stored(c->compress(batch), o);
        std::vector<std::vector<int64_t>> starts(batch.size(), std::vector<int64_t>{tok.bos_id()});
        auto outs = generate_compressed(m.model, prompt, /*regenerate=*/true, starts, g);
        for (size_t k = 0; k < batch.size(); ++k) {
          std::string pred = tok.decode(without_stop(outs[k], tok)), ref = tok.decode(batch[k]);
          mine[static_cast<int64_t>(i + k)] = {{rouge_l(pred, ref), bleu4(pred, ref), strip(pred) == strip(ref) ? 1.0 : 0.0,
                                                rouge_l_paper(pred, ref), bleu4_nltk(pred, ref)},
                                               ""};
        }
        shown = std::min(cut.size(), i + batch.size());
        progress(o, row.compressor + " L=" + std::to_string(len), shown, cut.size());
      }
      // (With several ranks this one's last batch need not be the last.)
      if (shown != cut.size()) progress(o, row.compressor + " L=" + std::to_string(len), cut.size(), cut.size());
      for (const auto& item : gather_items(o.group, mine, static_cast<int64_t>(cut.size()))) {
        row.rouge_l += item.values[0];
        row.bleu4 += item.values[1];
        row.exact += item.values[2];
        row.rouge_l_paper += item.values[3];
        row.bleu4_nltk += item.values[4];
      }
      if (row.count > 0) {
        row.rouge_l /= row.count;
        row.bleu4 /= row.count;
        row.exact /= row.count;
        row.rouge_l_paper /= row.count;
        row.bleu4_nltk /= row.count;
      }
      rows.push_back(row);
    }
  }
  if (rows.empty())
    throw Error("--lengths", "every length exceeds the context length of every compressor",
                "the compressors' compressor.json give theirs (context_length)");
  // The floor: what the base writes with no prompt at all (deterministic decoding: one text per length).
  std::set<int64_t> covered;
  for (const auto& r : rows) covered.insert(r.length);
  if (!covered.empty()) {
    auto& m = plain;
    for (int64_t len : covered) {
      RegenRow row{"base alone (no prompt)", "none", 0, len, 0};
      GenerationOptions g = o.decoding;
      g.max_new_tokens = len;
      g.stop_tokens = tok.stop_ids();
      const std::string pred =
          tok.decode(without_stop(generate(m.model, {{tok.bos_id()}}, g)[0], tok));
      for (const auto& t : ids) {
        if (static_cast<int64_t>(t.size()) < len) continue;
        const std::string ref = tok.decode(std::vector<int64_t>(t.begin(), t.begin() + len));
        row.rouge_l += rouge_l(pred, ref);
        row.bleu4 += bleu4(pred, ref);
        row.exact += strip(pred) == strip(ref) ? 1 : 0;
        row.rouge_l_paper += rouge_l_paper(pred, ref);
        row.bleu4_nltk += bleu4_nltk(pred, ref);
        ++row.count;
      }
      if (row.count > 0) {
        row.rouge_l /= row.count;
        row.bleu4 /= row.count;
        row.exact /= row.count;
        row.rouge_l_paper /= row.count;
        row.bleu4_nltk /= row.count;
      }
      rows.push_back(row);
    }
  }
  return rows;
}

std::vector<QaExample> load_qa_examples(const std::string& path, int64_t limit) {
  std::vector<QaExample> out;
  auto answers_of = [](const nlohmann::json& a) {
    std::vector<std::string> v;
    if (a.is_string()) v.push_back(a.get<std::string>());
    else
      for (const auto& x : a) v.push_back(x.is_string() ? x.get<std::string>() : x.at("text").get<std::string>());
    return v;
  };
  for_each_line(path, [&](int64_t n, const std::string& line) {
    const std::string where = path + ":" + std::to_string(n);
    try {
      auto j = nlohmann::json::parse(line);
      if (j.contains("header")) return true;
      if (j.contains("qas")) {
        const std::string ctx = j.at("context").get<std::string>();
        for (const auto& qa : j["qas"]) {
          out.push_back({ctx, qa.at("question").get<std::string>(), answers_of(qa.at("answers"))});
          if (limit > 0 && static_cast<int64_t>(out.size()) >= limit) return false;
        }
      } else {
        out.push_back({j.at("context").get<std::string>(), j.at("question").get<std::string>(), answers_of(j.at("answers"))});
      }
    } catch (const nlohmann::json::exception& e) {
      throw Error(where, std::string("need context, question and answers: ") + e.what());
    }
    return limit <= 0 || static_cast<int64_t>(out.size()) < limit;
  });
  if (out.empty()) throw Error(path, "no questions");
  return out;
}

QaResult eval_qa(const std::string& model_dir, const std::vector<std::string>& compressors,
                 const std::map<std::string, std::vector<QaExample>>& datasets, const EvalOptions& o) {
  torch::NoGradGuard ng;
  check_eval_decoding(o);
  QaResult r;
  for (const auto& kv : datasets) r.datasets.push_back(kv.first);
  auto plain = load_base(model_dir, o);
  auto& tok = *plain.tokenizer;
  int64_t ctx_len = std::min<int64_t>(500, plain.config.max_position_embeddings - 64);
  std::vector<std::unique_ptr<LoadedModel>> bases;
  std::vector<std::unique_ptr<Compressor>> comps;
  for (const auto& dir : compressors) {
    bases.push_back(std::make_unique<LoadedModel>());
    bases.back()->model = share_weights(plain.model);  // one copy of the weights for every compressor
    comps.push_back(Compressor::load(dir, bases.back()->model));
    ctx_len = std::min(ctx_len, comps.back()->config().context_length);
  }
  r.rows = {"zero-shot", "full context"};
  for (size_t i = 0; i < compressors.size(); ++i) {
    r.rows.push_back(path_basename(compressors[i]));
    r.compressor_of[r.rows.back()] = {comps[i]->config().method, comps[i]->config().memory_tokens};
  }
  GenerationOptions g = o.decoding;
  g.max_new_tokens = 46;  // the paper's answer budget
  g.stop_tokens = tok.stop_ids();
  for (const auto& [name, examples] : datasets) {
    // Contexts as ids, truncated alike for every row.
    std::vector<std::vector<int64_t>> ctx;
    std::vector<std::string> ctx_text;
    int64_t truncated = 0;
    for (const auto& e : examples) {
      r.questions[name].push_back({"", e.question, e.answers});
      auto ids = tok.encode(e.context);
      if (static_cast<int64_t>(ids.size()) > ctx_len) {
        ids.resize(static_cast<size_t>(ctx_len));
        ++truncated;
        ctx_text.push_back(tok.decode(ids));
        ctx_text.back().resize(complete_utf8_prefix(ctx_text.back()));  // encodable again
      } else {
        ctx_text.push_back(e.context);
      }
      ctx.push_back(ids);
    }
    // The full-context row's prompts: a context that leaves too little room for the question and
    // the answer in the base's positions is cut further (counted with that row's truncations).
    std::vector<std::vector<int64_t>> full_prompts;
    int64_t full_truncated = truncated;
    for (size_t k = 0; k < examples.size(); ++k) {
      int64_t cut_from = 0;
      full_prompts.push_back(fitted_full_context_prompt(tok, ctx_text[k], examples[k].question,
                                                        plain.config.max_position_embeddings, g.max_new_tokens, &cut_from));
      if (cut_from > 0 && ctx_text[k] == examples[k].context) ++full_truncated;  // not cut at ctx_len already
    }
    for (size_t row = 0; row < r.rows.size(); ++row) {
      const std::string& rn = r.rows[row];
      QaScore s;
      s.truncated = row == 1 ? full_truncated : truncated;
      std::map<int64_t, Item> mine;  // question -> F1, EM, SQuAD F1, SQuAD EM; the prediction
      size_t batch_index = 0, shown = 0;
      for (size_t i = 0; i < examples.size(); i += static_cast<size_t>(o.batch_size), ++batch_index) {
        const size_t end = std::min(examples.size(), i + static_cast<size_t>(o.batch_size));
        if (!owns_batch(o.group, batch_index)) continue;
        std::vector<std::vector<int64_t>> prompts, contexts;
        for (size_t k = i; k < end; ++k) {
          if (row == 0) prompts.push_back(tok.encode("Question: " + examples[k].question + " Answer:", true));
          else if (row == 1) prompts.push_back(full_prompts[k]);
          else prompts.push_back(qa_prompt(tok, examples[k].question, comps[row - 2]->config().question_template));
          contexts.push_back(ctx[k]);
        }
        std::vector<std::vector<int64_t>> outs;
        if (row < 2) outs = generate(plain.model, prompts, g);
        else outs = generate_compressed(bases[row - 2]->model, stored(comps[row - 2]->compress(contexts), o), false, prompts, g);
        for (size_t k = i; k < end; ++k) {
          std::string pred = strip(tok.decode(without_stop(outs[k - i], tok)));
          const auto& golds = examples[k].answers;
          const size_t scripts_gold = gold_by_rouge_l_paper(pred, golds);
          const bool has_gold = scripts_gold < golds.size();
          mine[static_cast<int64_t>(k)] = {{best_over_golds(token_f1, pred, golds), best_over_golds(exact_match, pred, golds),
                                            best_over_golds(squad_f1, pred, golds),
                                            best_over_golds(squad_exact_match, pred, golds),
                                            has_gold ? token_f1_nltk(pred, golds[scripts_gold]) : 0.0,
                                            has_gold ? exact_match(pred, golds[scripts_gold]) : 0.0},
                                           pred};
        }
        shown = end;
        progress(o, name + " / " + rn, end, examples.size());
      }
      if (shown != examples.size()) progress(o, name + " / " + rn, examples.size(), examples.size());
      const auto all = gather_items(o.group, mine, static_cast<int64_t>(examples.size()));
      for (size_t k = 0; k < all.size(); ++k) {
        const double f1 = all[k].values[0];
        s.f1 += f1;
        s.em += all[k].values[1];
        s.squad_f1 += all[k].values[2];
        s.squad_em += all[k].values[3];
        s.script_f1 += all[k].values[4];
        s.script_em += all[k].values[5];
        s.empty += all[k].text.empty();
        ++s.count;
        r.by_length[rn].emplace_back(static_cast<int64_t>(ctx[k].size()), 100 * f1);
        r.answers[rn][name].push_back({all[k].text, 100 * f1});
      }
      if (s.count > 0) {
        const double k = 100.0 / static_cast<double>(s.count);
        s.f1 *= k;
        s.em *= k;
        s.squad_f1 *= k;
        s.squad_em *= k;
        s.script_f1 *= k;
        s.script_em *= k;
      }
      r.scores[rn][name] = s;
    }
  }
  return r;
}

double retained_capability(const QaResult& r, const std::string& row) {
  double sum = 0;
  int n = 0;
  for (const auto& d : r.datasets) {
    const double full = r.scores.at("full context").at(d).f1;
    if (full <= 0) continue;
    sum += r.scores.at(row).at(d).f1 / full;
    ++n;
  }
  return n > 0 ? 100 * sum / n : 0;
}

PairedDifference paired_f1_difference(const QaResult& r, const std::string& row_a, const std::string& row_b,
                                      const std::string& dataset) {
  auto answers_of = [&](const std::string& row) -> const std::vector<QaAnswer>& {
    auto it = r.answers.find(row);
    if (it == r.answers.end() || !it->second.count(dataset))
      throw Error("QA result", "no answers of row '" + row + "' on data set '" + dataset + "'");
    return it->second.at(dataset);
  };
  const auto& a = answers_of(row_a);
  const auto& b = answers_of(row_b);
  if (a.size() != b.size())
    throw Error("QA result", "rows '" + row_a + "' and '" + row_b + "' answered different numbers of questions");
  PairedDifference d;
  d.count = static_cast<int64_t>(a.size());
  if (a.empty()) return d;
  for (size_t i = 0; i < a.size(); ++i) d.mean += a[i].f1 - b[i].f1;
  d.mean /= static_cast<double>(a.size());
  if (a.size() < 2) return d;
  double ss = 0;
  for (size_t i = 0; i < a.size(); ++i) ss += std::pow(a[i].f1 - b[i].f1 - d.mean, 2);
  d.half_width = 1.96 * std::sqrt(ss / static_cast<double>(a.size() - 1)) / std::sqrt(static_cast<double>(a.size()));
  return d;
}

std::vector<EfficiencyRow> eval_efficiency(const std::string& model_dir, const std::vector<std::string>& compressors,
                                           const std::string& text, const std::vector<int64_t>& lengths,
                                           const EvalOptions& o) {
  torch::NoGradGuard ng;
  check_eval_options(o);
  if (lengths.empty()) throw Error("--lengths", "no context length given");
  for (int64_t len : lengths)
    if (len < 1) throw Error("--lengths", "has " + std::to_string(len), "context lengths are counts of tokens >= 1");
  std::vector<EfficiencyRow> rows;
  auto plain = load_base(model_dir, o);
  auto& tok = *plain.tokenizer;
  const auto& c = plain.config;
  GenerationOptions g;
  g.max_new_tokens = 16;  // a fixed answer length, no stop token, so every row decodes the same
  auto question = qa_prompt(tok, "What is this about?");
  // The full-context row reads BOS, the context and the question, then decodes its answer: all
  // within the positions the base was made for (beyond them a run measures nothing it can do).
  const int64_t room = c.max_position_embeddings - 1 - static_cast<int64_t>(question.size()) - g.max_new_tokens;
  for (int64_t len : lengths)
    if (len > room)
      throw Error("--lengths", std::to_string(len) + " context tokens do not fit the base's " +
                                   std::to_string(c.max_position_embeddings) + " positions with the question and answer",
                  "at most " + std::to_string(std::max<int64_t>(room, 0)) + " here");
  std::vector<int64_t> ids;
  while (static_cast<int64_t>(ids.size()) < *std::max_element(lengths.begin(), lengths.end())) {
    auto more = tok.encode(text + " ");
    if (more.empty()) throw Error("efficiency", "the text has no tokens");
    ids.insert(ids.end(), more.begin(), more.end());
  }
  const int64_t kv_bytes_per_token =
      c.num_hidden_layers * 2 * c.num_key_value_heads * c.head_dim * static_cast<int64_t>(torch::elementSize(o.dtype));
  auto best_of_3 = [](const std::function<void()>& f) {
    double best = 1e30;
    for (int i = 0; i < 3; ++i) {
      double t0 = now_ms();
      f();
      best = std::min(best, now_ms() - t0);
    }
    return best;
  };
  const std::string tmp = "/tmp/xcomp_eff_" + std::to_string(::getpid());
  make_dirs(tmp);
  std::vector<std::unique_ptr<LoadedModel>> bases;
  std::vector<std::unique_ptr<Compressor>> comps;
  for (const auto& dir : compressors) {
    bases.push_back(std::make_unique<LoadedModel>());
    bases.back()->model = share_weights(plain.model);  // one copy of the weights for every compressor
    comps.push_back(Compressor::load(dir, bases.back()->model));
  }
  for (int64_t len : lengths) {
    std::vector<int64_t> ctx(ids.begin(), ids.begin() + len);
    std::vector<int64_t> full{tok.bos_id()};
    full.insert(full.end(), ctx.begin(), ctx.end());
    full.insert(full.end(), question.begin(), question.end());
    EfficiencyRow f{"full context", len, len * kv_bytes_per_token, 0, 0};
    f.answer_ms = best_of_3([&] { generate(plain.model, {full}, g); });
    rows.push_back(f);
    for (size_t i = 0; i < comps.size(); ++i) {
      if (len > comps[i]->config().context_length) continue;
      EfficiencyRow e{path_basename(compressors[i]), len, 0, 0, 0};
      CompressedPrompt p;
      e.compress_ms = best_of_3([&] { p = comps[i]->compress({ctx}); });
      e.bytes = p.bytes();
      const std::string file = tmp + "/p.safetensors";
      save_compressed_prompt(file, p);
      e.answer_ms = best_of_3([&] {
        auto q = load_compressed_prompt(file, o.device, o.dtype);
        generate_compressed(bases[i]->model, q, false, {question}, g);
      });
      rows.push_back(e);
    }
    progress(o, "efficiency", rows.size(), lengths.size() * (1 + comps.size()));
  }
  remove_tree(tmp);
  if (o.progress) std::fprintf(stderr, "\n");
  return rows;
}

}  // namespace xcomp
