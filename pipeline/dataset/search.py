"""Ranked fuzzy + phonetic person search, robust to Catalan/Spanish spelling variation.

Index (RUN_DIR/index/, rebuilt when the store changes): `people.sqlite` holds one row per
person with its phonetic name keys, birth year, place and the name cell's box; `keys.npy` /
`pids.npy` are a sorted array of 64-bit hashes of each person's single keys and key pairs
(given+surname, surname+surname, any order), so a query looks up its own key pairs with a
binary search and only scores the few thousand candidates that share two name parts (or one,
for a one-word query). Scoring matches query words to the candidate's words as a bag
(swapped surnames score the same), exact phonetic/equivalent keys first, then edit distance.

Restricted persons (pipeline.dataset.embargo) never appear in results unless include_restricted.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sqlite3
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from pydantic import BaseModel
from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein

from pipeline.dataset import dataset, embargo
from pipeline.errors import UsageError
from pipeline.dataset.names import fold, name_tokens, phonetic, query_keys

INDEX_DIR = "index"
CROPS_DIR = "crops"
MAX_CANDIDATES = 20_000
NEAR_KEYS = 3  # known keys tried for a word that matches none
NEAR_KEY_SIMILARITY = 0.7
MIN_SCORE = 0.5
PARTIAL_MATCH = 0.5  # weaker word similarities are chance
ABBREVIATION_SCORE = 0.85  # 'J.' vs 'Josep': consistent, not proof


class SearchHit(BaseModel):
    person_id: str
    page_id: str
    row: int
    name: str
    birth_year: int | None
    birth_place: str | None
    score: float
    confidence: float | None
    crop: str | None = None  # path of the name cell crop, made on demand


class SearchQuery(BaseModel):
    text: str
    born: tuple[int, int] | None = None
    place: str | None = None
    limit: int = 10
    include_restricted: bool = False


def parse_born(text: str | None) -> tuple[int, int] | None:
    """'1880-1890' or '1885' -> inclusive year range."""
    if not text:
        return None
    match = re.fullmatch(r"\s*(\d{4})\s*(?:[-–:]\s*(\d{4}))?\s*", text)
    if not match:
        raise UsageError(f"--born expects YEAR or YEAR-YEAR, got {text!r}")
    start, end = int(match.group(1)), int(match.group(2) or match.group(1))
    if end < start:
        raise UsageError(f"--born {text!r}: the range ends before it starts")
    return start, end


def _hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little", signed=True)


def person_keys(keys: list[str]) -> set[str]:
    """Single keys and unordered key pairs of one person's name."""
    pairs = {"|".join(sorted(pair)) for pair in itertools.combinations(keys, 2) if pair[0] != pair[1]}
    return {*keys, *pairs}


# --- index ------------------------------------------------------------------------------------


def index_dir(run_dir: Path) -> Path:
    return Path(run_dir) / INDEX_DIR


def store_fingerprint(run_dir: Path, rule: embargo.EmbargoRule) -> str:
    """Changes whenever the store (or its WAL) is written, or the embargo cutoff moves."""
    return f"{rule.cutoff().isoformat()}/{rule.years}/{dataset.file_fingerprint(dataset.store_path(run_dir))}"


def _name_cell_boxes(run_dir: Path) -> dict[str, tuple[int, int, int, int]]:
    with dataset.readonly(dataset.store_path(run_dir)) as connection:
        rows = connection.execute("SELECT cell_id, x0, y0, x1, y1 FROM cells WHERE field = 'name'").fetchall()
    return {cell_id: box for cell_id, *box in rows}


