// Template-based extractive QA from abstracts (the ArxivQA-style data of issue 5): each template
// finds a trigger in a sentence ("we propose", "using", "(GNN)", "5.2%", ...), takes the answer
// from the text after it up to a clause boundary, and phrases a question from the words before it.
#include "xcomp/qa_synth.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <map>
#include <fstream>
#include <iostream>
#include <random>
#include <regex>

#include "qa_text.h"
#include "xcomp/error.h"
#include "xcomp/io.h"

namespace xcomp {
namespace {

using qa_text::acronym_long_form;
using qa_text::answer_end;
using qa_text::balanced;
using qa_text::base_verb;
using qa_text::capitalize;
using qa_text::count_words;
using qa_text::ends_with_abbreviation;
using qa_text::lower;
using qa_text::trim;
using qa_text::usable_prefix;

using Flags = std::regex_constants::syntax_option_type;
constexpr Flags kIcase = std::regex::ECMAScript | std::regex::icase | std::regex::optimize;
constexpr Flags kCase = std::regex::ECMAScript | std::regex::optimize;

struct Candidate {
  std::string question;
  size_t begin, end;  // answer, in sentence coordinates
  std::string type;
};

// "To this end, we" -> "To this end, what do the authors"; an empty prefix gives "What do the authors".
std::string authors_question(const std::string& prefix, const std::string& verb) {
  std::string p = trim(prefix);
  const size_t semi = p.find_last_of(";:");
  if (semi != std::string::npos) p = trim(p.substr(semi + 1));
  if (count_words(p) > 12 || (!p.empty() && !std::isupper(static_cast<unsigned char>(p[0]))) || !balanced(p)) p.clear();
  // Strip a trailing subject ("we", "here we", "in this paper we", "this paper").
  static const std::regex subject(R"((,?\s*(here|in this (paper|work|study|letter|article))?,?\s*)$)", kIcase);
  p = trim(std::regex_replace(p, subject, ""));
  std::string q = p.empty() ? "What do the authors " + verb + "?" : p + ", what do the authors " + verb + "?";
  return capitalize(q);
}

void add_answer_after(std::vector<Candidate>& out, const std::string& s, size_t start, std::string question,
                      const std::string& type, int64_t max_words) {
  const size_t end = answer_end(s, start, max_words);
  if (end == std::string::npos) return;
  static const char* const kBadStarts[] = {"and ", "or ", "but ", "in ", "on ", "at ", "for ", "with ", "by ",
                                           "from ", "to ", "under ", "how ", "why ", "whether ", "if "};
  for (const char* b : kBadStarts)
    if (s.compare(start, std::char_traits<char>::length(b), b) == 0) return;
  static const char* const kBadEnds[] = {" of", " the", " a", " an", " to", " and", " for", " in", " with", " or", " by"};
  for (const char* b : kBadEnds) {
    const size_t n = std::char_traits<char>::length(b);
    if (end - start >= n && s.compare(end - n, n, b) == 0) return;
  }
  out.push_back({std::move(question), start, end, type});
}

// For every match of `trigger` (group 1 is the relation word): "<words before> <relation> what?",
// answered by the clause after it. Skips matches whose answer another template already took.
template <typename TypeFn>
void echo_all(std::vector<Candidate>& out, const std::string& s, const std::regex& trigger, TypeFn type_of, int64_t maxq,
              int64_t maxw, int64_t min_prefix_words = 2) {
  for (auto it = std::sregex_iterator(s.begin(), s.end(), trigger); it != std::sregex_iterator(); ++it) {
    const auto& m = *it;
    std::string prefix = trim(s.substr(0, static_cast<size_t>(m.position(0))));
    const size_t semi = prefix.find_last_of(";:");
    if (semi != std::string::npos) prefix = trim(prefix.substr(semi + 1));
    if (count_words(prefix) < min_prefix_words || !usable_prefix(prefix, maxq - 3)) continue;
    if (std::count(prefix.begin(), prefix.end(), '$') % 2 == 1) continue;
    const size_t after = static_cast<size_t>(m.position(0) + m.length(0));
    bool dup = false;
    for (const auto& c : out) dup = dup || c.begin == after;
    if (dup) continue;
    const std::string rel = m.str(1);
    add_answer_after(out, s, after, capitalize(prefix) + " " + (rel == lower(rel) ? rel : lower(rel)) + " what?",
                     type_of(lower(rel)), maxw);
  }
}

std::vector<Candidate> sentence_candidates(const std::string& s, const QaSynthOptions& o) {
  std::vector<Candidate> out;
  const int64_t maxw = o.max_answer_words, maxq = o.max_question_words;
  std::smatch m;

  static const std::regex proposal(
      R"(\b(we|this (paper|work|study|article|letter)|the authors)\s+(also |further |then |first |here )?(propose|introduce|present|develop|design|describe|construct|derive|formulate)s?\s+)",
      kIcase);
  // "<prefix> we VERB X" -> "<prefix>, what do the authors VERB?" (the verb is group 4).
  auto authors = [&](const std::regex& trigger, const char* type) {
    if (std::regex_search(s, m, trigger))
      add_answer_after(out, s, static_cast<size_t>(m.position(0) + m.length(0)),
                       authors_question(s.substr(0, static_cast<size_t>(m.position(0))), base_verb(m.str(4))), type, maxw);
  };
  authors(proposal, "proposal");

  static const std::regex finding(
      R"(\b(we|this (paper|work|study))\s+(also |further |then |first |rigorously |numerically |experimentally |here )?(show|prove|demonstrate|find|establish|observe|argue|conclude|confirm|verify|reveal)s?\s+that\s+)",
      kIcase);
  authors(finding, "finding");

  static const std::regex result(
      R"(\b(our|the|these) (results|experiments|findings|simulations|analyses|analysis|observations|measurements|data|experimental results|numerical results)\s+(also |further |clearly |consistently )?(show|suggest|indicate|reveal|demonstrate|confirm|imply)s?\s+that\s+)",
      kIcase);
  if (std::regex_search(s, m, result)) {
    const std::string noun = lower(m.str(2));
    const bool plural = noun.back() == 's' || noun == "data";
    add_answer_after(out, s, static_cast<size_t>(m.position(0) + m.length(0)),
                     std::string(plural ? "What do the " : "What does the ") + noun + " " + base_verb(m.str(4)) + "?",
                     "result", maxw);
  }

  static const std::regex topic(
      R"(\b(we|this (paper|work|study|article))\s+(also |further |then |first |here )?(study|studies|investigate|consider|examine|analyze|analyse|explore|address|discuss|review|characterize|characterise|compute|evaluate)s?\s+)",
      kIcase);
  authors(topic, "topic");

  static const std::regex acronym(R"(\(([A-Z][A-Za-z0-9]*[A-Z][A-Za-z0-9]*?)(s?)\))", kCase);
  for (auto it = std::sregex_iterator(s.begin(), s.end(), acronym); it != std::sregex_iterator(); ++it) {
    const std::string acr = (*it).str(1);
    const size_t paren = static_cast<size_t>((*it).position(0));
    const size_t start = acronym_long_form(s, paren, acr);
    if (start == std::string::npos) continue;
    size_t end = paren;
    while (end > start && s[end - 1] == ' ') --end;
    out.push_back({"What does " + acr + " stand for?", start, end, "acronym"});
    const size_t astart = paren + 1, aend = astart + acr.size();
    out.push_back({"What abbreviation is used for " + s.substr(start, end - start) + "?", astart, aend, "name"});
  }

  static const std::regex name(
      R"(\b(called|named|dubbed|termed|coined|referred to as)\s+("?)([A-Z][A-Za-z0-9-]*(\s[A-Z0-9][A-Za-z0-9-]*){0,3}))", kCase);
  if (std::regex_search(s, m, name)) {
    // The thing named: up to five words back to an article or possessive.
    std::string before = trim(s.substr(0, static_cast<size_t>(m.position(0))));
    std::vector<std::string> words;
    size_t p = before.size();
    std::string thing;
    while (p > 0 && words.size() < 5) {
      size_t b = before.rfind(' ', p - 1);
      b = b == std::string::npos ? 0 : b + 1;
      std::string w = before.substr(b, p - b);
      const std::string lw = lower(w);
      if (lw == "a" || lw == "an" || lw == "the" || lw == "our" || lw == "this" || lw == "new") {
        if (lw == "new") words.insert(words.begin(), w);
        for (const auto& x : words) thing += (thing.empty() ? "" : " ") + x;
        break;
      }
      if (w.empty() || !std::isalpha(static_cast<unsigned char>(w[0]))) break;
      words.insert(words.begin(), w);
      p = b > 0 ? b - 1 : 0;
    }
    if (!thing.empty() && count_words(thing) <= 5) {
      const size_t start = static_cast<size_t>(m.position(3));
      out.push_back({"What is the " + thing + " called?", start, start + static_cast<size_t>(m.length(3)), "name"});
    }
  }

