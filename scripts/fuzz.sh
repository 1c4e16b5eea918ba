#!/usr/bin/env bash
# Fuzzes the readers of untrusted bytes with libFuzzer (tests/fuzz; clang, ASan + UBSan):
# safetensors files and compressed prompts (what POST /v1/prompts receives), torch.save archives,
# config.json, text and sampled ids given to the tokenizers (every tokenizer the tests have), and
# the evaluation metrics on arbitrary prediction/reference pairs.
# Usage: scripts/fuzz.sh [seconds per target, default 120] [target...]
#   targets: safetensors torch_state_dict config compressed_prompt tokenizer tokenizer_file service
#   metrics
#   (default: all)
# Seeds come from tests/fixtures, models/ and, when build/release/xcomp exists, compressed
# prompts it makes; corpora grow in build/fuzz/corpus/<target> and carry over between runs.
# A failure leaves its input in build/fuzz/crashes/<target>/ and makes this script fail:
# reproduce it with build/fuzz/tests/fuzz/fuzz_<target> <that file> (the tokenizer target also
# needs XCOMP_FUZZ_TOKENIZER; the script prints the command).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-120}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors torch_state_dict config compressed_prompt tokenizer tokenizer_file service metrics)
data="${XCOMP_DATA_DIR:-../shared/data}"
scripts/install-deps.sh clang libfuzzer-14-dev jq
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j"$(nproc)"
bin=build/fuzz/tests/fuzz
work=build/fuzz
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
export OMP_NUM_THREADS=1

