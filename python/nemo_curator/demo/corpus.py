"""A synthetic but realistic web-text corpus: good articles mixed with the junk curation removes.

Deterministic for a given seed, so runs are comparable. Kinds of documents (by design, roughly):
good prose (~70%), too short (~8%), boilerplate with repeated lines (~8%), symbol/markup junk (~6%),
word-salad of very long tokens (~4%), and exact duplicates of earlier good documents (~4%).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an "
    "they you were their one all we can her has there been if more when will would who so no data model "
    "river city market science history music energy water forest school language system network research "
    "garden village harbor museum library summer winter morning evening journey festival engine bridge "
    "mountain valley island coast planet signal theory method result analysis policy economy culture "
    "student teacher doctor farmer artist writer engineer pilot sailor baker painter builder student"
).split()
_JUNK = "#$%&*@!<>{}[]|~^=+/\\"


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choices(_WORDS, k=rng.randint(6, 18))).capitalize() + "."


def _good(rng: random.Random) -> str:
    paras = []
    for _ in range(rng.randint(2, 4)):
        paras.append(" ".join(_sentence(rng) for _ in range(rng.randint(3, 6))))
    return "\n".join(paras)


def _document(rng: random.Random, good_docs: list[str]) -> tuple[str, str]:
    r = rng.random()
    if r < 0.70:
        text = _good(rng)
        good_docs.append(text)
        return "good", text
    if r < 0.78:
        return "short", " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 12)))
    if r < 0.86:
        line = rng.choice(["Click here to subscribe!", "Home | About | Contact", "Accept all cookies"])
        return "boilerplate", "\n".join([line] * rng.randint(8, 30) + [_sentence(rng)])
    if r < 0.92:
        junk = "".join(rng.choice(_JUNK) for _ in range(rng.randint(150, 400)))
        return "junk", junk + " " + _sentence(rng)
    if r < 0.96:
        salad = " ".join(
            "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(15, 40)))
            for _ in range(rng.randint(30, 80))
        )
        return "word_salad", salad
    if good_docs:
        return "duplicate", rng.choice(good_docs)
    return "good", _good(rng)


def generate_corpus(
    directory: str | Path, num_docs: int = 20_000, num_files: int = 24, seed: int = 7
) -> list[Path]:
    """Write `num_docs` JSONL documents (`id`, `url`, `text`, `kind`) into `num_files` files.

    A folder that already holds the corpus of these arguments (its `corpus.manifest` says so) is reused as it is.
    """
    out = Path(directory)
    manifest = out / "corpus.manifest"  # not .json: the reader would take it for data
    wanted = {"num_docs": num_docs, "num_files": num_files, "seed": seed, "version": 2}
    paths = [out / f"crawl-{i:03d}.jsonl" for i in range(num_files)]
    if manifest.exists() and json.loads(manifest.read_text()) == wanted and all(p.exists() for p in paths):
        return paths
    out.mkdir(parents=True, exist_ok=True)
    manifest.unlink(missing_ok=True)
    for stale in out.glob("crawl-*.jsonl"):
        stale.unlink()
    rng = random.Random(seed)
    good: list[str] = []
    handles = [p.open("w", encoding="utf-8") for p in paths]
    try:
        for i in range(num_docs):
            kind, text = _document(rng, good)
            rec = {"id": f"doc-{i:06d}", "url": f"https://example.org/{kind}/{i}", "text": text, "kind": kind}
            handles[i % num_files].write(json.dumps(rec) + "\n")
    finally:
        for h in handles:
            h.close()
    manifest.write_text(json.dumps(wanted))
    return paths
