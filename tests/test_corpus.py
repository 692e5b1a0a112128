"""data/probe_sentences.txt: the text the attention probes (copying, induction) are measured on."""
import re
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "data" / "probe_sentences.txt"


def test_corpus_size_and_repeats():
    lines = CORPUS.read_text().splitlines()
    assert len(lines) == 95 and all(l.strip() for l in lines)
    assert len(set(lines)) == 95
    # copying and induction scores need a token to recur within the sentence
    words = [[w for w in re.findall(r"[a-z]+", l.lower()) if len(w) >= 3] for l in lines]
    assert sum(len(w) != len(set(w)) for w in words) >= 60
    lengths = [len(l.split()) for l in lines]
    assert min(lengths) >= 6 and max(lengths) <= 40
