#!/usr/bin/env python3
"""kv against icae at each N over the questions of one or more `xcomp eval qa` runs.

Reads each run's answers.jsonl with the QA file it was run on (to know which abstract each question
came from: the part of its "id" before '#'), pools the questions, and prints per row the mean F1
and per N the paired difference kv - icae with two 95% intervals: per question (as `eval qa`
writes in qa.md) and clustered by abstract (questions about one abstract are not independent;
the cluster-robust standard error accounts for it). With --versus, also each row against the
same-named row of other runs over the same questions (a new version of a compressor against the
old one). With --compare A B (repeatable), also row A against row B of the same runs (two versions
of a compressor evaluated side by side under different folder names). Standard library only.

    scripts/qa-paired.py RUN_DIR:QA.jsonl [RUN_DIR:QA.jsonl ...] [--compare ROW_A ROW_B ...]
                         [--versus RUN_DIR:QA.jsonl ...]
"""
import json
import math
import re
import sys
from collections import defaultdict


def load(run_dir, data_file):
    contexts = [json.loads(line)["id"].split("#")[0] for line in open(data_file) if line.strip()]
    rows = []
    for line in open(run_dir + "/answers.jsonl"):
        j = json.loads(line)
        rows.append((contexts[j["index"]], {k: v["f1"] for k, v in j["predictions"].items()}, (data_file, j["index"])))
    return rows


def load_all(args):
    rows = []
    for arg in args:
        run_dir, data_file = arg.split(":", 1)
        rows += load(run_dir, data_file)
    return rows


def paired(diffs, clusters):
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    per_question = 1.96 * sd / math.sqrt(n)
    sums = defaultdict(float)
    for d, c in zip(diffs, clusters):
        sums[c] += d - mean
    g = len(sums)
    clustered = 1.96 * math.sqrt(sum(s * s for s in sums.values()) * g / (g - 1)) / n
    return mean, per_question, clustered, g


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    args = sys.argv[1:]
    versus = args[args.index("--versus") + 1:] if "--versus" in args else []
    if versus:
        args = args[:args.index("--versus")]
    compare = []
    while "--compare" in args:
        i = args.index("--compare")
        if len(args[i + 1:i + 3]) < 2:
            sys.exit("error: --compare needs two row names")
        compare.append((args[i + 1], args[i + 2]))
        del args[i:i + 3]
    rows = load_all(args)
    names = sorted({k for _, p, _ in rows for k in p})
    print(f"{len(rows)} questions about {len({c for c, _, _ in rows})} abstracts\n")
    print("| row | F1 |\n|---|---|")
    for k in names:
        v = [p[k] for _, p, _ in rows if k in p]
        print(f"| {k} | {sum(v) / len(v):.2f} |")
    print("\n| N | kv - icae (F1) | 95% interval, per question | 95% interval, clustered by abstract |")
    print("|---|---|---|---|")
    for k in names:
        m = re.fullmatch(r"kv-(.*)-n(\d+)", k)
        if not m or f"icae-{m.group(1)}-n{m.group(2)}" not in names:
            continue
        other = f"icae-{m.group(1)}-n{m.group(2)}"
        both = [(c, p[k] - p[other]) for c, p, _ in rows if k in p and other in p]
        mean, pq, cl, g = paired([d for _, d in both], [c for c, _ in both])
        print(f"| {m.group(2)} | {mean:+.2f} | {mean - pq:+.2f} to {mean + pq:+.2f} | {mean - cl:+.2f} to {mean + cl:+.2f} |")
    if compare:
        print("\n| rows | A - B (F1) | 95% interval, per question | 95% interval, clustered by abstract |")
        print("|---|---|---|---|")
    for a, b in compare:
        both = [(c, p[a] - p[b]) for c, p, _ in rows if a in p and b in p]
        if not both:
            sys.exit(f"error: --compare {a} {b}: no question has both rows (rows: {', '.join(names)})")
        mean, pq, cl, g = paired([d for _, d in both], [c for c, _ in both])
        print(f"| {a} - {b} | {mean:+.2f} | {mean - pq:+.2f} to {mean + pq:+.2f} | {mean - cl:+.2f} to {mean + cl:+.2f} |")
    if not versus:
        return
    old = load_all(versus)
    if [(c, q) for c, _, q in old] != [(c, q) for c, _, q in rows]:
        sys.exit("error: the --versus runs are not over the same questions in the same order")
    print("\n| row | this - versus (F1) | 95% interval, per question | 95% interval, clustered by abstract |")
    print("|---|---|---|---|")
    for k in names:
        both = [(c, p[k] - o[k]) for (c, p, _), (_, o, _) in zip(rows, old) if k in p and k in o]
        if not both:
            continue
        mean, pq, cl, g = paired([d for _, d in both], [c for c, _ in both])
        print(f"| {k} | {mean:+.2f} | {mean - pq:+.2f} to {mean + pq:+.2f} | {mean - cl:+.2f} to {mean + cl:+.2f} |")


if __name__ == "__main__":
    main()
