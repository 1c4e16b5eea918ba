// Markdown/TSV reports and gnuplot PNG plots for the evaluation results.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <sstream>

#include "xcomp/eval.h"
#include "xcomp/io.h"
#include "xcomp/runtime.h"

namespace xcomp {
namespace {

std::string fmt(double v, int digits = 2) {
  char b[32];
  std::snprintf(b, sizeof(b), "%.*f", digits, v);
  return b;
}

// Plots `series` (name -> (x, y) points) as lines into `png` with gnuplot, if it is installed.
void plot(const std::string& dir, const std::string& stem, const std::string& title, const std::string& xlabel,
          const std::string& ylabel, const std::map<std::string, std::vector<std::pair<double, double>>>& series,
          bool logy = false) {
  if (series.empty()) return;
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    std::cerr << "warning: gnuplot is not installed; " << stem << ".png not drawn (the tables are written)\n";
    return;
  }
  std::ostringstream data, gp;
  gp << "set terminal pngcairo size 900,560 font 'sans,11'\nset output '" << dir << "/" << stem << ".png'\n"
     << "set title '" << title << "'\nset xlabel '" << xlabel << "'\nset ylabel '" << ylabel << "'\n"
     << "set grid\nset key outside right\n" << (logy ? "set logscale y\n" : "") << "plot ";
  int index = 0;
  for (const auto& [name, points] : series) {
    for (const auto& [x, y] : points) data << x << "\t" << y << "\n";
    data << "\n\n";
    gp << (index ? ", " : "") << "'" << dir << "/" << stem << ".dat' index " << index << " with linespoints lw 2 title '" << name << "'";
    ++index;
  }
  gp << "\n";
  write_file_atomic(dir + "/" + stem + ".dat", data.str());
  write_file_atomic(dir + "/" + stem + ".gp", gp.str());
  if (std::system(("gnuplot '" + dir + "/" + stem + ".gp' 2>/dev/null").c_str()) != 0)
    std::cerr << "warning: gnuplot failed to draw " << stem << ".png\n";
}

// "Decoding: greedy (the paper's)" or the decoding used, set against the paper's.
std::string decoding_note(const std::string& decoding) {
  return "Decoding: " + decoding + (decoding == "greedy" ? " (the paper's)" : " (the paper decodes greedily)");
}

// "" or a sentence on the prompts' storage (EvalOptions::storage_dtype).
std::string storage_note(std::optional<torch::Dtype> storage_dtype) {
  if (!storage_dtype) return "";
  return " Each compressed prompt was decoded as it reads back from a file stored in " + dtype_name(*storage_dtype) +
         (*storage_dtype == torch::kInt8 ? " (a scale per row)." : ".");
}

}  // namespace

