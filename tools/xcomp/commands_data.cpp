// Data subcommands: make-qa (ArxivQA-style extractive QA synthesised from abstracts).
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/qa_synth.h"

namespace xcomp::cli {
namespace {

struct MakeQaFlags {
  std::vector<std::string> inputs;
  std::string out, report;
  int64_t limit = 0;
  QaSynthOptions options;
};

void make_qa(const MakeQaFlags& f) {
  std::string jsonl;
  std::map<std::string, int64_t> counts;
  int64_t contexts = 0, pairs = 0, empty = 0;
  for (const auto& path : f.inputs) {
    for_each_line(path, [&](int64_t n, const std::string& line) {
      const nlohmann::json j = parse_json_line(line, path + ":" + std::to_string(n));
      const char* field = j.contains("abstract") ? "abstract" : "text";
      if (!j.contains(field) || !j[field].is_string())
        throw Error(path + ":" + std::to_string(n), "needs a string field \"abstract\" or \"text\"");
      const std::string context = j[field].get<std::string>();
      const std::string id = j.contains("id") && j["id"].is_string() ? j["id"].get<std::string>() : path + ":" + std::to_string(n);
      auto qas = synthesize_qa(context, f.options);
      if (qas.empty()) ++empty;
      for (size_t k = 0; k < qas.size(); ++k) {
        const auto& q = qas[k];
        jsonl += nlohmann::json({{"id", id + "#" + std::to_string(k)}, {"context", context}, {"question", q.question},
                                 {"answers", {q.answer}}, {"answer_start", q.answer_start}, {"type", q.type}})
                     .dump() + "\n";
        ++counts[q.type];
        ++pairs;
      }
      ++contexts;
      return f.limit <= 0 || contexts < f.limit;
    });
  }
  if (pairs == 0) throw Error("make-qa", "no question could be made from the inputs");
  write_file_atomic(f.out, jsonl);
  std::cerr << "wrote " << pairs << " QA pairs from " << contexts << " contexts (" << empty << " without any) to " << f.out
            << "\n";
  for (const auto& [t, n] : counts) std::cerr << "  " << t << ": " << n << "\n";
  if (!f.report.empty()) {
    write_qa_type_histogram(counts, f.report);
    std::cerr << "histogram in " << f.report << "/qa_types.{md,png}\n";
  }
}

}  // namespace

void add_data_commands(CLI::App& app) {
  auto* data = app.add_subcommand("data", "data preparation");
  data->require_subcommand(1);
  auto* qa = data->add_subcommand("make-qa", "synthesise extractive QA (ArxivQA-style) from abstracts");
  auto f = std::make_shared<MakeQaFlags>();
  qa->add_option("--input", f->inputs, "JSONL(.gz) with \"abstract\" or \"text\" per line")->required();
  qa->add_option("--out", f->out, "output JSONL: id, context, question, answers, answer_start, type")->required();
  qa->add_option("--report", f->report, "folder for the question-type histogram (qa_types.md, qa_types.png)");
  qa->add_option("--max-per-context", f->options.max_per_context, "questions per abstract")->capture_default_str();
  qa->add_option("--max-answer-words", f->options.max_answer_words, "longest answer in words")->capture_default_str();
  qa->add_option("--seed", f->options.seed, "selection seed")->capture_default_str();
  qa->add_option("--limit", f->limit, "abstracts to read (0: all)")->check(CLI::NonNegativeNumber)->capture_default_str();
  qa->callback([f]() { make_qa(*f); });
}

}  // namespace xcomp::cli
