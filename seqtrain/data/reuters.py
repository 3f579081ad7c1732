"""Reuters-21578 (Lewis 1997) from its SGML distribution, and the standard single-label subsets.

Each `reut2-NNN.sgm` holds up to 1,000 `<REUTERS ...>` records with the
attributes `TOPICS`, `LEWISSPLIT`, `NEWID`, a `<TOPICS>` list of `<D>` topic
codes, and a `<TEXT>` with an optional `<TITLE>` and `<BODY>`. The files are
Latin-1 with SGML character references (`&lt;`, `&#3;`).

Subsets (title and body joined by a line break as a document's text; the
label is the first listed topic):

- `r8`, `r52`: Cardoso-Cachopo's (2007) single-label sets on the ModApte
  split: documents with TOPICS="YES" in LEWISSPLIT TRAIN (train) or TEST
  (test) that have exactly one topic; of the 90 topics with at least one
  such-split training and one test document in ModApte ("R90"), those that
  keep at least one single-topic training and test document (52: R52), and
  of the 10 most frequent ModApte topics, those that do (8: R8).
- `reuters46`: the lectures' (Keras `reuters.load_data`) 46 topics, whose
  filter Keras never published. This one gives Keras' count exactly (11,228):
  every record of the 21,578 (any LEWISSPLIT) with at least one topic,
  labelled by its first listed topic, kept when that topic is among the 46
  most frequent first topics (no ties at the cut); shuffled with the run's
  seed and split 80/20 (Keras' `test_split=0.2`). Requiring exactly one topic
  instead would keep 9,387 records.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from seqtrain.errors import SeqtrainError

FILES = [f"reut2-{i:03d}.sgm" for i in range(22)]
SUBSETS = ("reuters46", "r8", "r52")

_RECORD = re.compile(r"<REUTERS\b([^>]*)>(.*?)</REUTERS>", re.S)
_ATTR = re.compile(r'(\w+)="([^"]*)"')
_TOPICS = re.compile(r"<TOPICS>(.*?)</TOPICS>", re.S)
_D = re.compile(r"<D>(.*?)</D>", re.S)
_TITLE = re.compile(r"<TITLE>(.*?)</TITLE>", re.S)
_BODY = re.compile(r"<BODY>(.*?)</BODY>", re.S)


@dataclass
class Article:
    newid: int
    topics: list[str]
    has_topics: bool  # TOPICS="YES": the indexers meant to assign topics (ModApte keeps only these)
    lewis_split: str  # TRAIN, TEST or NOT-USED
    title: str
    body: str

    @property
    def text(self) -> str:
        return "\n".join(part for part in (self.title, self.body) if part)


def _clean(sgml: str) -> str:
    # Control characters written as references (&#3; ends every body) are dropped, the rest decoded.
    return html.unescape(re.sub(r"&#([0-9]|[12][0-9]|3[01]);", "", sgml)).strip()


def parse_sgml(text: str) -> list[Article]:
    """The records of one SGML file's contents, in file order."""
    articles = []
    for attrs, inner in _RECORD.findall(text):
        a = dict(_ATTR.findall(attrs))
        topics = _TOPICS.search(inner)
        title, body = _TITLE.search(inner), _BODY.search(inner)
        articles.append(Article(
            int(a.get("NEWID", 0)),
            _D.findall(topics.group(1)) if topics else [],
            a.get("TOPICS") == "YES",
            a.get("LEWISSPLIT", ""),
            _clean(title.group(1)) if title else "",
            _clean(body.group(1)) if body else "",
        ))
    return articles


def read_corpus(folder: Path) -> list[Article]:
    """Every record of the 22 files in `folder` (Latin-1, as distributed)."""
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise SeqtrainError(f"{folder} lacks {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}: not the Reuters-21578 distribution")
    return [article for name in FILES for article in parse_sgml((folder / name).read_text(encoding="latin-1"))]


def select(articles: list[Article], subset: str) -> tuple[list[Article], list[Article] | None]:
    """(train, test) single-topic articles of a subset; test is None where the run splits it (reuters46)."""
    if subset == "reuters46":
        tagged = [a for a in articles if a.topics]
        top = {t for t, _ in Counter(a.topics[0] for a in tagged).most_common(46)}
        return [a for a in tagged if a.topics[0] in top], None
    if subset not in ("r8", "r52"):
        raise SeqtrainError(f"unknown Reuters subset '{subset}'; choose {', '.join(SUBSETS)}")
    train = [a for a in articles if a.has_topics and a.lewis_split == "TRAIN" and a.topics]
    test = [a for a in articles if a.has_topics and a.lewis_split == "TEST" and a.topics]
    train_counts = Counter(t for a in train for t in a.topics)
    test_counts = Counter(t for a in test for t in a.topics)
    r90 = {t for t in train_counts if test_counts[t]}
    if subset == "r8":
        allowed = {t for t, _ in Counter({t: train_counts[t] + test_counts[t] for t in r90}).most_common(10)}
    else:
        allowed = r90
    train1 = [a for a in train if len(a.topics) == 1 and a.topics[0] in allowed]
    test1 = [a for a in test if len(a.topics) == 1 and a.topics[0] in allowed]
    kept = {a.topics[0] for a in train1} & {a.topics[0] for a in test1}
    return [a for a in train1 if a.topics[0] in kept], [a for a in test1 if a.topics[0] in kept]