  static const std::regex method(
      R"(\s(using|via|based on|by means of|by using|by combining|by leveraging|leveraging|employing|with the help of|by exploiting|by introducing)\s+)",
      kIcase);
  echo_all(out, s, method, [](const std::string&) { return std::string("method"); }, maxq, maxw);

  static const std::regex dataset(
      R"(\b(on|in|using|across|from|with)\s+(the\s+)?(([A-Z0-9][A-Za-z0-9.+-]*\s?){1,4}?)\s*(dataset|benchmark|corpus|data set|database|suite)(s?)\b)",
      kCase);
  if (std::regex_search(s, m, dataset)) {
    const size_t start = static_cast<size_t>(m.position(3));
    size_t end = start + static_cast<size_t>(m.length(3));
    while (end > start && s[end - 1] == ' ') --end;
    const std::string prefix = trim(s.substr(0, static_cast<size_t>(m.position(0))));
    if (end > start + 1 && usable_prefix(prefix, maxq - 4))
      out.push_back({capitalize(prefix) + " " + m.str(1) + " which " + m.str(5) + m.str(6) + "?", start, end, "dataset"});
  }

  static const std::regex number(
      R"(\b(\d+(\.\d+)?)(\s?(%|percent|per cent)|\s?(times|-fold|fold|x)\b|\s([a-z]+s)\b)?)", kCase);
  static const std::regex year(R"(\b(in|since|by|until|from|of)\s((18|19|20)\d\d)\b)", kCase);
  const bool short_sentence = count_words(s) <= maxq;
  if (short_sentence) {
    bool have = false;
    if (std::regex_search(s, m, year)) {
      const size_t start = static_cast<size_t>(m.position(2)), end = start + 4;
      std::string q = s.substr(0, static_cast<size_t>(m.position(0))) + m.str(1) + " what year" + s.substr(end);
      q = trim(q);
      if (!q.empty() && (q.back() == '.' || q.back() == ';')) q.pop_back();
      out.push_back({capitalize(q) + "?", start, end, "number"});
      have = true;
    }
    for (auto it = std::sregex_iterator(s.begin(), s.end(), number); it != std::sregex_iterator() && !have; ++it) {
      const auto& n = *it;
      const size_t pos = static_cast<size_t>(n.position(0));
      // Skip numbers inside math, in identifiers (e.g. "GPT-4", "H2O") or that are years.
      if (std::count(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(pos), '$') % 2 == 1) continue;
      if (pos > 0 && (std::isalpha(static_cast<unsigned char>(s[pos - 1])) || s[pos - 1] == '-' || s[pos - 1] == '_')) continue;
      std::string wh;
      size_t aend = pos + static_cast<size_t>(n.length(1));
      size_t rest = pos + static_cast<size_t>(n.length(0));
      if (n[4].matched) {
        wh = "what percentage";
        aend = rest;
      } else if (n[5].matched) {
        wh = "how many times";
        aend = rest;
      } else if (n[6].matched) {
        const std::string unit = n.str(6);
        if (unit == "times" || unit.size() < 3) continue;
        wh = "how many " + unit;
      } else {
        continue;
      }
      std::string q = trim(s.substr(0, pos) + wh + s.substr(rest));
      if (!q.empty() && (q.back() == '.' || q.back() == ';')) q.pop_back();
      out.push_back({capitalize(q) + "?", pos, aend, "number"});
      have = true;
    }
  }