std::string write_regen_report(const std::vector<RegenRow>& rows, const std::string& dir, const std::string& decoding,
                               std::optional<torch::Dtype> storage_dtype) {
  make_dirs(dir);
  std::set<int64_t> lengths;
  std::vector<std::string> names;
  std::map<std::string, std::map<int64_t, RegenRow>> by;
  for (const auto& r : rows) {
    lengths.insert(r.length);
    std::string name = r.method == "none" ? r.compressor
                                          : r.compressor + " (" + r.method + ", N=" + std::to_string(r.memory_tokens) + ")";
    if (!by.count(name)) names.push_back(name);
    by[name][r.length] = r;
  }
  std::ostringstream md, tsv;
  tsv << "compressor\tmethod\tN\tlength\tcount\trouge_l\tbleu4\texact\trouge_l_paper\tbleu4_nltk\n";
  for (const auto& r : rows)
    tsv << r.compressor << "\t" << r.method << "\t" << r.memory_tokens << "\t" << r.length << "\t" << r.count << "\t"
        << r.rouge_l << "\t" << r.bleu4 << "\t" << r.exact << "\t" << r.rouge_l_paper << "\t" << r.bleu4_nltk
        << "\n";
  md << "# Regeneration\n\nRegeneration of texts truncated to each length (max new tokens = length), "
        "like the paper's Figure 4. "
     << decoding_note(decoding) << "." << storage_note(storage_dtype) << "\n";
  for (const auto& [title, metric] : std::vector<std::pair<std::string, int>>{
           {"ROUGE-L F", 0},
           {"ROUGE-L F as the paper's scripts compute it (rouge package: sentences, case and "
            "punctuation kept, word sets)",
            3},
           {"BLEU-4", 1},
           {"BLEU-4 as the paper's scripts compute it (over nltk.word_tokenize tokens, case kept)", 4},
           {"Exact regeneration rate", 2}}) {
    md << "\n## " << title << "\n\n| compressor |";
    for (auto l : lengths) md << " " << l << " |";
    md << "\n|---|";
    for (size_t i = 0; i < lengths.size(); ++i) md << "---|";
    md << "\n";
    for (const auto& n : names) {
      md << "| " << n << " |";
      for (auto l : lengths) {
        auto it = by[n].find(l);
        if (it == by[n].end()) {
          md << " - |";
          continue;
        }
        const auto& r = it->second;
        md << " "
           << fmt(metric == 0   ? r.rouge_l
                  : metric == 1 ? r.bleu4
                  : metric == 2 ? r.exact
                  : metric == 3 ? r.rouge_l_paper
                                : r.bleu4_nltk)
           << " |";
      }
      md << "\n";
    }
  }
  md << "\nTexts per cell: ";
  for (const auto& n : names) {
    for (const auto& [l, r] : by[n]) md << l << ": " << r.count << "; ";
    break;
  }
  md << "\n";
  write_file_atomic(dir + "/regen.md", md.str());
  write_file_atomic(dir + "/regen.tsv", tsv.str());
  std::map<std::string, std::vector<std::pair<double, double>>> series;
  for (const auto& n : names)
    for (const auto& [l, r] : by[n]) series[n].emplace_back(static_cast<double>(l), r.rouge_l);
  plot(dir, "regen_rouge_l", "Regeneration ROUGE-L by text length", "text length (tokens)", "ROUGE-L F", series);
  return md.str();
}