def build_index(run_dir: Path, rule: embargo.EmbargoRule | None = None) -> int:
    """(Re)build RUN_DIR/index from the current persons; returns the number indexed."""
    rule = rule or embargo.load_rule(run_dir)
    fingerprint = store_fingerprint(run_dir, rule)
    persons = dataset.load(run_dir, include_restricted=True, rule=rule, write_report=False).persons
    boxes = _name_cell_boxes(run_dir)
    folder = index_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "people.sqlite.tmp"
    tmp.unlink(missing_ok=True)
    keys, pids, vocabulary = [], [], set()
    columns = persons.select(
        [
            "person_id",
            "page_id",
            "row",
            "name",
            "birth_year",
            "birth_place",
            "confidence",
            "restricted",
            "cell_ids",
            "x0",
            "y0",
            "x1",
            "y1",
        ]
    ).to_pydict()
    rows = []
    for pid, values in enumerate(zip(*columns.values())):
        person_id, page_id, row, name, birth_year, place, confidence, restricted, cell_ids, *row_box = values
        tokens = name_tokens(name or "")
        token_keys = [token.key for token in tokens]
        vocabulary.update(token_keys)
        for key in person_keys(token_keys):
            keys.append(_hash(key))
            pids.append(pid)
        name_cell = json.loads(cell_ids or "{}").get("name")
        box = boxes.get(name_cell) or tuple(row_box)
        rows.append(
            (
                pid,
                person_id,
                page_id,
                row,
                name,
                " ".join(token_keys),
                " ".join(token.folded for token in tokens),
                birth_year,
                place,
                fold(place) if place else None,
                confidence,
                int(bool(restricted)),
                *box,
            )
        )
    with sqlite3.connect(tmp) as connection:
        connection.execute(
            "CREATE TABLE people (pid INTEGER PRIMARY KEY, person_id TEXT, page_id TEXT, row INTEGER, "
            "name TEXT, keys TEXT, folded TEXT, birth_year INTEGER, birth_place TEXT, place_folded TEXT, "
            "confidence REAL, "
            "restricted INTEGER, x0 INTEGER, y0 INTEGER, x1 INTEGER, y1 INTEGER)"
        )
        connection.executemany(f"INSERT INTO people VALUES ({','.join('?' * 16)})", rows)
        connection.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        connection.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (fingerprint,))
    key_array, pid_array = np.array(keys, dtype=np.int64), np.array(pids, dtype=np.int32)
    order = np.argsort(key_array, kind="stable")
    np.save(folder / "keys.npy", key_array[order])
    np.save(folder / "pids.npy", pid_array[order])
    (folder / "vocabulary.json").write_text(
        json.dumps(sorted(vocabulary), ensure_ascii=False), encoding="utf-8"
    )
    tmp.replace(folder / "people.sqlite")
    return len(rows)


def _indexed_fingerprint(run_dir: Path) -> str | None:
    path = index_dir(run_dir) / "people.sqlite"
    if not path.is_file():
        return None
    with dataset.readonly(path) as connection:
        row = connection.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
    return row[0] if row else None


def ensure_index(run_dir: Path, rule: embargo.EmbargoRule | None = None) -> None:
    rule = rule or embargo.load_rule(run_dir)
    if _indexed_fingerprint(run_dir) != store_fingerprint(run_dir, rule):
        print("search: the store changed; (re)building the name index...", file=sys.stderr)
        build_index(run_dir, rule)


# --- query ------------------------------------------------------------------------------------


