#!/usr/bin/env python3
"""Collects the default model's figures from the recipe's work folder (scripts/default-model.sh)
into Markdown for models/MODEL_CARD.md, and draws the training curves (PNG, with gnuplot).

Usage: model-card-figures.py WORK_DIR PLOT_DIR
"""
import glob
import re
import json
import os
import subprocess
import sys


def read_log(path):
    steps, vals = [], []
    if not os.path.exists(path):
        return steps, vals
    for line in open(path):
        j = json.loads(line)
        if "val_loss" in j:
            vals.append(j)
        elif "loss" in j:
            steps.append(j)
    return steps, vals


def smooth(rows, k=50):
    out = []
    for i in range(0, len(rows), k):
        chunk = rows[i:i + k]
        out.append((chunk[-1]["step"], sum(r["loss"] for r in chunk) / len(chunk)))
    return out


def plot(png, title, series, ylabel="loss (nats/token)", xlabel="step"):
    """series: list of (name, [(x, y)])"""
    if subprocess.call("command -v gnuplot >/dev/null", shell=True) != 0:
        print(f"warning: gnuplot missing; {png} not drawn", file=sys.stderr)
        return
    dat = png[:-4] + ".dat"
    with open(dat, "w") as f:
        for name, pts in series:
            f.write(f'"{name}"\n')
            for x, y in pts:
                f.write(f"{x} {y}\n")
            f.write("\n\n")
    plots = ", ".join(f"'{dat}' index {i} using 1:2 with lines lw 2 title '{name}'" for i, (name, _) in enumerate(series))
    gp = (f"set terminal pngcairo size 900,500\nset output '{png}'\nset title '{title}'\nset xlabel '{xlabel}'\n"
          f"set ylabel '{ylabel}'\nset grid\nset key top right\nplot {plots}\n")
    subprocess.run(["gnuplot"], input=gp.encode(), check=True)
    os.remove(dat)


