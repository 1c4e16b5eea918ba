#!/usr/bin/env bash
# Packs what scripts/device/extend.sh needs on a GPU host into .devx (ignored; carried with
# `device run --carry .devx`): the headers and libraries xcomp builds against besides libtorch,
# GoogleTest and the stories260K model (for the GPU tests alone, target xcomp_cuda_tests), the
# arXiv abstracts (train, and val's first 128) and val's first 128 ArxivQA-style pairs (gzipped;
# the train pairs, 7.8 MB gzipped, are made there again by `xcomp data make-qa`, which is
# deterministic: the working tree may carry at most 64 MiB, models/ included). The compressors
# to extend and the base travel with the working tree (models/).
set -euo pipefail
cd "$(dirname "$0")/../.."
data="${XCOMP_DATA_DIR:-../shared/data}"
work="${WORK:-build/default}"
out=.devx
scripts/device/pack-deps.sh "$out" --gpu-tests > /dev/null
mkdir -p "$out/data/arxiv" "$out/qa"
cp "$data/arxiv/train.jsonl.gz" "$out/data/arxiv/"
(set +o pipefail; zcat "$data/arxiv/val.jsonl.gz" | head -n 128 | gzip > "$out/data/arxiv/val.jsonl.gz")
(set +o pipefail; head -n 128 "$work/qa/arxivqa_val.jsonl" | gzip > "$out/qa/arxivqa_val.jsonl.gz")
grep -qx '/.devx/' .git/info/exclude || echo '/.devx/' >> .git/info/exclude
[ "$(zcat "$out/data/arxiv/val.jsonl.gz" | wc -l)" -eq 128 ] && [ "$(zcat "$out/qa/arxivqa_val.jsonl.gz" | wc -l)" -eq 128 ]
du -sh "$out"
