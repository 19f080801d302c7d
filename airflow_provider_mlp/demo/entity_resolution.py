"""Use case 1, entity resolution: generated candidate title pairs, the matcher, and its evaluation.

``create_title_pairs`` writes two Iceberg tables:

- ``<pairs>`` (e.g. ``content.title_pairs``): ``pair_id``, ``left_title``, ``right_title``,
  ``left_year``, ``right_year``, ``left_cast``, ``right_cast`` -- what a candidate generator
  (blocking) hands a matcher: the same title with typos, punctuation and article changes,
  translated-style variants (``"River, The"``, ``"Part II"``), years off by one and overlapping cast
  lists, next to hard negatives (sequels, remakes, spin-offs of the same family) and random pairs;
- ``<pairs>_truth``: ``pair_id``, ``is_match``, the hidden ground truth the matcher never reads.

Generation is vectorised: a few thousand title families are written in Python, pairs are picked
from them with numpy and gathered with Arrow ``take``, so millions of pairs take seconds.

``score_pairs`` is the matcher one shard runs (the native fused kernel ``match_pairs`` plus a
year rule), ``evaluate`` compares matched pair ids with the truth. The DAG
``mlp_entity_resolution`` and ``benchmarks/entity_resolution.py`` both use them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    from pyiceberg.catalog import Catalog

    from airflow_provider_mlp.fastdata import Table

# The matcher's defaults: what the DAG's Params and the benchmark start from.
TITLE_WEIGHT = 0.6
CAST_WEIGHT = 0.4
MATCH_THRESHOLD = 0.72
MAX_YEAR_GAP = 1

_ADJECTIVES = [
    "Silent",
    "Broken",
    "Golden",
    "Hidden",
    "Last",
    "Little",
    "Lost",
    "Midnight",
    "Crimson",
    "Frozen",
    "Wild",
    "Quiet",
    "Burning",
    "Distant",
    "Electric",
    "Final",
    "Secret",
    "Savage",
    "Hollow",
    "Iron",
    "Scarlet",
    "Velvet",
    "Bitter",
    "Endless",
    "Sacred",
    "Stolen",
    "Forgotten",
    "Northern",
    "Restless",
    "Wicked",
]
_NOUNS = [
    "River",
    "Garden",
    "Empire",
    "Kingdom",
    "Harbor",
    "Station",
    "Letter",
    "Witness",
    "Orchard",
    "Mirror",
    "Frontier",
    "Lantern",
    "Signal",
    "Island",
    "Carnival",
    "Republic",
    "Compass",
    "Tide",
    "Meridian",
    "Cathedral",
    "Voyage",
    "Archive",
    "Canyon",
    "Circus",
    "Monarch",
    "Horizon",
    "Paradox",
    "Summit",
    "Labyrinth",
    "Sparrow",
]
_PLACES = [
    "Lisbon",
    "Berlin",
    "Kyoto",
    "Havana",
    "Cairo",
    "Oslo",
    "Dublin",
    "Lagos",
    "Seoul",
    "Lima",
    "Prague",
    "Marseille",
    "Bombay",
    "Quebec",
    "Tangier",
    "Naples",
    "Vienna",
    "Hanoi",
]
_FIRST = [
    "Ana",
    "Ben",
    "Chloe",
    "Diego",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kira",
    "Luca",
    "Maya",
    "Noah",
    "Olga",
    "Pablo",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
    "Umar",
    "Vera",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zoe",
    "Amara",
    "Bruno",
    "Celine",
    "Dmitri",
]
_LAST = [
    "Almeida",
    "Brandt",
    "Castillo",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Hoffmann",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quintero",
    "Rossi",
    "Sato",
    "Tanaka",
    "Ueda",
    "Varga",
    "Weber",
    "Xu",
    "Yilmaz",
    "Zhang",
    "Abara",
    "Novak",
    "Ferreira",
    "Haddad",
]
_TRANSLATED = {"The": "El", "Night": "Noche", "River": "Rio", "Garden": "Jardin", "Letter": "Lettre"}
_ROMAN = {"2": "II", "3": "III", "4": "IV"}
VARIANTS_PER_TITLE = 5


@dataclass(frozen=True)
class Catalogue:
    """The generated titles: per entity a canonical record and ``VARIANTS_PER_TITLE`` noisy copies."""

    family: np.ndarray  # int64 per entity
    canonical: pa.Table  # title, year, cast per entity
    variants: pa.Table  # row e * VARIANTS_PER_TITLE + k: variant k of entity e


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 4:
        return text
    i = rng.randrange(1, len(text) - 1)
    kind = rng.randrange(0, 4)
    if kind == 0:
        return text[:i] + text[i + 1 :]  # deletion
    if kind == 1:
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]  # transposition
    if kind == 2:
        return text[:i] + text[i] + text[i:]  # doubled letter
    return text[:i] + "aeiou"[rng.randrange(0, 5)] + text[i + 1 :]  # substitution


def _variant_title(rng: random.Random, title: str) -> str:
    kind = rng.randrange(0, 7)
    words = title.split()
    if kind == 0:
        return _typo(rng, title)
    if kind == 1:  # punctuation and ampersands
        return title.replace(" and ", " & ").replace(": ", " - ").replace(" ", " ", 1) + (
            "!" if rng.random() < 0.3 else ""
        )
    if kind == 2 and words[0] == "The":  # catalogue style: "River, The"
        return " ".join(words[1:]) + ", The"
    if kind == 3:  # translated-style: a few words rendered in another language
        return " ".join(_TRANSLATED.get(w, w) for w in words)
    if kind == 4:
        return " ".join(_ROMAN.get(w, w) for w in words) if any(w in _ROMAN for w in words) else title.upper()
    if kind == 5:
        return title.lower()
    return _typo(rng, _typo(rng, title))


def _variant_cast(rng: random.Random, cast: list[str]) -> list[str]:
    out = list(cast)
    if len(out) > 2 and rng.random() < 0.5:
        out.pop(rng.randrange(0, len(out)))  # a credit missing on one side
    if rng.random() < 0.3:
        out.append(f"{_FIRST[rng.randrange(0, len(_FIRST))]} {_LAST[rng.randrange(0, len(_LAST))]}")
    if rng.random() < 0.3:
        i = rng.randrange(0, len(out))
        first, _, last = out[i].partition(" ")
        out[i] = f"{first[0]}. {last}"  # initials
    rng.shuffle(out)
    return out


def _person(rng: random.Random) -> str:
    return f"{_FIRST[rng.randrange(0, len(_FIRST))]} {_LAST[rng.randrange(0, len(_LAST))]}"


def title_catalogue(families: int, seed: int = 16) -> Catalogue:
    """``families`` title families of 2-4 entities each (original, sequel, remake, spin-off) and their variants."""
    import numpy as np
    import pyarrow as pa

    # The stdlib generator: per-item draws are several times cheaper than numpy's scalar calls.
    rng = random.Random(seed)
    family_ids: list[int] = []
    titles: list[str] = []
    years: list[int] = []
    casts: list[list[str]] = []
    for family in range(families):
        adjective = _ADJECTIVES[rng.randrange(0, len(_ADJECTIVES))]
        noun = _NOUNS[rng.randrange(0, len(_NOUNS))]
        shape = rng.randrange(0, 4)
        if shape == 0:
            base = f"The {adjective} {noun}"
        elif shape == 1:
            base = f"{adjective} Night in {_PLACES[rng.randrange(0, len(_PLACES))]}"
        elif shape == 2:
            base = f"The {noun} and the {_NOUNS[rng.randrange(0, len(_NOUNS))]}"
        else:
            base = f"{noun}: {adjective} {_NOUNS[rng.randrange(0, len(_NOUNS))]}"
        year = rng.randrange(1950, 2021)
        cast = [_person(rng) for _ in range(rng.randrange(3, 7))]
        members = [(base, year, cast)]
        for member in range(rng.randrange(1, 4)):
            if member == 0:  # sequel: same lead, new supporting cast, a few years later
                members.append((f"{base} 2", year + rng.randrange(2, 5), cast[:2] + [_person(rng) for _ in range(3)]))
            elif member == 1:  # remake: same title, another era, another cast
                members.append((base, year + rng.randrange(15, 40), [_person(rng) for _ in range(len(cast))]))
            else:  # spin-off with a subtitle
                members.append(
                    (f"{base}: {_PLACES[rng.randrange(0, len(_PLACES))]}", year + 1, cast[1:3] + [_person(rng)])
                )
        for title, member_year, member_cast in members:
            family_ids.append(family)
            titles.append(title)
            years.append(member_year)
            casts.append(member_cast)
    v_titles: list[str] = []
    v_years: list[int] = []
    v_casts: list[list[str]] = []
    for title, year, cast in zip(titles, years, casts, strict=True):
        for _ in range(VARIANTS_PER_TITLE):
            v_titles.append(_variant_title(rng, title))
            # Release years disagree by one between sources (festival vs. theatrical) now and then.
            v_years.append(year + (rng.choice([-1, 1]) if rng.random() < 0.25 else 0))
            v_casts.append(_variant_cast(rng, cast))
    record = pa.schema([("title", pa.string()), ("year", pa.int32()), ("cast", pa.list_(pa.string()))])
    return Catalogue(
        family=np.asarray(family_ids, dtype=np.int64),
        canonical=pa.table({"title": titles, "year": years, "cast": casts}, schema=record),
        variants=pa.table({"title": v_titles, "year": v_years, "cast": v_casts}, schema=record),
    )


def title_pairs(pairs: int, seed: int = 16, match_rate: float = 0.3) -> tuple[pa.Table, pa.Table]:
    """``pairs`` candidate pairs and their ground truth: ``(pairs_table, truth_table)``.

    About ``match_rate`` of the pairs are the same title (canonical vs. a noisy variant, or two
    variants); of the rest, half are hard negatives from the same family, half random titles.
    """
    import numpy as np
    import pyarrow as pa

    catalogue = title_catalogue(max(50, min(4_000, pairs // 40)), seed)
    rng = np.random.default_rng(seed + 1)
    entities = len(catalogue.family)
    left = rng.integers(0, entities, pairs)
    kind = rng.random(pairs)
    is_match = kind < match_rate
    hard = (kind >= match_rate) & (kind < match_rate + (1 - match_rate) / 2)
    # Hard negatives: another entity of the same family (families are contiguous runs of entities).
    starts = np.searchsorted(catalogue.family, catalogue.family, side="left")
    sizes = np.searchsorted(catalogue.family, catalogue.family, side="right") - starts
    sibling = starts[left] + (left - starts[left] + rng.integers(1, 4, pairs)) % sizes[left]
    right = np.where(is_match, left, np.where(hard, sibling, rng.integers(0, entities, pairs)))
    # A "hard" pick in a family of one, or a random pick of the same entity, is a match after all.
    is_match = right == left
    left_variant = rng.random(pairs) < 0.5
    left_rows = left * VARIANTS_PER_TITLE + rng.integers(0, VARIANTS_PER_TITLE, pairs)
    right_rows = right * VARIANTS_PER_TITLE + rng.integers(0, VARIANTS_PER_TITLE, pairs)

    def side(entity: np.ndarray, variant_rows: np.ndarray, use_variant: np.ndarray) -> pa.Table:
        canonical = catalogue.canonical.take(pa.array(entity))
        variant = catalogue.variants.take(pa.array(variant_rows))
        mask = pa.array(use_variant)
        import pyarrow.compute as pc

        return pa.table({name: pc.if_else(mask, variant[name], canonical[name]) for name in ("title", "year", "cast")})

    lefts = side(left, left_rows, left_variant)
    rights = side(right, right_rows, np.ones(pairs, dtype=bool))
    pair_id = pa.array(np.arange(pairs, dtype=np.int64))
    table = pa.table(
        {
            "pair_id": pair_id,
            "left_title": lefts["title"],
            "right_title": rights["title"],
            "left_year": lefts["year"],
            "right_year": rights["year"],
            "left_cast": lefts["cast"],
            "right_cast": rights["cast"],
        }
    )
    truth = pa.table({"pair_id": pair_id, "is_match": pa.array(is_match)})
    return table, truth


def truth_identifier(pairs_table: str) -> str:
    return f"{pairs_table}_truth"


def create_title_pairs(
    identifier: str = "content.title_pairs",
    pairs: int = 200_000,
    *,
    seed: int = 16,
    catalog: Catalog | Mapping[str, Any] | None = None,
    row_group_rows: int = 50_000,
) -> tuple[Table, Table]:
    """Create ``identifier`` and its ``_truth`` table filled with ``pairs`` generated pairs; idempotent.

    Row groups of ``row_group_rows`` rows let the planner cut the table into shards of any size.
    A second call with the same arguments finds both loads committed and changes nothing; other
    arguments (another scale) replace what the tables held.
    """
    from airflow_provider_mlp.demo.data import load_generated

    data, truth = title_pairs(pairs, seed)
    load_id = f"title-pairs-{pairs}-{seed}"
    pairs_table = load_generated(identifier, data, load_id, catalog=catalog, row_group_rows=row_group_rows)
    truth_table = load_generated(
        truth_identifier(identifier), truth, load_id, catalog=catalog, row_group_rows=row_group_rows
    )
    return pairs_table, truth_table


# -- the matcher -------------------------------------------------------------------------------

MATCH_COLUMNS = ["pair_id", "left_title", "right_title", "left_year", "right_year", "left_cast", "right_cast"]


def matches_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([("pair_id", pa.int64()), ("score", pa.float64())])


def score_pairs(
    pairs: pa.Table,
    *,
    threshold: float = MATCH_THRESHOLD,
    title_weight: float = TITLE_WEIGHT,
    cast_weight: float = CAST_WEIGHT,
    max_year_gap: int = MAX_YEAR_GAP,
    threads: int | None = None,
) -> pa.Table:
    """The matched pairs of ``pairs`` (``pair_id``, ``score``): one fused native pass over titles and casts.

    Titles are compared with token-sorted Jaro-Winkler (word order and articles moved do not hurt),
    cast lists with token-sorted Levenshtein over the joined names (a missing or extra credit costs
    a little); a pair also needs release years at most ``max_year_gap`` apart (remakes differ by decades).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from airflow_provider_mlp.kernels import match_pairs

    if pairs.num_rows == 0:
        return matches_schema().empty_table()
    # The year rule first: it is one vectorised pass, and every pair it rules out (most of the
    # hard negatives, remakes decades apart) is a pair the string metrics never have to score.
    gap = pc.abs(pc.subtract(pairs["left_year"], pairs["right_year"]))
    candidates = pairs.filter(pc.fill_null(pc.less_equal(gap, max_year_gap), False))
    if candidates.num_rows == 0:
        return matches_schema().empty_table()
    scores, indices = match_pairs(
        [
            (
                pc.utf8_lower(candidates["left_title"]),
                pc.utf8_lower(candidates["right_title"]),
                title_weight,
                "token_sort_jaro_winkler",
            ),
            (candidates["left_cast"], candidates["right_cast"], cast_weight, "token_sort_levenshtein"),
        ],
        threshold=threshold,
        threads=threads,
    )
    rows = pa.array(indices)
    return pa.table(
        {"pair_id": candidates["pair_id"].take(rows), "score": pa.array(scores).take(rows)}, schema=matches_schema()
    )


def evaluate(matched_ids: pa.Array | pa.ChunkedArray, truth: pa.Table) -> dict[str, float | int]:
    """Precision, recall and F1 of the matched pair ids against ``truth`` (``pair_id``, ``is_match``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    positives = truth.filter(truth["is_match"])["pair_id"]
    matched = pc.unique(pa.chunked_array([matched_ids]) if isinstance(matched_ids, pa.Array) else matched_ids)
    true_positives = int(pc.sum(pc.is_in(matched, value_set=positives)).as_py() or 0)
    predicted = len(matched)
    actual = len(positives)
    precision = true_positives / predicted if predicted else 1.0
    recall = true_positives / actual if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "pairs": truth.num_rows,
        "matched": predicted,
        "true_matches": actual,
        "true_positives": true_positives,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
    }
