// SentencePiece tokenizer.model (LLaMA-2 family, BPE type): the ModelProto is read with
// protobuf's schema-less UnknownFieldSet (field numbers from sentencepiece_model.proto) and
// encoded with ScoredBpe. libsentencepiece itself is not used: its bundled protobuf clashes with
// the one libtorch links.
#include <google/protobuf/unknown_field_set.h>

#include "scored_bpe.h"
#include "xcomp/error.h"
#include "xcomp/io.h"
#include "xcomp/tokenizer.h"

namespace xcomp {
namespace {

using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

// ModelProto / SentencePiece / TrainerSpec / NormalizerSpec field numbers.
constexpr int kPieces = 1, kTrainerSpec = 2, kNormalizerSpec = 3;
constexpr int kPiece = 1, kScore = 2, kType = 3;
constexpr int kModelType = 3, kByteFallback = 35, kUnkId = 40, kBosId = 41, kEosId = 42;
constexpr int kNormName = 1, kCharsMap = 2, kAddDummyPrefix = 3, kRemoveExtraWs = 4, kEscapeWs = 5;
enum PieceType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };
constexpr int kBpeModel = 2;

void parse(const std::string& bytes, const std::string& where, UnknownFieldSet& out) {
  if (!out.ParseFromString(bytes)) throw Error(where, "not a SentencePiece model (protobuf parse failed)");
}

// The last occurrence of a scalar field (protobuf semantics), or `fallback`.
uint64_t varint(const UnknownFieldSet& s, int number, uint64_t fallback) {
  for (int i = s.field_count() - 1; i >= 0; --i)
    if (s.field(i).number() == number && s.field(i).type() == UnknownField::TYPE_VARINT) return s.field(i).varint();
  return fallback;
}
const std::string* bytes_field(const UnknownFieldSet& s, int number) {
  for (int i = s.field_count() - 1; i >= 0; --i)
    if (s.field(i).number() == number && s.field(i).type() == UnknownField::TYPE_LENGTH_DELIMITED)
      return &s.field(i).length_delimited();
  return nullptr;
}

ScoredBpeVocab read_model(const std::string& path, int64_t& bos_id, int64_t& eos_id) {
  UnknownFieldSet model;
  parse(read_file(path), path, model);
  ScoredBpeVocab v;
  std::fill(std::begin(v.byte_ids), std::end(v.byte_ids), -1);
  v.space = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK
  for (int i = 0; i < model.field_count(); ++i) {
    const auto& f = model.field(i);
    if (f.number() != kPieces || f.type() != UnknownField::TYPE_LENGTH_DELIMITED) continue;
    UnknownFieldSet p;
    parse(f.length_delimited(), path, p);
    const std::string* piece = bytes_field(p, kPiece);
    if (piece == nullptr)
      throw Error(path, "piece " + std::to_string(v.pieces.size()) + " has no text");
    float score = 0;
    for (int k = 0; k < p.field_count(); ++k)
      if (p.field(k).number() == kScore && p.field(k).type() == UnknownField::TYPE_FIXED32) {
        uint32_t bits = p.field(k).fixed32();
        std::memcpy(&score, &bits, 4);
      }
    int type = static_cast<int>(varint(p, kType, kNormal));
    const int64_t id = static_cast<int64_t>(v.pieces.size());
    v.pieces.push_back(*piece);
    v.scores.push_back(score);
    v.mergeable.push_back(type == kNormal || type == kUserDefined);
    v.control.push_back(type == kControl || type == kUnknown);
    if (type == kByte) {
      const int b = byte_piece_value(*piece);
      if (b < 0) throw Error(path, "byte piece " + std::to_string(id) + " is not <0xXX>");
      v.byte_ids[b] = id;
    }
  }
  if (v.pieces.empty()) throw Error(path, "no pieces: not a SentencePiece model");
  const std::string* trainer = bytes_field(model, kTrainerSpec);
  UnknownFieldSet ts;
  if (trainer != nullptr) parse(*trainer, path, ts);
  if (varint(ts, kModelType, 1) != kBpeModel)
    throw Error(path,
                "SentencePiece model type " + std::to_string(varint(ts, kModelType, 1)) +
                    " is not supported",
                "only BPE models (LLaMA-2 family) are");
  (void)kByteFallback;
  v.unk_id = static_cast<int64_t>(varint(ts, kUnkId, 0));
  bos_id = static_cast<int64_t>(varint(ts, kBosId, 1));
  eos_id = static_cast<int64_t>(varint(ts, kEosId, 2));
  const std::string* norm = bytes_field(model, kNormalizerSpec);
  UnknownFieldSet ns;
  if (norm != nullptr) parse(*norm, path, ns);
  const std::string* charsmap = bytes_field(ns, kCharsMap);
  const std::string* name = bytes_field(ns, kNormName);
  if (charsmap != nullptr && !charsmap->empty())
    throw Error(path,
                "normalization rule '" + (name ? *name : std::string("?")) + "' is not supported",
                "only the identity rule (LLaMA-2) is");
  v.add_dummy_prefix = varint(ns, kAddDummyPrefix, 1) != 0;
  v.remove_extra_whitespaces = varint(ns, kRemoveExtraWs, 1) != 0;
  if (varint(ns, kEscapeWs, 1) == 0) v.space = " ";
  const int64_t n = static_cast<int64_t>(v.pieces.size());
  // (int32 fields: -1, "none", arrives as 2^64 - 1 and casts back to -1; bos and eos may be none.)
  if (v.unk_id < 0 || v.unk_id >= n || bos_id < -1 || bos_id >= n || eos_id < -1 || eos_id >= n)
    throw Error(path, "unk/bos/eos id outside the vocabulary");
  return v;
}

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path) {
  int64_t bos = -1, eos = -1;
  ScoredBpeVocab vocab = read_model(path, bos, eos);
  return std::make_unique<ScoredBpeTokenizer>(path, std::move(vocab), bos, eos);
}

}  // namespace xcomp
