#!/usr/bin/env python3
"""Regeneration scores of the same compressors under several decodings: a Markdown table per
metric (rows: compressors, columns: decodings) and a grouped bar chart of ROUGE-L (PNG, gnuplot).

Reads each `xcomp eval regen` report folder's regen.tsv (one length per folder: the first).

Usage: decoding-figure.py OUT.png NAME=REPORT_DIR [NAME=REPORT_DIR ...]
"""
import csv
import os
import subprocess
import sys


def read(report_dir):
    path = os.path.join(report_dir, "regen.tsv")
    if not os.path.exists(path):
        sys.exit(f"error: {path}: missing (run xcomp eval regen --out {report_dir} first)")
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    if not rows:
        sys.exit(f"error: {path}: no rows")
    length = rows[0]["length"]
    return length, {r["compressor"]: r for r in rows if r["length"] == length}


def main():
    if len(sys.argv) < 3 or any("=" not in a for a in sys.argv[2:]):
        sys.exit(__doc__)
    png = sys.argv[1]
    runs = [a.split("=", 1) for a in sys.argv[2:]]
    tables = [(name, *read(d)) for name, d in runs]
    lengths = {t[1] for t in tables}
    if len(lengths) != 1:
        sys.exit(f"error: the reports are for different lengths: {sorted(lengths)}")
    compressors = list(tables[0][2].keys())
    for name, _, rows in tables:
        if list(rows.keys()) != compressors:
            sys.exit(f"error: report '{name}' has other compressors than '{tables[0][0]}'")
    length = lengths.pop()
    counts = {tables[0][2][c]["count"] for c in compressors}
    print(f"Texts of {length} tokens ({', '.join(sorted(counts))} per compressor).\n")
    for metric, title in (("rouge_l", "ROUGE-L F"), ("bleu4", "BLEU-4")):
        print(f"{title}:\n")
        print("| compressor | " + " | ".join(n for n, _, _ in tables) + " |")
        print("|---|" + "---|" * len(tables))
        for c in compressors:
            print(f"| {c} | " + " | ".join(f"{float(rows[c][metric]):.2f}" for _, _, rows in tables) + " |")
        print()
    if subprocess.call("command -v gnuplot >/dev/null", shell=True) != 0:
        print(f"warning: gnuplot missing; {png} not drawn", file=sys.stderr)
        return
    dat = os.path.splitext(png)[0] + ".dat"
    with open(dat, "w") as f:
        f.write("compressor " + " ".join(f'"{n}"' for n, _, _ in tables) + "\n")
        for c in compressors:
            label = c.split(" (")[0]
            f.write(f'"{label}" ' + " ".join(rows[c]["rouge_l"] for _, _, rows in tables) + "\n")
    plots = ", ".join(f"'{dat}' using {i + 2}:xtic(1) title columnheader({i + 2})" for i in range(len(tables)))
    gp = f"""set terminal pngcairo size 1000,520
set output '{png}'
set title 'Regeneration ROUGE-L of {length}-token texts by decoding'
set ylabel 'ROUGE-L F'
set yrange [0:1]
set style data histograms
set style histogram cluster gap 1
set style fill solid 0.8 border -1
set key top right
set xtics rotate by -25
set grid ytics
plot {plots}
"""
    subprocess.run(["gnuplot"], input=gp.encode(), check=True)


if __name__ == "__main__":
    main()