  static const std::regex comparison(
      R"(\s(outperforms?|outperformed|outperforming|surpass(es|ed|ing)?|exceeds?|improves? upon|improves? over)\s+)", kIcase);
  if (std::regex_search(s, m, comparison)) {
    const std::string prefix = trim(s.substr(0, static_cast<size_t>(m.position(0))));
    if (usable_prefix(prefix, maxq - 3))
      add_answer_after(out, s, static_cast<size_t>(m.position(0) + m.length(0)),
                       capitalize(prefix) + " " + m.str(1) + " what?", "comparison", maxw);
  }

  static const std::regex example(R"(,?\s(such as|including|e\.g\.,?)\s+)", kIcase);
  if (std::regex_search(s, m, example)) {
    const std::string prefix = trim(s.substr(0, static_cast<size_t>(m.position(0))));
    if (usable_prefix(prefix, maxq - 3))
      add_answer_after(out, s, static_cast<size_t>(m.position(0) + m.length(0)),
                       capitalize(prefix) + ", " + (m.str(1).rfind("e.g", 0) == 0 ? "for example" : m.str(1)) + " what?",
                       "example", maxw);
  }

  static const std::regex application(
      R"(\b(we|and|also)\s+(apply|applied|extend|extended|generalize|generalise|generalized)\s+([^,;]{3,60}?)\s+to\s+)", kIcase);
  if (std::regex_search(s, m, application)) {
    std::string verb = lower(m.str(2));
    if (verb.size() > 2 && verb.compare(verb.size() - 2, 2, "ed") == 0)
      verb = verb == "applied" ? "apply" : verb.substr(0, verb.size() - (verb == "generalized" ? 1 : 2));
    add_answer_after(out, s, static_cast<size_t>(m.position(0) + m.length(0)),
                     "What do the authors " + verb + " " + m.str(3) + " to?", "application", maxw);
  }

