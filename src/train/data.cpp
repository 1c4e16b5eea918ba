// Training examples: regeneration and QA sequences, JSONL / MRQA readers (gzip or plain).
#include <cctype>
#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>

#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/text_stream.h"
#include "xcomp/train.h"

namespace xcomp {

Example make_regen_example(const std::vector<int64_t>& text, int64_t bos, int64_t eos) {
  Example e;
  e.context = text;
  e.sequence.push_back(bos);
  e.sequence.insert(e.sequence.end(), text.begin(), text.end());
  e.sequence.push_back(eos);
  e.loss_from = 1;
  return e;
}

namespace {

// The template with the question in place of "{question}".
std::string fill_question(const std::string& question_template, const std::string& question) {
  const std::string t = question_template.empty() ? std::string(kDefaultQuestionTemplate) : question_template;
  check_question_template(t, "QA prompt");
  const std::string slot = "{question}";
  const size_t at = t.find(slot);
  return t.substr(0, at) + question + t.substr(at + slot.size());
}

}  // namespace

std::vector<int64_t> qa_prompt(const Tokenizer& tok, const std::string& question, const std::string& question_template) {
  return tok.encode(fill_question(question_template, question));
}

std::string answer_text(const Tokenizer& tok, const std::vector<int64_t>& ids) {
  const std::string s = tok.decode(ids);
  const size_t b = s.find_first_not_of(" \n\t"), e = s.find_last_not_of(" \n\t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::vector<int64_t> full_context_prompt(const Tokenizer& tok, const std::string& context, const std::string& question) {
  return tok.encode("Context: " + context + " Question: " + question + " Answer:", /*add_bos=*/true);
}

std::vector<int64_t> fitted_full_context_prompt(const Tokenizer& tok, const std::string& context,
                                                const std::string& question, int64_t max_positions,
                                                int64_t max_new_tokens, int64_t* context_tokens) {
  if (context_tokens != nullptr) *context_tokens = 0;
  auto prompt = full_context_prompt(tok, context, question);
  auto excess = [&] { return static_cast<int64_t>(prompt.size()) + max_new_tokens - max_positions; };
  if (excess() <= 0) return prompt;
  const auto ids = tok.encode(context);
  const auto frame = static_cast<int64_t>(full_context_prompt(tok, "", question).size());
  // Cut at the token count that fits; text re-encoded at the cut may take a token or two more,
  // so shrink by the excess until it fits.
  for (int64_t keep = std::min<int64_t>(static_cast<int64_t>(ids.size()), max_positions - max_new_tokens - frame);
       keep >= 1;) {
    std::string cut = tok.decode(std::vector<int64_t>(ids.begin(), ids.begin() + keep));
    cut.resize(complete_utf8_prefix(cut));  // a byte-level cut may split a character
    prompt = full_context_prompt(tok, cut, question);
    if (excess() <= 0) {
      if (context_tokens != nullptr) *context_tokens = static_cast<int64_t>(ids.size());
      return prompt;
    }
    keep -= excess();
  }
  throw Error("question", "with BOS, the prompt's frame and a " + std::to_string(max_new_tokens) +
                              "-token answer it leaves no room for a context in " + std::to_string(max_positions) +
                              " positions",
              "shorten the question or --max-new-tokens");
}

Example make_qa_example(const Tokenizer& tok, const std::vector<int64_t>& context, const std::string& question,
                        const std::string& answer, int64_t eos, const std::string& question_template) {
  Example e;
  e.context = context;
  const std::string prompt = fill_question(question_template, question);
  e.sequence = tok.encode(prompt);
  e.loss_from = static_cast<int64_t>(e.sequence.size());
  // The answer continues the prompt's text: tokenize them together so the boundary matches how
  // the model sees "... Answer: X" (byte-level BPE merges the space into the answer's first
  // token; a prompt ending in a space would leave a lone space token that text never has). A
  // template that ends in a space (the reference code's) is tokenized apart from the answer, as
  // the reference does.
  const bool spaced = !prompt.empty() && std::isspace(static_cast<unsigned char>(prompt.back()));
  std::vector<int64_t> joint;
  if (!spaced) joint = tok.encode(prompt + " " + answer);
  if (joint.size() > e.sequence.size() && std::equal(e.sequence.begin(), e.sequence.end(), joint.begin())) {
    e.sequence = joint;
  } else {
    auto a = tok.encode(answer);
    e.sequence.insert(e.sequence.end(), a.begin(), a.end());
  }
  e.sequence.push_back(eos);
  return e;
}

namespace {

std::string answer_text(const nlohmann::json& a) {
  if (a.is_string()) return a.get<std::string>();
  if (a.is_object() && a.contains("text")) return a["text"].get<std::string>();
  throw std::runtime_error("answer is neither a string nor {\"text\"}");
}

}  // namespace

void check_data_options(const DataOptions& o) {
  if (o.objective != "regen" && o.objective != "qa") throw Error("--objective", "must be regen or qa");
  if (o.context_length < 1) throw Error("--context-length", "is " + std::to_string(o.context_length), "must be >= 1");
  if (o.limit < 0) throw Error("--limit", "is " + std::to_string(o.limit), "must be >= 0 (0: all)");
  if (o.text_tokens < 0) throw Error("--text-tokens", "must be >= 0");
  if (o.text_tokens > 0 && o.objective != "regen")
    throw Error("--text-tokens", "applies to regeneration only", "QA contexts must stay whole to hold their answers");
  if (o.text_chunks && o.text_tokens <= 0) throw Error("--text-chunks", "needs --text-tokens K > 0 (the chunk length)");
  if (o.text_chunk_stride > 0 && !o.text_chunks) throw Error("--text-chunk-stride", "applies with --text-chunks only");
  if (o.text_chunk_stride < 0 || o.text_chunk_stride > o.text_tokens)
    throw Error("--text-chunk-stride", "must be between 0 and --text-tokens (" + std::to_string(o.text_tokens) + ")");
}

std::vector<Example> load_examples(const std::string& path, const Tokenizer& tok, const DataOptions& o) {
  check_data_options(o);
  std::vector<Example> out;
  int64_t truncated = 0;
  const int64_t bos = tok.bos_id(), eos = tok.eos_id();
  if (eos < 0) throw Error(path, "the tokenizer has no EOS token");
  // Applies the overflow rule to one text's ids: an error naming the line, or truncation (counted).
  auto fit = [&](std::vector<int64_t>& ids, const std::string& where) {
    if (static_cast<int64_t>(ids.size()) <= o.context_length) return;
    if (o.overflow != "truncate")
      throw Error(where, "context has " + std::to_string(ids.size()) + " tokens, more than the context length " +
                             std::to_string(o.context_length), "use --overflow truncate");
    ids.resize(static_cast<size_t>(o.context_length));
    ++truncated;
  };
  // keep > 0: only the first `keep` tokens are used (cut before the overflow check).
  // The QA pairs of one context sit on consecutive lines: its ids are reused, not re-encoded.
  std::string last_text;
  std::vector<int64_t> last_ids;
  auto context_ids = [&](const std::string& text, const std::string& where, int64_t keep = 0) {
    if (keep == 0 && !last_ids.empty() && text == last_text) return last_ids;
    auto ids = tok.encode(text);
    if (keep > 0 && static_cast<int64_t>(ids.size()) > keep) ids.resize(static_cast<size_t>(keep));
    fit(ids, where);
    if (keep == 0) {
      last_text = text;
      last_ids = ids;
    }
    return ids;
  };
  for_each_line(path, [&](int64_t n, const std::string& line) {
    const std::string where = path + ":" + std::to_string(n);
    const nlohmann::json j = parse_json_line(line, where);
    if (j.contains("header")) return true;  // MRQA header line
    try {
      if (o.objective == "regen") {
        std::string text = j.contains("text") ? j["text"].get<std::string>() : j.at("abstract").get<std::string>();
        if (bos < 0) throw Error(path, "the tokenizer has no BOS token");
        if (o.text_chunks) {
          const auto all = tok.encode(text);
          const size_t k = static_cast<size_t>(o.text_tokens);
          const size_t stride = o.text_chunk_stride > 0 ? static_cast<size_t>(o.text_chunk_stride) : k;
          for (size_t from = 0; from < all.size(); from += stride) {
            const size_t len = std::min(k, all.size() - from);
            if (from > 0 && len < (k + 1) / 2) break;
            if (from > 0 && from - stride + k >= all.size()) break;  // the previous window reached the end
            std::vector<int64_t> chunk(all.begin() + static_cast<std::ptrdiff_t>(from),
                                       all.begin() + static_cast<std::ptrdiff_t>(from + len));
            fit(chunk, where);  // K beyond the context length
            out.push_back(make_regen_example(chunk, bos, eos));
          }
        } else {
          auto ids = context_ids(text, where, o.text_tokens);
          if (!ids.empty()) out.push_back(make_regen_example(ids, bos, eos));
        }
      } else if (j.contains("qas")) {  // MRQA
        auto ids = context_ids(j.at("context").get<std::string>(), where);
        for (const auto& qa : j["qas"]) {
          if (qa.at("answers").empty()) continue;
          out.push_back(make_qa_example(tok, ids, qa.at("question").get<std::string>(), answer_text(qa["answers"][0]), eos,
                                        o.question_template));
        }
      } else {
        auto ids = context_ids(j.at("context").get<std::string>(), where);
        const auto& answers = j.at("answers");
        std::string answer = answers.is_array() ? answer_text(answers.at(0)) : answer_text(answers);
        out.push_back(make_qa_example(tok, ids, j.at("question").get<std::string>(), answer, eos, o.question_template));
      }
    } catch (const nlohmann::json::exception& e) {
      throw Error(where, std::string("missing or ill-typed field: ") + e.what());
    } catch (const std::runtime_error& e) {
      if (dynamic_cast<const Error*>(&e)) throw;
      throw Error(where, e.what());
    }
    return o.limit <= 0 || static_cast<int64_t>(out.size()) < o.limit;
  });
  if (o.limit > 0 && static_cast<int64_t>(out.size()) > o.limit) out.resize(static_cast<size_t>(o.limit));
  if (truncated > 0)
    std::cerr << "warning: " << path << ": " << truncated << " contexts truncated to " << o.context_length << " tokens\n";
  if (out.empty()) throw Error(path, "no examples");
  return out;
}

}  // namespace xcomp