def main():
    work, plots = sys.argv[1], sys.argv[2]
    os.makedirs(plots, exist_ok=True)
    steps, vals = read_log(f"{work}/base/pretrain_log.jsonl")
    if steps:
        plot(f"{plots}/base_pretraining.png", "Base LM pretraining (bf16, 2-core CPU)",
             [("train loss (mean of 50 steps)", smooth(steps)), ("validation loss (arXiv val)", [(v["step"], v["val_loss"]) for v in vals])])
        tok = sum(1 for _ in steps)
        print(f"## Base pretraining\n\nsteps {steps[-1]['step']}, last tokens/s {steps[-1]['tokens_per_s']:.0f}")
        print("\n| step | " + " | ".join(str(v["step"]) for v in vals) + " |")
        print("|---|" + "---|" * len(vals))
        print("| validation loss | " + " | ".join(f"{v['val_loss']:.3f}" for v in vals) + " |")
        print("| validation ppl | " + " | ".join(f"{v['val_ppl']:.1f}" for v in vals) + " |\n")
    series = []
    print("## Compressors\n\n| run | steps | wall time | last train loss (mean of 20) | validation loss |")
    print("|---|---:|---:|---:|---:|")
    # Regeneration curricula: NAME-t16, NAME-t48, ... then NAME (the last stage); one curve each,
    # steps counted across the stages.
    runs = sorted(os.path.basename(d.rstrip("/")) for d in glob.glob(f"{work}/compressors/*/"))
    def stage_key(name):
        base, _, t = name.rpartition("-t")
        return (base, int(t)) if t.isdigit() else (name, 10**9)
    runs.sort(key=stage_key)
    offsets = {}
    for name in runs:
        d = f"{work}/compressors/{name}"
        s, v = read_log(f"{d}/train_log.jsonl")
        if not s:
            continue
        done = os.path.exists(f"{d}/recipe_done")
        last = sum(r["loss"] for r in s[-20:]) / len(s[-20:])
        wall = s[-1].get("elapsed_s", 0)
        val = f"{v[-1]['val_loss']:.3f}" if v else "-"
        print(f"| {name}{'' if done else ' (unfinished)'} | {s[-1]['step']} | {wall / 60:.1f} min | {last:.3f} | {val} |")
        if "regen" in name:
            key = stage_key(name)[0]
            off = offsets.get(key, 0)
            pts = [(x + off, y) for x, y in smooth(s, 20)]
            offsets[key] = off + s[-1]["step"]
            if series and series[-1][0] == key:
                series[-1][1].extend(pts)
            else:
                series.append((key, pts))
    if series:
        plot(f"{plots}/compressor_training.png", "Regeneration compressors: training loss (curriculum 16, 48, 96 tokens)", series)
    # GPU continuations (stages extend-regen / extend-qa): WORK/extended, and WORK/extended-r1,
    # WORK/extended-r2 for earlier rounds, each continued by the next (a compressor is chained
    # through the rounds that hold it). Validation loss against training time.
    rounds = [f"{work}/extended-r1", f"{work}/extended-r2", f"{work}/extended"]
    gpu = []
    for name in sorted(os.path.basename(d.rstrip("/")) for d in glob.glob(f"{work}/extended/*/")):
        t0, pts, rows = 0.0, [], []
        for d in (f"{r}/{name}" for r in rounds):
            s, v = read_log(f"{d}/train_log.jsonl")
            if not s:
                continue
            per_step = s[-1]["elapsed_s"] / s[-1]["step"]
            pts += [(t0 + r["step"] * per_step, r["val_loss"]) for r in v]
            last = sum(r["loss"] for r in s[-20:]) / len(s[-20:])
            rows.append(f"| {name} (GPU round {len(rows) + 1}) | {s[-1]['step']} | {s[-1]['elapsed_s']:.0f} s | "
                        f"{last:.3f} | {v[-1]['val_loss']:.3f} |" if v else "")
            t0 += s[-1]["elapsed_s"]
        print("\n".join(r for r in rows if r))
        if pts:
            gpu.append((name, pts))
    if gpu:
        for objective in ("regen", "qa"):
            series = [(n, p) for n, p in gpu if f"-{objective}-" in n]
            if series:
                plot(f"{plots}/gpu_{objective}_validation.png",
                     f"{objective} compressors continued on a GPU (H200, then H100): validation loss", series,
                     ylabel="validation loss (nats/token)", xlabel="seconds of GPU training (6 runs side by side)")
    # The CPU anneal (stage anneal): WORK/annealed, each continuing its extended run with the lr
    # decaying linearly to 0; WORK/anneal-probe holds the probes that chose its lr (folders named
    # COMPRESSOR-lrLR-SCHEDULE[-stopped]). Validation loss against steps, from the continued run's
    # last validation (step 0).
    series = []
    runs = [(os.path.basename(d.rstrip("/")), d) for d in sorted(glob.glob(f"{work}/annealed/*/"))]
    runs += [(os.path.basename(d.rstrip("/")) + " (probe)", d) for d in sorted(glob.glob(f"{work}/anneal-probe/*/"))]
    for name, d in runs:
        s, v = read_log(f"{d}/train_log.jsonl")
        if not s or not v:
            continue
        base_name = re.match(r"(kv|icae)-(regen|qa)-n\d+", name).group(0)
        _, v0 = read_log(f"{work}/extended/{base_name}/train_log.jsonl")
        if not v0:
            continue
        pts = [(0, 0.0)] + [(r["step"], r["val_loss"] - v0[-1]["val_loss"]) for r in v]
        last = sum(r["loss"] for r in s[-20:]) / len(s[-20:])
        start = f"{v0[-1]['val_loss']:.3f} -> "
        print(f"| {name} (CPU anneal) | {s[-1]['step']} | {s[-1]['elapsed_s']:.0f} s | {last:.3f} | "
              f"{start}{v[-1]['val_loss']:.3f} |")
        series.append((name, pts))
    if series:
        plot(f"{plots}/anneal_validation.png",
             "Compressors annealed on the CPU (shipped: lr 2e-4 -> 0, batch 16, all regen + kv-qa-n16; probes: kv-regen N=16)",
             series, ylabel="validation loss change from the GPU-trained start (nats/token)",
             xlabel="step of 16 texts")


if __name__ == "__main__":
    main()