seed() {  # seed TARGET FILE...: copies files into the target's seed folder
  local dir="$work/seeds/$1"
  shift
  mkdir -p "$dir"
  for f in "$@"; do [ -f "$f" ] && cp "$f" "$dir/$(echo "$f" | tr '/' '_')"; done
}
make_seeds() {
  rm -rf "$work/seeds"
  local small=()
  while IFS= read -r f; do small+=("$f"); done < <(find models/compressors -name '*.safetensors' -size -64k | sort)
  seed safetensors "${small[@]}"
  seed torch_state_dict tests/fixtures/torch/*.bin tests/fixtures/torch/malformed/*.bin \
    tests/fixtures/torch/reference-*/lora_params.pth tests/fixtures/torch/tiny-llama/pytorch_model.bin
  seed config models/base/config.json tests/fixtures/torch/tiny-llama/config.json
  # Texts: each line of the tokenizer fixtures' expected encodings (JSON with its escapes), and
  # the texts themselves.
  mkdir -p "$work/seeds/tokenizer"
  local n=0
  for f in tests/fixtures/tokenizer/*.jsonl; do
    head -n 40 "$f" | jq -r '.text // empty' 2>/dev/null | while IFS= read -r line; do
      printf '%s' "$line" > "$work/seeds/tokenizer/$(basename "$f" .jsonl)-$((n++))"
    done || true
  done
  # Metrics: prediction NUL reference, the pairs of the metric fixtures (texts alone for the rest).
  mkdir -p "$work/seeds/metrics"
  { head -n 200 tests/fixtures/metrics/nltk.jsonl; tail -n 200 tests/fixtures/metrics/nltk.jsonl; } | jq -j '(.prediction // .text) + "\u0000" + (.reference // "") + "\u0001"' |
    awk -v RS='\001' -v dir="$work/seeds/metrics" 'length($0) > 0 { f = dir "/pair-" NR; printf "%s", $0 > f; close(f) }'
  # Tokenizer files: the first byte picks the format (0 tokenizer.json, 1 .model, 2 llama2.c .bin).
  mkdir -p "$work/seeds/tokenizer_file" "$work/seeds/service"
  for f in "$data/models/stories260K/tok512.model" "$data/models/stories260K/tok512.bin"; do
    [ -f "$f" ] || continue
    case "$f" in *.model) b='\x01' ;; *) b='\x02' ;; esac
    { printf "$b"; cat "$f"; } > "$work/seeds/tokenizer_file/$(basename "$f")"
  done
  # Service requests: the first byte picks the route (0 compress, 1 regenerate, 2 ask, 3 upload,
  # 4 delete, 5 tokenize, 6 detokenize); the served compressors are kv-qa-n1 and icae-regen-n1.
  local text="We show that every reciprocity sheaf gives rise to a cycle (pre)module in the sense of Rost."
  printf '\x00{"compressor": "kv-qa-n1", "text": "%s"}' "$text" > "$work/seeds/service/compress"
  printf '\x00{"compressor": "icae-regen-n1", "texts": ["%s", "Short."]}' "$text" > "$work/seeds/service/compress-texts"
  printf '\x01{"compressor": "icae-regen-n1", "text": "%s", "max_new_tokens": 3}' "$text" > "$work/seeds/service/regenerate"
  printf '\x02{"compressor": "kv-qa-n1", "text": "%s", "question": "What?", "max_new_tokens": 2, "temperature": 0.7, "seed": 3}' \
    "$text" > "$work/seeds/service/ask"
  printf '\x02{"text": "%s", "questions": ["What?", "Where?"], "num_beams": 2, "max_new_tokens": 2, "no_repeat_ngram_size": 2}' \
    "$text" > "$work/seeds/service/ask-full"
  printf '\x04%s' 0123456789abcdef0123456789abcdef > "$work/seeds/service/delete"
  printf '\x05{"text": "%s", "pieces": true, "compressor": "kv-qa-n1"}' "$text" > "$work/seeds/service/tokenize"
  printf '\x06{"ids": [1, 2, 300, 5000], "special": true}' > "$work/seeds/service/detokenize"
  if [ -x build/release/xcomp ]; then
    mkdir -p "$work/seeds/compressed_prompt"
    for c in kv-regen-n1 kv-qa-n1 icae-regen-n1 icae-qa-n4; do
      for dtype in f32 bf16 int8; do
        build/release/xcomp compress --model models/base --compressor "models/compressors/$c" --text "$text" \
          --storage-dtype "$dtype" --out "$work/seeds/compressed_prompt/$c-$dtype.safetensors" >/dev/null 2>&1 || true
      done
    done
    seed safetensors "$work"/seeds/compressed_prompt/*-bf16.safetensors
    for f in "$work"/seeds/compressed_prompt/{kv-qa-n1,icae-regen-n1}-{f32,int8}.safetensors; do
      { printf '\x03'; cat "$f"; } > "$work/seeds/service/upload-$(basename "$f")"
    done
    # A small tokenizer.json (300 ids) trained on the fixtures' texts.
    cat "$work"/seeds/tokenizer/* | jq -R -c '{text: .}' > "$work/corpus.jsonl"
    build/release/xcomp tokenizer train --input "$work/corpus.jsonl" --vocab-size 300 \
      --out "$work/small-tokenizer.json" >/dev/null 2>&1 &&
      { printf '\x00'; cat "$work/small-tokenizer.json"; } > "$work/seeds/tokenizer_file/small.json"
  else
    echo "fuzz: build/release/xcomp not built: compressed_prompt starts from the safetensors seeds," \
      "service and tokenizer_file from fewer seeds" >&2
    seed compressed_prompt "${small[@]}"
  fi
}
make_seeds

failed=()
run() {  # run TARGET NAME [env...]: one libFuzzer run of $seconds
  local target="$1" name="$2"
  shift 2
  local corpus="$work/corpus/$name" crashes="$work/crashes/$name"
  mkdir -p "$corpus" "$crashes"
  local max_len=65536
  [ "$target" = metrics ] && max_len=4096  # its ROUGE-L tables cost O(words x words)
  echo "== fuzz_$target ($name), ${seconds}s" >&2
  if ! env "$@" "$bin/fuzz_$target" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
      -max_len=$max_len -print_final_stats=1 -artifact_prefix="$crashes/" "$corpus" "$work/seeds/$target" \
      > "$work/$name.log" 2>&1; then
    failed+=("$name")
    echo "fuzz: $name FAILED: $(grep -m1 -E 'ERROR|property failed|SUMMARY' "$work/$name.log" || true)" >&2
    echo "  log: $work/$name.log; reproduce: env $* $bin/fuzz_$target $(ls -t "$crashes"/* 2>/dev/null | head -1)" >&2
  else
    echo "  $(grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$work/$name.log" | tr '\n' ' ')" >&2
  fi
}
for t in "${targets[@]}"; do
  if [ "$t" = tokenizer ]; then
    run tokenizer tokenizer-shipped XCOMP_FUZZ_TOKENIZER=models/base/tokenizer.json XCOMP_FUZZ_ROUNDTRIP=1
    scripts/fetch-tokenizers.sh build/tokenizers >/dev/null
    for tok in llama3 gpt2; do
      run tokenizer "tokenizer-$tok" XCOMP_FUZZ_TOKENIZER="build/tokenizers/$tok" XCOMP_FUZZ_ROUNDTRIP=1
    done
    # Normalizers (NFC, ...), SentencePiece spaces, added tokens that strip whitespace (the flags_*
    # variants fetch-tokenizers.sh writes): no round trip.
    for tok in qwen3 llama2 gemma3 sentencepiece_json flags_gpt2 flags_qwen3 flags_spm flags_spm_metaspace; do
      run tokenizer "tokenizer-$tok" XCOMP_FUZZ_TOKENIZER="build/tokenizers/$tok"
    done
  elif [ "$t" = service ]; then
    run service service XCOMP_FUZZ_MODELS=models
  else
    run "$t" "$t"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failures in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: no failures" >&2
