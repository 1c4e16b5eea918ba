#!/usr/bin/env python3
"""Prints N random QA pairs of a make-qa JSONL file as a Markdown table (for the model card).

Usage: qa-samples.py FILE [N=30] [SEED=0]
"""
import json
import random
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    random.Random(seed).shuffle(rows)
    esc = lambda s: s.replace("|", "\\|").replace("\n", " ")
    print("| # | type | question | answer (span of the abstract) | abstract id |")
    print("|---|---|---|---|---|")
    for i, r in enumerate(rows[:n], 1):
        print(f"| {i} | {r['type']} | {esc(r['question'])} | {esc(r['answers'][0])} | {r['id'].split('#')[0]} |")


if __name__ == "__main__":
    main()