  static const std::regex purpose(
      R"(\s(in order to|aims? to|aiming to|designed to|allows? us to|enables? us to|is to|seeks? to)\s+)", kIcase);
  if (std::regex_search(s, m, purpose)) {
    const std::string prefix = trim(s.substr(0, static_cast<size_t>(m.position(0))));
    if (usable_prefix(prefix, maxq - 4))
      add_answer_after(out, s, static_cast<size_t>(m.position(0) + m.length(0)),
                       capitalize(prefix) + " " + lower(m.str(1)) + " do what?", "purpose", maxw);
  }

  // Any other "we VERB X": what the authors do, by verb class.
  static const std::regex we_verb(
      R"(\b(we|this (paper|work|study|article))\s+(also |further |then |first |here |additionally |finally |next )?(obtain|give|provide|identify|report|measure|train|test|solve|improve|use|employ|implement|perform|conduct|estimate|calculate|classify|determine|discover|detect|simulate|quantify|model|predict|achieve|compare|establish|prove|derive|extend|focus on|rely on|adopt|apply|generalize|construct|characterize|explain|examine|highlight|discuss|outline|summarize|find|demonstrate|show|introduce|propose|present|develop|describe|investigate|study|consider|explore|analyze|address|evaluate|review|compute)s?\s+)",
      kIcase);
  for (auto it = std::sregex_iterator(s.begin(), s.end(), we_verb); it != std::sregex_iterator(); ++it) {
    const auto& w = *it;
    const size_t after = static_cast<size_t>(w.position(0) + w.length(0));
    if (s.compare(after, 5, "that ") == 0 || s.compare(after, 4, "how ") == 0 || s.compare(after, 4, "why ") == 0) continue;
    const std::string verb = base_verb(w.str(4));
    bool dup = false;
    for (const auto& c : out) dup = dup || c.begin == after;
    if (dup) continue;
    static const std::map<std::string, std::string> kClass = {
        {"use", "method"}, {"employ", "method"}, {"adopt", "method"}, {"rely on", "method"}, {"apply", "method"},
        {"implement", "method"}, {"train", "method"}, {"obtain", "result"}, {"achieve", "result"}, {"find", "result"},
        {"demonstrate", "result"}, {"show", "result"}, {"report", "result"}, {"prove", "finding"}, {"establish", "finding"},
        {"derive", "finding"}, {"give", "finding"}, {"provide", "proposal"}, {"introduce", "proposal"},
        {"propose", "proposal"}, {"present", "proposal"}, {"develop", "proposal"}, {"construct", "proposal"},
        {"describe", "proposal"}, {"extend", "proposal"}, {"generalize", "proposal"}};
    auto cls = kClass.find(verb);
    add_answer_after(out, s, after, authors_question(s.substr(0, static_cast<size_t>(w.position(0))), verb),
                     cls == kClass.end() ? "topic" : cls->second, maxw);
  }