std::string write_qa_report(const QaResult& r, const std::string& dir, const std::string& decoding,
                            std::optional<torch::Dtype> storage_dtype) {
  make_dirs(dir);
  std::ostringstream md, tsv;
  tsv << "row\tdataset\tcount\tf1\tem\tsquad_f1\tsquad_em\ttruncated\tempty\tscript_f1\tscript_em\n";
  for (const auto& row : r.rows)
    for (const auto& d : r.datasets) {
      const auto& s = r.scores.at(row).at(d);
      tsv << row << "\t" << d << "\t" << s.count << "\t" << s.f1 << "\t" << s.em << "\t" << s.squad_f1 << "\t" << s.squad_em
          << "\t" << s.truncated << "\t" << s.empty << "\t" << s.script_f1 << "\t" << s.script_em << "\n";
    }
  // metric 0: the paper's (DESIGN.md), 1: SQuAD-normalised, 2: as the paper's scripts compute them.
  auto table = [&](const std::string& title, int metric) {
    md << "\n## " << title << "\n\n| method |";
    for (const auto& d : r.datasets) md << " " << d << " |";
    md << " average | retained |\n|---|";
    for (size_t i = 0; i < r.datasets.size() + 2; ++i) md << "---|";
    md << "\n";
    for (const auto& row : r.rows) {
      double f1 = 0, em = 0;
      md << "| " << row << " |";
      for (const auto& d : r.datasets) {
        const auto& s = r.scores.at(row).at(d);
        const double a = metric == 1 ? s.squad_f1 : metric == 2 ? s.script_f1 : s.f1;
        const double b = metric == 1 ? s.squad_em : metric == 2 ? s.script_em : s.em;
        md << " " << fmt(a) << " / " << fmt(b) << " |";
        f1 += a;
        em += b;
      }
      const double n = static_cast<double>(r.datasets.size());
      md << " " << fmt(f1 / n) << " / " << fmt(em / n) << " | "
         << (row == "zero-shot" || row == "full context" || metric != 0 ? "-" : fmt(retained_capability(r, row)) + "%")
         << " |\n";
    }
  };
  md << "# Question answering\n\nF1 / EM in %. Rows as in the paper: zero-shot (question only), full context, "
        "then each compressor. Retained capability: mean over data sets of compressed F1 / full-context F1. "
     << decoding_note(decoding) << ", 46 tokens at most." << storage_note(storage_dtype) << "\n";
  table("The paper's metrics (token F1, stripped exact match)", 0);
  table("SQuAD-normalised metrics", 1);
  table("As the paper's evaluation scripts compute them (F1 over nltk.word_tokenize tokens; with several "
        "golds, the scores of the gold of highest ROUGE-L)",
        2);
  md << "\nQuestions per data set, truncated contexts, empty answers (row full context):";
  for (const auto& d : r.datasets) {
    const auto& s = r.scores.at("full context").at(d);
    md << " " << d << ": " << s.count << " / " << s.truncated << " / " << s.empty << ";";
  }
  md << "\n";
  // The paper's comparison, kv against icae at the same N, paired over the same questions.
  std::ostringstream pairs;
  for (const auto& kv_row : r.rows) {
    auto k = r.compressor_of.find(kv_row);
    if (k == r.compressor_of.end() || k->second.first != "kv") continue;
    for (const auto& icae_row : r.rows) {
      auto i = r.compressor_of.find(icae_row);
      if (i == r.compressor_of.end() || i->second.first != "icae" || i->second.second != k->second.second) continue;
      if (!r.answers.count(kv_row) || !r.answers.count(icae_row)) break;  // scores without answers
      for (const auto& d : r.datasets) {
        const auto diff = paired_f1_difference(r, kv_row, icae_row, d);
        pairs << "| " << k->second.second << " | " << d << " | " << kv_row << " " << fmt(r.scores.at(kv_row).at(d).f1)
              << " | " << icae_row << " " << fmt(r.scores.at(icae_row).at(d).f1) << " | " << fmt(diff.mean) << " | "
              << fmt(diff.mean - diff.half_width) << " to " << fmt(diff.mean + diff.half_width) << " |\n";
      }
      break;  // the first icae row with this N
    }
  }
  if (!pairs.str().empty())
    md << "\n## kv against icae, paired over the same questions\n\nF1 (paper's) of the kv row minus the icae row "
          "with the same N; the interval is the mean +- 1.96 x sd / sqrt(n) of the per-question differences "
          "(an interval that contains 0: no difference shown at this sample size).\n\n"
          "| N | data set | kv | icae | kv - icae | 95% interval |\n|---|---|---|---|---|---|\n"
       << pairs.str();
  write_file_atomic(dir + "/qa.md", md.str());
  write_file_atomic(dir + "/qa.tsv", tsv.str());
  // Every answer, for error analysis: one line per question with each row's prediction and F1.
  if (!r.answers.empty()) {
    std::ostringstream jl;
    for (const auto& d : r.datasets) {
      auto q = r.questions.find(d);
      if (q == r.questions.end()) continue;
      for (size_t i = 0; i < q->second.size(); ++i) {
        nlohmann::json j = {{"dataset", d}, {"index", i}, {"question", q->second[i].question},
                            {"answers", q->second[i].answers}};
        for (const auto& row : r.rows) {
          auto a = r.answers.find(row);
          if (a == r.answers.end() || !a->second.count(d) || i >= a->second.at(d).size()) continue;
          const auto& ans = a->second.at(d)[i];
          j["predictions"][row] = {{"text", ans.prediction}, {"f1", ans.f1}};
        }
        jl << json_line(j) << "\n";  // a prediction cut inside a character: U+FFFD, no exception
      }
    }
    write_file_atomic(dir + "/answers.jsonl", jl.str());
  }
  // F1 by context length, in four buckets of equal width up to the longest context.
  int64_t longest = 1;
  for (const auto& [row, v] : r.by_length)
    for (const auto& p : v) longest = std::max(longest, p.first);
  const int64_t width = (longest + 3) / 4;
  std::map<std::string, std::vector<std::pair<double, double>>> series;
  for (const auto& [row, v] : r.by_length) {
    std::vector<double> sum(4, 0);
    std::vector<int> n(4, 0);
    for (const auto& [len, f1] : v) {
      int b = std::min<int>(3, static_cast<int>((len - 1) / std::max<int64_t>(width, 1)));
      sum[b] += f1;
      ++n[b];
    }
    for (int b = 0; b < 4; ++b)
      if (n[b] > 0) series[row].emplace_back(static_cast<double>((b + 1) * width), sum[b] / n[b]);
  }
  plot(dir, "qa_f1_by_length", "QA F1 by context length (bucket upper bound)", "context length (tokens)", "F1 (%)", series);
  return md.str();
}

