#!/usr/bin/python3
"""Reference values for xcomp's nltk_word_tokenize, token_f1_nltk and bleu4_nltk, from NLTK itself.

The paper's evaluation scripts score F1 and BLEU over nltk.word_tokenize tokens. This writes
tests/fixtures/metrics/nltk.jsonl: for each string of the tokenizer fixtures (their "text"
fields) and some hand-written English, its NLTKWordTokenizer tokens (what word_tokenize does to
one sentence); and for pairs of them, the scripts' F1 and NLTK's sentence_bleu with
SmoothingFunction().method1.

Usage: apt-get install python3-nltk; /usr/bin/python3 scripts/make-metric-fixtures.py OUT.jsonl
(Debian's python3-nltk, offline: the punkt sentence model is not needed by what is used here.)
"""
import json
import os
import random
import sys
from collections import Counter

import nltk
from nltk.tokenize import NLTKWordTokenizer
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

out = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
fixtures = os.path.join(here, "..", "tests", "fixtures", "tokenizer")
texts = []
for name in ("llama3.jsonl", "hf_flags_gpt2.jsonl"):
    with open(os.path.join(fixtures, name), encoding="utf-8") as f:
        texts += [json.loads(line)["text"] for line in f]
texts += [
    "We show that every reciprocity sheaf gives rise to a cycle (pre)module in the sense of Rost over a perfect field.",
    "Over a perfect field.",
    "He said, \"it's fine\" -- and 'they'd go' (maybe)... Isn't it?",
    "``Quoted'' text, «chevrons», “curly” and ‘single’ quotes; costs $3.88 & 50% @home #1!",
    "I cannot gimme gonna gotta lemme wanna 'tis 'twas more'n d'ye do it.",
    "e.g. 3.5% of U.S. data; p<0.05, x=y! [a] {b} <c> *d* a:b 1:2 1,000 a,b",
    "The model's accuracy isn't 'good' -- it's great.",
    "Don't WON'T can't I'LL we'RE they've you'd SHE'S",
    "trailing quote' and 'leading, ' spaced ' quotes",
    "Ends with quotes.\"",
    "Ends with bracket.)",
    "Multiple sentences. Here is another. And a third!",
    "...leading dots and trailing dots...",
]
tok = NLTKWordTokenizer()
smooth = SmoothingFunction().method1


def f1(reference, candidate):  # the scripts' compute_f1_score(reference_tokens, candidate_tokens)
    common = Counter(reference) & Counter(candidate)
    same = sum(common.values())
    if same == 0:
        return 0.0
    p, r = same / len(candidate), same / len(reference)
    return 2 * p * r / (p + r)


rows = [{"text": t, "tokens": tok.tokenize(t)} for t in texts]
rng = random.Random(7)
english = [r for r in rows if r["tokens"] and all(ord(c) < 0x250 for c in r["text"])]
for _ in range(300):
    a, b = rng.choice(english), rng.choice(english)
    if rng.random() < 0.5:  # a near copy: shared words make the scores non-trivial
        words = b["text"].split(" ")
        for _ in range(rng.randint(0, 3)):
            if len(words) > 1:
                words.pop(rng.randrange(len(words)))
        a = {"text": " ".join(words), "tokens": tok.tokenize(" ".join(words))}
    if not a["tokens"] or not b["tokens"]:
        continue
    rows.append({"prediction": a["text"], "reference": b["text"],
                 "f1": f1(b["tokens"], a["tokens"]),
                 "bleu": sentence_bleu([b["tokens"]], a["tokens"], smoothing_function=smooth)})
with open(out + ".tmp", "w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
os.replace(out + ".tmp", out)
print(f"{out}: {sum('tokens' in r for r in rows)} tokenizations, {sum('f1' in r for r in rows)} pairs "
      f"(nltk {nltk.__version__})")