  // Passive: "A new scheme for X is proposed." -> "What is proposed?"
  static const std::regex passive(
      R"(\s(is|are|was|were)\s(also\s)?(proposed|introduced|presented|developed|studied|investigated|considered|discussed|analyzed|analysed|derived|obtained|established|shown|observed|found|identified|measured|constructed|described|examined|evaluated|explored|computed)\b)",
      kCase);
  if (std::regex_search(s, m, passive)) {
    size_t start = 0;
    const size_t end = static_cast<size_t>(m.position(0));
    const size_t comma = s.substr(0, end).find_last_of(",;:");
    if (comma != std::string::npos) start = comma + 1;
    while (start < end && s[start] == ' ') ++start;
    const std::string subject = s.substr(start, end - start);
    const int64_t n = count_words(subject);
    static const std::regex pronoun(R"(^(it|this|these|they|that|which|there)$)", kIcase);
    if (n >= 2 && n <= maxw && !std::regex_search(subject, pronoun) &&
        std::count(subject.begin(), subject.end(), '$') % 2 == 0 &&
        std::count(subject.begin(), subject.end(), '(') == std::count(subject.begin(), subject.end(), ')')) {
      std::string rest = trim(s.substr(static_cast<size_t>(m.position(0) + m.length(0))));
      if (!rest.empty() && (rest.back() == '.' || rest.back() == ';')) rest.pop_back();
      const std::string aux = m.str(1) == "are" ? "is" : m.str(1) == "were" ? "was" : m.str(1);
      std::string q = "What " + aux + " " + m.str(3) + (rest.empty() ? "" : " " + rest) + "?";
      if (count_words(q) > maxq) q = "What " + aux + " " + m.str(3) + "?";
      out.push_back({q, start, end, "proposal"});
    }
  }

  // Echo questions on a relation: "<before> leads to what?"
  static const std::regex relation(
      R"(\s(leads? to|led to|result in|resulted in|gives? rise to|allows|enables|achieves|attains|yields|due to|because of|owing to|thanks to|compared (to|with)|motivated by|inspired by|consists? of|depends? on|relies on)\s+)",
      kIcase);
  echo_all(out, s, relation, [](const std::string& rel) {
    if (rel == "due to" || rel == "because of" || rel == "owing to" || rel == "thanks to" || rel == "motivated by" ||
        rel == "inspired by")
      return std::string("cause");
    return std::string(rel.rfind("compared", 0) == 0 ? "comparison" : "consequence");
  }, maxq, maxw);

  // "<before> for what?" / "<before> with what?": purposes and details, when the words before
  // make a clause of their own (at least five words).
  static const std::regex for_with(R"(\s(for|with|to|in terms of|between|against|over|into|under)\s+)", kCase);
  echo_all(out, s, for_with, [](const std::string& rel) {
    return std::string(rel == "for" || rel == "to" ? "purpose" : "detail");
  }, maxq, maxw, /*min_prefix_words=*/5);