class Searcher:
    """An opened index; reuse it for many queries (the CLI opens one per call)."""

    def __init__(self, run_dir: Path, rule: embargo.EmbargoRule | None = None, refresh: bool = True) -> None:
        self.run_dir = Path(run_dir)
        if refresh:
            ensure_index(self.run_dir, rule)
        folder = index_dir(self.run_dir)
        self.keys = np.load(folder / "keys.npy", mmap_mode="r")
        self.pids = np.load(folder / "pids.npy", mmap_mode="r")
        self.people = sqlite3.connect(
            dataset.readonly_uri(folder / "people.sqlite"), uri=True, check_same_thread=False
        )
        self.vocabulary = json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))
        self.known = set(self.vocabulary)

    def close(self) -> None:
        self.people.close()

    def _lookup(self, key_strings: set[str]) -> np.ndarray:
        found = []
        for key in key_strings:
            value = _hash(key)
            start = np.searchsorted(self.keys, value, side="left")
            end = np.searchsorted(self.keys, value, side="right")
            if end > start:
                found.append(np.asarray(self.pids[start:end]))
        if not found:
            return np.empty(0, dtype=np.int32)
        # Persons matching more of the query's key pairs first, so the best survive the cap.
        pids, counts = np.unique(np.concatenate(found), return_counts=True)
        return pids[np.argsort(-counts, kind="stable")][:MAX_CANDIDATES]

    def word_keys(self, word: str) -> set[str]:
        """The word's keys; for a word no indexed name has (a misreading), the nearest known keys."""
        keys = query_keys(word)
        if keys & self.known:
            return keys
        near = process.extract(
            phonetic(word),
            self.vocabulary,
            scorer=Levenshtein.normalized_similarity,
            limit=NEAR_KEYS,
            score_cutoff=NEAR_KEY_SIMILARITY,
        )
        return keys | {key for key, _, _ in near}

    def candidates(self, words: list[str]) -> np.ndarray:
        """Persons sharing two name parts with the query (one for a one-word query)."""
        word_keys = [self.word_keys(word) for word in words]
        if len(word_keys) == 1:
            return self._lookup(word_keys[0])
        pairs = {
            "|".join(sorted((a, b)))
            for keys_a, keys_b in itertools.combinations(word_keys, 2)
            for a in keys_a
            for b in keys_b
            if a != b
        }
        found = self._lookup(pairs)
        # No two words agree (two misspellings): fall back to single words.
        return found if found.size else self._lookup(set().union(*word_keys))

    def search(self, query: SearchQuery, crops: bool = False) -> list[SearchHit]:
        words = [token.folded for token in name_tokens(query.text)]
        if not words:
            raise UsageError("empty search: give at least one name")
        scorer = NameScorer(words)
        place = fold(query.place) if query.place else None
        scored = [
            (score, row)
            for row in self._fetch(self.candidates(words), query)
            if (score := self._score(scorer, row, query, place)) >= MIN_SCORE
        ]
        scored.sort(key=lambda item: (-item[0], -(item[1][9] or 0)))  # ties: the surer reading first
        hits = [
            SearchHit(
                person_id=row[0],
                page_id=row[1],
                row=row[2],
                name=row[3],
                birth_year=row[6],
                birth_place=row[7],
                score=round(score, 4),
                confidence=row[9],
            )
            for score, row in scored[: query.limit]
        ]
        if crops:
            for hit in hits:
                hit.crop = str(name_crop(self.run_dir, hit.person_id, self.people, query.include_restricted))
        return hits

    def _fetch(self, pids: np.ndarray, query: SearchQuery) -> list[tuple]:
        conditions = [] if query.include_restricted else ["restricted = 0"]
        if query.born:  # a year's slack: birth years derived from ages are off by one
            conditions.append(
                f"(birth_year IS NULL OR birth_year BETWEEN {query.born[0] - 1} AND {query.born[1] + 1})"
            )
        where = f" AND {' AND '.join(conditions)}" if conditions else ""
        self.people.execute("DROP TABLE IF EXISTS temp.wanted")
        self.people.execute("CREATE TEMP TABLE wanted (pid INTEGER PRIMARY KEY)")
        self.people.executemany("INSERT INTO temp.wanted VALUES (?)", ((int(pid),) for pid in pids))
        # CROSS JOIN makes SQLite loop over the few wanted ids, not over every person.
        return self.people.execute(
            "SELECT person_id, page_id, row, name, keys, folded, birth_year, birth_place, place_folded, "
            "confidence "
            f"FROM temp.wanted AS w CROSS JOIN people AS p ON p.pid = w.pid WHERE 1{where}"
        ).fetchall()

    @staticmethod
    def _score(scorer: NameScorer, row: tuple, query: SearchQuery, place: str | None) -> float:
        keys, folded, birth_year, place_folded = row[4], row[5], row[6], row[8]
        score = scorer.score(keys.split(), folded.split())
        if query.born and birth_year is None:
            score -= 0.05  # unknown birth year: possible, less likely
        if place is not None:
            place_score = fuzz.token_set_ratio(place, place_folded or "") / 100
            if place_score < 0.8:
                return 0.0
            score += 0.05 * place_score
        return score


