#!/usr/bin/python3
"""Splits ../shared/data/tinystories/tinystories_val.txt into sentences of 6-14 words and writes
{"text": ...} JSONL: the first 200 distinct sentences to VAL, the rest to TRAIN. Standard library
only; deterministic. Usage: tinystories-sentences.py INPUT TRAIN VAL"""
import json
import re
import sys

if len(sys.argv) != 4:
    sys.exit(__doc__)
text = open(sys.argv[1], encoding="utf-8").read()
sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if 6 <= len(s.split()) <= 14]
sentences = list(dict.fromkeys(sentences))
with open(sys.argv[3], "w", encoding="utf-8") as f:
    for s in sentences[:200]:
        f.write(json.dumps({"text": s}) + "\n")
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for s in sentences[200:]:
        f.write(json.dumps({"text": s}) + "\n")
print(f"{len(sentences) - 200} train, 200 val sentences", file=sys.stderr)