  // Measurements in physical units: "40 dB" -> "how many dB".
  static const std::regex unit(
      R"(\b(\d+(\.\d+)?)\s?(dB|K|GeV|MeV|TeV|keV|eV|Hz|kHz|MHz|GHz|THz|nm|μm|mm|cm|km|ms|ns|ps|fs|Mpc|kpc|pc|mK|T|W|mW|kW|MW|GB|MB|TB|bits|qubits|hours|days|years|minutes|seconds)\b)",
      kCase);
  if (short_sentence && std::regex_search(s, m, unit) &&
      std::count(s.begin(), s.begin() + m.position(0), '$') % 2 == 0 &&
      (m.position(0) == 0 || !std::isalnum(static_cast<unsigned char>(s[static_cast<size_t>(m.position(0)) - 1])))) {
    const size_t pos = static_cast<size_t>(m.position(1));
    std::string q = trim(s.substr(0, pos) + "how many " + m.str(3) + s.substr(static_cast<size_t>(m.position(0) + m.length(0))));
    if (!q.empty() && (q.back() == '.' || q.back() == ';')) q.pop_back();
    bool dup = false;
    for (const auto& c : out) dup = dup || c.begin == pos;
    if (!dup) out.push_back({capitalize(q) + "?", pos, pos + static_cast<size_t>(m.length(1)), "number"});
  }

  // Counts written as words: "three datasets" -> "how many datasets".
  static const std::regex count_word(
      R"(\b(two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|hundreds of|thousands of)\s([a-z]+s)\b)", kIcase);
  if (short_sentence && std::regex_search(s, m, count_word)) {
    const size_t pos = static_cast<size_t>(m.position(1));
    const size_t aend = pos + static_cast<size_t>(m.length(1));
    std::string q = trim(s.substr(0, pos) + "how many " + m.str(2) + s.substr(static_cast<size_t>(m.position(0) + m.length(0))));
    if (!q.empty() && (q.back() == '.' || q.back() == ';')) q.pop_back();
    out.push_back({capitalize(q) + "?", pos, aend, "number"});
  }

  static const std::regex definition(R"(^([A-Z][A-Za-z0-9-]*(\s[A-Za-z0-9-]+){0,5}?)\s(is|are)\s(a|an|one of)\s)", kCase);
  if (std::regex_search(s, m, definition)) {
    const std::string subject = m.str(1);
    static const std::regex pronoun(R"(^(This|It|There|These|Our|We|That|Such|Here|They|Its|Their|Which)\b)", kCase);
    if (!std::regex_search(subject, pronoun)) {
      std::string subj = subject;
      if (subj.size() > 1 && std::islower(static_cast<unsigned char>(subj[1])) && subj.rfind("The ", 0) == 0)
        subj = "the " + subj.substr(4);
      add_answer_after(out, s, static_cast<size_t>(m.position(4)), "What " + m.str(3) + " " + subj + "?", "definition",
                       maxw);
    }
  }
  return out;
}

}  // namespace

std::vector<std::pair<size_t, size_t>> split_sentences(const std::string& text) {
  std::vector<std::pair<size_t, size_t>> out;
  size_t start = 0;
  bool math = false;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '$') math = !math;
    if (math) continue;
    const char c = text[i];
    if ((c == '.' || c == '!' || c == '?') && i + 2 < text.size() && text[i + 1] == ' ') {
      const unsigned char next = static_cast<unsigned char>(text[i + 2]);
      if (!(std::isupper(next) || std::isdigit(next) || next == '$' || next == '(')) continue;
      if (c == '.' && ends_with_abbreviation(text, i)) continue;
      out.emplace_back(start, i + 1 - start);
      start = i + 2;
    }
  }
  if (start < text.size()) out.emplace_back(start, text.size() - start);
  return out;
}

