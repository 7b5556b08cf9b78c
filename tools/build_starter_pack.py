"""Build the starter data pack shipped inside the wheel (bench/starter/) from the shared data mirror.

A seeded subset, not a copy: the same item ids in every language of a dataset (so parallel
sentences stay parallel), in the mirror's layout (<dataset>/<lang>.<split>.jsonl) and field names,
with a LICENSE and an ATTRIBUTION.md beside each dataset's files. Rerunning it with the same
mirror writes the same bytes.

    python tools/build_starter_pack.py --mirror ../shared/data            # writes bench/starter/
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

SEED = "accessbench-starter-v1"
LANGUAGES = ["eng", "swh", "hau", "yor", "amh", "zul", "som", "ibo", "mya", "khm"]
FLORES_CODES = {
    "eng": "eng_Latn",
    "swh": "swh_Latn",
    "hau": "hau_Latn",
    "yor": "yor_Latn",
    "amh": "amh_Ethi",
    "zul": "zul_Latn",
    "som": "som_Latn",
    "ibo": "ibo_Latn",
    "mya": "mya_Mymr",
    "khm": "khm_Khmr",
}
# dataset folder → (id field, {split: items}, file prefix of each language, licence, attribution)
PACK = {
    "sib200": ("index_id", {"test": 40, "dev": 7}, FLORES_CODES),
    "flores200": ("id", {"devtest": 40, "dev": 5}, FLORES_CODES),
    "tico19": ("stringID", {"test": 40, "dev": 5}, {code: code for code in LANGUAGES if code != "eng"}),
}

LICENCES = {
    "sib200": (
        "SIB-200 labels and data layout: Apache License 2.0 (https://www.apache.org/licenses/LICENSE-2.0),\n"
        "repository https://github.com/dadelani/sib-200.\n\n"
        "Every `text` is a FLORES-200 sentence: Creative Commons Attribution-ShareAlike 4.0 International\n"
        "(CC BY-SA 4.0, https://creativecommons.org/licenses/by-sa/4.0/legalcode), (c) Meta Platforms and\n"
        "the FLORES-200 translators. This subset is shared under the same licence.\n"
    ),
    "flores200": (
        "FLORES-200: Creative Commons Attribution-ShareAlike 4.0 International (CC BY-SA 4.0,\n"
        "https://creativecommons.org/licenses/by-sa/4.0/legalcode), (c) Meta Platforms and the FLORES-200\n"
        "translators. This subset is shared under the same licence.\n"
    ),
    "tico19": (
        "TICO-19 translations: Creative Commons CC0 1.0 Universal (https://creativecommons.org/publicdomain/zero/1.0/legalcode).\n\n"
        "The English source sentences (`sourceString`) keep the licence of their source, given per row in\n"
        "the field `license`: CC BY-SA 3.0 / 2.5 (Wikipedia, Wikinews, Wikisource), CC BY 4.0 (PubMed\n"
        "abstracts) or public (CMU medical-domain sentences); the row's `url` names the source document.\n"
    ),
}
ATTRIBUTIONS = {
    "sib200": (
        "SIB-200: Adelani et al., 2023, SIB-200: A Simple, Inclusive, and Big Evaluation Dataset for Topic\n"
        "Classification in 200+ Languages and Dialects (arXiv:2309.07445). Repository\n"
        "https://github.com/dadelani/sib-200 at 593cea88519930f776c1a4a1980b6a35b39dca57, data/annotated/<lang>/.\n"
        "Sentences from FLORES-200 (NLLB Team, 2022, No Language Left Behind; Goyal et al., 2021, The FLORES-101\n"
        "Evaluation Benchmark)."
    ),
    "flores200": (
        "FLORES-200: NLLB Team, 2022, No Language Left Behind: Scaling Human-Centered Machine Translation;\n"
        "Goyal et al., 2021, The FLORES-101 Evaluation Benchmark for Low-Resource and Multilingual Machine\n"
        "Translation. Original release via https://github.com/Helsinki-NLP/OPUS-MT-testsets\n"
        "(devtest at ac0f19c0be3cb4e0d9450fcb2d7a9847c4bdd180, dev at 5677844c738832a280dc1d59a056a970564bdce3)."
    ),
    "tico19": (
        "TICO-19: Anastasopoulos et al., 2020, TICO-19: the Translation Initiative for COvid-19, Proceedings of the\n"
        "1st Workshop on NLP for COVID-19 (Part 2) at EMNLP 2020, https://aclanthology.org/2020.nlpcovid19-2.5.\n"
        "Test set via https://github.com/Helsinki-NLP/OPUS-MT-testsets at ac0f19c0be3cb4e0d9450fcb2d7a9847c4bdd180\n"
        "(datasets/tico19/testsets/en-<xx>/). CSV quoting decoded; Somali realigned by hand against the English\n"
        "(see shared/data/tico19/SOURCE.md). `dev` is drawn from TICO-19's test split (a few-shot pool, not its dev set)."
    ),
}


def _rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build(mirror: Path, out: Path) -> dict[str, object]:
    """Write the pack under ``out``; return its manifest (seed, ids per dataset and split, bytes)."""
    shutil.rmtree(out, ignore_errors=True)
    manifest: dict[str, object] = {"seed": SEED, "languages": LANGUAGES, "datasets": {}}
    for dataset, (id_field, splits, prefixes) in PACK.items():
        chosen: dict[str, list[object]] = {}
        for split, count in splits.items():
            files = {code: mirror / dataset / f"{prefix}.{split}.jsonl" for code, prefix in prefixes.items()}
            tables = {code: {row[id_field]: row for row in _rows(path)} for code, path in files.items() if path.is_file()}
            # Ids present in every language, in the first language's order, then a seeded sample of them.
            first = next(iter(tables.values()))
            shared = [key for key in first if all(key in table for table in tables.values())]
            ids = sorted(random.Random(f"{SEED}:{dataset}:{split}").sample(shared, min(count, len(shared))), key=shared.index)
            chosen[split] = ids
            for code, table in tables.items():
                target = out / dataset / f"{prefixes[code]}.{split}.jsonl"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text("".join(json.dumps(table[key], ensure_ascii=False) + "\n" for key in ids), encoding="utf-8")
        folder = out / dataset
        (folder / "LICENSE").write_text(LICENCES[dataset], encoding="utf-8")
        selection = "\n".join(f"- `{split}`: {len(ids)} items, ids {', '.join(map(str, ids))}" for split, ids in chosen.items())
        (folder / "ATTRIBUTION.md").write_text(
            f"# {dataset} (accessbench starter pack)\n\n{ATTRIBUTIONS[dataset]}\n\n"
            f"A seeded subset of the copy in shared/data/{dataset} (see its SOURCE.md), built by\n"
            f"tools/build_starter_pack.py with seed `{SEED}`: the same ids in every language, rows unchanged.\n\n{selection}\n",
            encoding="utf-8",
        )
        manifest["datasets"][dataset] = {split: ids for split, ids in chosen.items()}  # type: ignore[index]
    manifest["bytes"] = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    (out / "pack.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "bench" / "starter")
    args = parser.parse_args()
    manifest = build(args.mirror, args.out)
    print(f"{args.out}: {manifest['bytes'] / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
