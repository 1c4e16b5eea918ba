#!/usr/bin/env bash
# Packs what scripts/device/extend.sh needs on a GPU host into .devx (ignored; carried with
# `device run --carry .devx`): the headers and libraries xcomp builds against besides libtorch
# (no test framework: the run builds the CLI only), the arXiv abstracts (train, and val's first
# 128) and the ArxivQA-style pairs (train, and val's first 128; gzipped). The compressors to
# extend and the base travel with the working tree (models/).
set -euo pipefail
cd "$(dirname "$0")/../.."
data="${XCOMP_DATA_DIR:-../shared/data}"
work="${WORK:-build/default}"
out=.devx
scripts/device/pack-deps.sh "$out" --build-only > /dev/null
mkdir -p "$out/data/arxiv" "$out/qa"
cp "$data/arxiv/train.jsonl.gz" "$out/data/arxiv/"
(set +o pipefail; zcat "$data/arxiv/val.jsonl.gz" | head -n 128 | gzip > "$out/data/arxiv/val.jsonl.gz")
gzip -c "$work/qa/arxivqa_train.jsonl" > "$out/qa/arxivqa_train.jsonl.gz"
(set +o pipefail; head -n 128 "$work/qa/arxivqa_val.jsonl" | gzip > "$out/qa/arxivqa_val.jsonl.gz")
grep -qx '/.devx/' .git/info/exclude || echo '/.devx/' >> .git/info/exclude
[ "$(zcat "$out/data/arxiv/val.jsonl.gz" | wc -l)" -eq 128 ] && [ "$(zcat "$out/qa/arxivqa_val.jsonl.gz" | wc -l)" -eq 128 ]
du -sh "$out"