std::vector<QaPair> synthesize_qa(const std::string& context, const QaSynthOptions& o) {
  for (const auto& [value, flag] : {std::pair{o.max_per_context, "--max-per-context"},
                                    std::pair{o.max_answer_words, "--max-answer-words"},
                                    std::pair{o.max_question_words, "max_question_words"}})
    if (value < 1) throw Error(flag, "is " + std::to_string(value), "must be >= 1");
  std::map<std::string, std::vector<QaPair>> by_type;
  std::vector<std::string> seen_questions;
  const std::string lower_context = lower(context);
  for (const auto& [off, len] : split_sentences(context)) {
    const std::string s = context.substr(off, len);
    for (auto& c : sentence_candidates(s, o)) {
      QaPair p;
      p.answer = trim(s.substr(c.begin, c.end - c.begin));
      if (p.answer.size() < 2) continue;
      p.answer_start = static_cast<int64_t>(off + c.begin);
      p.question = c.question;
      p.type = c.type;
      if (count_words(p.question) > o.max_question_words || count_words(p.question) < 3) continue;
      // Names, numbers and acronyms come whole from their templates: the limit holds for them too.
      if (count_words(p.answer) > o.max_answer_words) continue;
      // The answer must not be in the question (case-insensitively) and must be a span of the context.
      if (lower(p.question).find(lower(p.answer)) != std::string::npos) continue;
      if (context.compare(static_cast<size_t>(p.answer_start), p.answer.size(), p.answer) != 0) continue;
      if (std::find(seen_questions.begin(), seen_questions.end(), p.question) != seen_questions.end()) continue;
      seen_questions.push_back(p.question);
      by_type[p.type].push_back(std::move(p));
    }
  }
  // Round-robin over the types in a seeded order, so each abstract yields varied questions.
  std::mt19937_64 rng(o.seed ^ std::hash<std::string>{}(context));
  std::vector<std::string> types;
  for (auto& [t, v] : by_type) {
    std::shuffle(v.begin(), v.end(), rng);
    types.push_back(t);
  }
  std::shuffle(types.begin(), types.end(), rng);
  std::vector<QaPair> out;
  for (size_t round = 0; static_cast<int64_t>(out.size()) < o.max_per_context; ++round) {
    bool any = false;
    for (const auto& t : types) {
      if (round < by_type[t].size() && static_cast<int64_t>(out.size()) < o.max_per_context) {
        out.push_back(by_type[t][round]);
        any = true;
      }
    }
    if (!any) break;
  }
  return out;
}

void write_qa_type_histogram(const std::map<std::string, int64_t>& counts, const std::string& dir) {
  make_dirs(dir);
  int64_t total = 0, top = 1;
  for (const auto& [t, n] : counts) {
    total += n;
    top = std::max(top, n);
  }
  std::vector<std::pair<std::string, int64_t>> sorted(counts.begin(), counts.end());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string md = "| question type | pairs | share | |\n|---|---:|---:|---|\n", dat;
  for (const auto& [t, n] : sorted) {
    char share[32];
    std::snprintf(share, sizeof share, "%.1f%%", total > 0 ? 100.0 * static_cast<double>(n) / static_cast<double>(total) : 0.0);
    md += "| " + t + " | " + std::to_string(n) + " | " + share + " | " + std::string(static_cast<size_t>(30 * n / top), '#') + " |\n";
    dat += t + " " + std::to_string(n) + "\n";
  }
  md += "| total | " + std::to_string(total) + " | 100% | |\n";
  write_file_atomic(dir + "/qa_types.md", md);
  write_file_atomic(dir + "/qa_types.dat", dat);
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    std::cerr << "warning: gnuplot is not installed; qa_types.png not drawn\n";
    return;
  }
  const std::string gp = "set terminal pngcairo size 900,500\nset output '" + dir +
                         "/qa_types.png'\nset title 'Synthesised QA pairs by question type'\nset style fill solid 0.8\n"
                         "set boxwidth 0.7\nset xtics rotate by -35\nset ylabel 'pairs'\nunset key\nset yrange [0:*]\n"
                         "plot '" + dir + "/qa_types.dat' using 0:2:xtic(1) with boxes lc rgb '#4472c4'\n";
  write_file_atomic(dir + "/qa_types.gp", gp);
  if (std::system(("gnuplot '" + dir + "/qa_types.gp' 2>/dev/null").c_str()) != 0)
    std::cerr << "warning: gnuplot failed to draw qa_types.png\n";
}

}  // namespace xcomp