class NameScorer:
    """Bag matching of a query's words to a candidate's name words, order-free (swapped surnames
    score the same); 1.0 = every word matched exactly. Word similarities are memoised, since
    candidates share their name words."""

    def __init__(self, words: list[str]) -> None:
        self.words = words
        self.word_keys = [query_keys(word) for word in words]
        self.memo: dict[tuple[int, str, str], float] = {}

    def similarity(self, index: int, key: str, folded: str) -> float:
        cached = self.memo.get((index, key, folded))
        if cached is None:
            cached = self.memo[(index, key, folded)] = _word_similarity(
                self.words[index], self.word_keys[index], key, folded
            )
        return cached

    def score(self, keys: list[str], folded: list[str]) -> float:
        if not keys:
            return 0.0
        free = list(range(len(keys)))
        total = 0.0
        for index in range(len(self.words)):
            best, position = max(
                ((self.similarity(index, keys[i], folded[i]), i) for i in free), default=(0.0, -1)
            )
            if best >= PARTIAL_MATCH:  # a misread letter still counts, for what it is worth
                total += best
                free.remove(position)
        # Mostly "how much of the query matched", a little "how much of the name was asked for".
        return 0.85 * total / len(self.words) + 0.15 * total / max(len(self.words), len(keys))


def _word_similarity(word: str, word_keys: set[str], key: str, folded: str) -> float:
    if key in word_keys:
        return 1.0
    if len(word) <= 2 and folded.startswith(word):  # initial or clerk's abbreviation not in the table
        return ABBREVIATION_SCORE
    best_key = max(Levenshtein.normalized_similarity(candidate, key) for candidate in word_keys)
    return max(best_key, Levenshtein.normalized_similarity(word, folded)) * 0.9


def search(run_dir: Path, query: SearchQuery, crops: bool = True) -> list[SearchHit]:
    searcher = Searcher(run_dir)
    try:
        return searcher.search(query, crops=crops)
    finally:
        searcher.close()


# --- crops ------------------------------------------------------------------------------------


def crop_image(
    run_dir: Path, page_id: str, box: tuple[int, int, int, int], name: str, restricted_rows: Iterable[int] = ()
) -> Path | None:
    """Cut `box` (original page pixels), inset from its ruling lines, out of the page image
    RUN_DIR/images/<page_id>.jpg into RUN_DIR/crops/<name>.jpg, with the masked cells of `restricted_rows` of the page that
    reach into it painted over (embargo.redact). Cut anew each time: which rows are masked
    depends on the caller (--include-restricted) and on the store."""
    source = Path(run_dir) / "images" / f"{page_id}.jpg"
    if not source.is_file() or None in box:
        return None
    from PIL import Image

    with Image.open(source) as image:
        x0, y0, x1, y1 = embargo.row_crop_box(box, image.width, image.height)
        region = np.array(image.convert("L").crop((x0, y0, x1, y1)))
    hidden = dataset.page_hidden_boxes(run_dir, page_id, restricted_rows)
    embargo.redact(region, [box for boxes in hidden.values() for box in boxes], origin=(x0, y0))
    target = Path(run_dir) / CROPS_DIR / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.jpg"
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(region).save(target, quality=88)
    return target


def name_crop(
    run_dir: Path, person_id: str, people: sqlite3.Connection, include_restricted: bool
) -> Path | None:
    """The name cell of a hit, with the page's other restricted rows masked unless include_restricted."""
    row = people.execute(
        "SELECT page_id, row, x0, y0, x1, y1 FROM people WHERE person_id = ?", (person_id,)
    ).fetchone()
    if not row:
        return None
    restricted = [] if include_restricted else [
        number
        for (number,) in people.execute(
            "SELECT row FROM people WHERE page_id = ? AND restricted = 1 AND row != ?", (row[0], row[1])
        )
    ]
    return crop_image(run_dir, row[0], tuple(row[2:]), f"{person_id}-name", restricted)


def timed_search(searcher: Searcher, query: SearchQuery) -> tuple[list[SearchHit], float]:
    start = time.perf_counter()
    hits = searcher.search(query)
    return hits, time.perf_counter() - start
