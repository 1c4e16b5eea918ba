#!/usr/bin/env bash
# CLI end to end: convert + generate reproduces the golden text; tokenize/detokenize round trip a
# file's exact bytes; bad input exits non-zero with "error: ...". Usage: cli_test.sh XCOMP DATA TOKENIZERS
set -euo pipefail
xcomp="$1"; data="$2"; toks="$3"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$xcomp" convert llama2c "$data/models/stories260K/stories260K.bin" "$data/models/stories260K/tok512.bin" --out "$tmp/m" 2>/dev/null
"$xcomp" generate --model "$tmp/m" --prompt "" --max-new-tokens 256 > "$tmp/out.txt"
cmp -s "$tmp/out.txt" "$data/models/stories260K/stories260K_greedy256_ref.txt" || fail "generate differs from the golden text"

printf 'Hello  world,\n\tcafé 東京 🦙 12345 ' > "$tmp/in.txt"
"$xcomp" tokenize --tokenizer "$toks/llama3/tokenizer.json" --file "$tmp/in.txt" --json > "$tmp/ids.json"
ids=$(tr -d '[]\n' < "$tmp/ids.json")
[ -n "$ids" ] || fail "no ids"
"$xcomp" detokenize --tokenizer "$toks/llama3/tokenizer.json" --ids "$ids" > "$tmp/back.txt"
printf '\n' >> "$tmp/in.txt"  # detokenize ends its output with a newline
cmp -s "$tmp/in.txt" "$tmp/back.txt" || fail "tokenize/detokenize round trip differs"
[ "$("$xcomp" tokenize --tokenizer "$toks/llama3/tokenizer.json" --text "Hi" --bos --json)" = "[128000,13347]" ] || fail "--bos"

if "$xcomp" generate --model "$tmp/nonexistent" --prompt x 2> "$tmp/err.txt"; then fail "missing model accepted"; fi
grep -q "^error: .*nonexistent" "$tmp/err.txt" || fail "error message: $(cat "$tmp/err.txt")"
if "$xcomp" generate --model "$tmp/m" --prompt x --dtype f8 2> "$tmp/err.txt"; then fail "bad dtype accepted"; fi
grep -q "^error: --dtype" "$tmp/err.txt" || fail "dtype message: $(cat "$tmp/err.txt")"
echo "cli ok"