std::string write_efficiency_report(const std::vector<EfficiencyRow>& rows, const std::string& dir) {
  make_dirs(dir);
  std::ostringstream md, tsv;
  tsv << "method\tlength\tbytes\tcompress_ms\tanswer_ms\n";
  std::map<int64_t, double> full_ms;
  std::map<int64_t, int64_t> full_bytes;
  for (const auto& r : rows) {
    tsv << r.method << "\t" << r.length << "\t" << r.bytes << "\t" << r.compress_ms << "\t" << r.answer_ms << "\n";
    if (r.method == "full context") {
      full_ms[r.length] = r.answer_ms;
      full_bytes[r.length] = r.bytes;
    }
  }
  md << "# Efficiency\n\nBytes carried into decoding, compression time, and the time to answer (16 tokens) from a "
        "stored compressed prompt versus from the full text; best of 3, measured in one run.\n\n"
        "| method | context tokens | bytes | vs full | compress ms | answer ms | speed-up |\n|---|---|---|---|---|---|---|\n";
  for (const auto& r : rows)
    md << "| " << r.method << " | " << r.length << " | " << r.bytes << " | "
       << fmt(static_cast<double>(full_bytes[r.length]) / std::max<int64_t>(r.bytes, 1), 1) << "x | "
       << (r.method == "full context" ? "-" : fmt(r.compress_ms, 1)) << " | " << fmt(r.answer_ms, 1) << " | "
       << fmt(full_ms[r.length] / std::max(r.answer_ms, 1e-9), 2) << "x |\n";
  write_file_atomic(dir + "/efficiency.md", md.str());
  write_file_atomic(dir + "/efficiency.tsv", tsv.str());
  std::map<std::string, std::vector<std::pair<double, double>>> series;
  for (const auto& r : rows) series[r.method].emplace_back(static_cast<double>(r.length), r.answer_ms);
  plot(dir, "efficiency_answer_ms", "Time to answer from a stored prompt vs the full text", "context tokens",
       "answer time (ms)", series);
  return md.str();
}

std::string write_gain_report(const std::vector<GainRow>& rows, const std::string& dir,
                              std::optional<torch::Dtype> storage_dtype) {
  make_dirs(dir);
  std::ostringstream md, tsv;
  tsv << "compressor\tobjective\texamples\ttarget_tokens\tloss_with\tloss_alone\tgain\n";
  md << "# Gain of the compressed prompt\n\nTeacher-forced loss (nats/token) of the frozen base on the same target "
        "tokens, with the compressed prompt and alone (regen: the text; qa: the answer)."
     << storage_note(storage_dtype)
     << "\n\n"
        "| compressor | objective | examples | target tokens | with prompt | base alone | gain |\n|---|---|---|---|---|---|---|\n";
  for (const auto& r : rows) {
    tsv << r.compressor << "\t" << r.objective << "\t" << r.count << "\t" << r.targets << "\t" << fmt(r.loss_with, 4)
        << "\t" << fmt(r.loss_alone, 4) << "\t" << fmt(r.gain(), 4) << "\n";
    md << "| " << r.compressor << " | " << r.objective << " | " << r.count
       << (r.truncated > 0 ? " (" + std::to_string(r.truncated) + " truncated)" : std::string()) << " | " << r.targets
       << " | " << fmt(r.loss_with, 3) << " | " << fmt(r.loss_alone, 3) << " | " << fmt(r.gain(), 3) << " |\n";
  }
  write_file_atomic(dir + "/gain.md", md.str());
  write_file_atomic(dir + "/gain.tsv", tsv.str());
  return md.str();
}

}  // namespace xcomp
