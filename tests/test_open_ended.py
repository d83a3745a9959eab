"""pipeline.evaluate.open_ended: OSM string matching, LAC levels, the region proxy predictor and its CLI path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline import evaluate, prompts
from pipeline.evaluate import open_ended
from tests.conftest import write_json
from tests.eval_helpers import CATEGORIES, NAMES, NUM_BASE, coco_gt, lvis_gt, write_prompts, write_regions

# ------------------------------------------------------------------------------------------- OSM


def test_plural_singular_forms_follow_osm_rules():
    assert open_ended.plural_singular_forms("dog") == ["dog", "dogs", "doges"]
    assert "puppies" in open_ended.plural_singular_forms("puppy")
    assert "knives" in open_ended.plural_singular_forms("knife")
    assert "leaves" in open_ended.plural_singular_forms("leaf")
    assert "buses" in open_ended.plural_singular_forms("bus")
    back = open_ended.plural_singular_forms("knives")
    assert "knife" in back and "knif" in back  # the naive reverse rule gives both
    assert "berry" in open_ended.plural_singular_forms("berries")
    assert "box" in open_ended.plural_singular_forms("boxes")
    assert "traffic lights" in open_ended.plural_singular_forms("traffic light")


def test_synonym_table_reads_lvis_synonyms_and_a_synonyms_file():
    cats = [
        {"id": 0, "name": "dog", "synonyms": ["dog", "domestic_dog"]},
        {"id": 1, "name": "Traffic_Light"},
    ]
    table = open_ended.synonym_table(cats, {"dog": ["Hound"], "unrelated": ["x"]})
    assert table == {"dog": ["dog", "domestic dog", "hound"], "Traffic_Light": ["traffic light"]}
    assert open_ended.dataset_vocabulary(table) == {"dog", "domestic dog", "hound", "traffic light"}


def test_accuracy_synonyms_plurals_crowd_and_not_in_vocabulary():
    """7 regions, 1 crowd (skipped) -> n = 6.
    correct: hound (synonym), dogs (plural of dog), Knives (plural, case), Traffic_Light (normalised name) = 4/6;
    not in the un-augmented vocabulary {dog, hound, knife, traffic light, cat}: dogs, spaceship, knives = 3/6."""
    syn = {"dog": ["dog", "hound"], "knife": ["knife"], "traffic light": ["traffic light"], "cat": ["cat"]}
    preds = ["hound", "dogs", "cat", "spaceship", "Knives", "Traffic_Light", "dog"]
    gts = ["dog", "dog", "dog", "knife", "knife", "traffic light", "cat"]
    crowd = [0, 0, 0, 0, 0, 0, 1]
    r = open_ended.accuracy(preds, gts, syn, iscrowd=crowd)
    assert r == {
        "accuracy": pytest.approx(100 * 4 / 6),
        "not_in_vocab_rate": pytest.approx(50.0),
        "n": 6,
        "n_correct": 4,
        "n_not_in_vocab": 3,
        "n_crowd_skipped": 1,
    }
    assert open_ended.accuracy([], [], syn)["accuracy"] is None
    with pytest.raises(ValueError, match="'zebra'"):
        open_ended.accuracy(["zebra"], ["zebra"], syn)


# ------------------------------------------------------------------------------------------- LAC


def test_extract_noun_rules():
    p = open_ended.extract_noun("There is a red car on the road.")
    assert (p.phrase, p.head, p.hyponym, p.meronyms) == ("red car", "car", None, ("red", "road"))
    p = open_ended.extract_noun("a kind of dog")
    assert (p.head, p.hyponym) == ("kind", "dog")
    p = open_ended.extract_noun("The wheel of a car")
    assert (p.head, p.hyponym, p.meronyms) == ("wheel", "car", ("car",))
    p = open_ended.extract_noun("bow_(weapon)")
    assert (p.full, p.phrase, p.head) == ("bow (weapon)", "bow", "bow")


RELATIONSHIPS = {
    "dog": {"exact": ["dog"], "synonyms": ["hound"], "hyponyms": ["poodle"], "meronyms": ["tail"], "id": 0},
    "car": {"synonyms": ["automobile"], "hyponyms": ["sedan"], "meronyms": ["wheel"], "semantically_related": ["x"]},
}


def test_lac_cumulative_levels_hand_computed(tmp_path):
    """Per description (GT), the first level at which it is correct / what it is before:
    'a dog' (dog) exact; 'an automobile' (car) synonyms; 'a white poodle' (dog) hyponyms (head poodle);
    'the wheel of a car' (car) hyponyms (the 'X of Y' hyponym candidate 'car' is car's exact name), not in vocab
    before (wheel is car's meronym, a level above); 'a tail' (dog) meronyms, not in vocab before;
    'a sedan' (dog) never correct: not in vocab, then confused with car from hyponyms on; 'a cat' (car) never
    in vocab; a crowd region skipped. n = 7.
    exact 1 correct / 0 confused / 6 NIV; synonyms 2/0/5; hyponyms 4/1/2; meronyms 5/1/1.
    mACC at meronyms: dog 3/4, car 2/3 -> (75 + 66.67) / 2 = 70.83."""
    rel = write_json(tmp_path / "rel.json", RELATIONSHIPS)
    table = open_ended.load_relationships(rel)
    assert table["dog"]["exact"] == ["dog", "dog"] and table["car"]["exact"] == ["car"]
    descriptions = ["a dog", "an automobile", "a white poodle", "the wheel of a car", "a tail", "a sedan", "a cat"]
    gts = ["dog", "car", "dog", "car", "dog", "dog", "car"]
    r = open_ended.lac_accuracy([*descriptions, "a dog"], [*gts, "car"], table, iscrowd=[0] * 7 + [1])
    counts = {k: (v["correct"], v["confused"], v["not_in_vocab"]) for k, v in r["levels"].items()}
    assert counts == {"exact": (1, 0, 6), "synonyms": (2, 0, 5), "hyponyms": (4, 1, 2), "meronyms": (5, 1, 1)}
    assert r["levels"]["meronyms"]["accuracy"] == pytest.approx(100 * 5 / 7)
    assert r["levels"]["meronyms"]["macc"] == pytest.approx((75 + 200 / 3) / 2)
    assert r["levels"]["exact"]["not_in_vocab_rate"] == pytest.approx(100 * 6 / 7)
    assert r["n_crowd_skipped"] == 1


def test_relationships_errors_name_the_file_and_entry(tmp_path):
    bad = write_json(tmp_path / "rel.json", {"dog": {"hypernyms": ["animal"]}})
    with pytest.raises(ValueError, match=r"rel\.json: entry 'dog' has unknown key\(s\) \['hypernyms'\]"):
        open_ended.load_relationships(bad)
    bad = write_json(tmp_path / "rel2.json", {"dog": {"synonyms": "hound"}})
    with pytest.raises(ValueError, match=r"rel2\.json: 'dog'\.synonyms must be a list"):
        open_ended.load_relationships(bad)


# ------------------------------------------------------------------------------------------- regions


def test_load_regions_checks_arrays(tmp_path):
    gt = coco_gt()
    good = write_regions(tmp_path / "r.npz", gt, np.ones((len(gt["annotations"]), 4)))
    regions = open_ended.load_regions(good)
    assert len(regions) == len(gt["annotations"]) and regions.iscrowd.sum() == 1
    np.savez(tmp_path / "missing.npz", ann_ids=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=r"missing\.npz: missing array\(s\) \['image_ids'"):
        open_ended.load_regions(tmp_path / "missing.npz")
    arrays = dict(np.load(good))
    np.savez(tmp_path / "pickled.npz", **{**arrays, "embeddings": np.array([object()] * len(arrays["ann_ids"]))})
    with pytest.raises(ValueError, match=r"pickled\.npz: not a readable npz"):
        open_ended.load_regions(tmp_path / "pickled.npz")
    np.savez(tmp_path / "short.npz", **{**arrays, "iscrowd": arrays["iscrowd"][:-1]})
    with pytest.raises(ValueError, match=r"short\.npz: 'iscrowd' has shape"):
        open_ended.load_regions(tmp_path / "short.npz")


def test_predict_names_uses_cosine_not_dot_product():
    vocab = np.array([[10.0, 0.0], [0.6, 0.8]])  # row 0 has the larger dot product with [0.6, 0.8] ...
    assert open_ended.predict_names(np.array([[0.6, 0.8], [1.0, 0.1]]), vocab, ["a", "b"]) == ["b", "a"]
    with pytest.raises(ValueError, match="3 dims"):
        open_ended.predict_names(np.ones((1, 3)), vocab, ["a", "b"])


# ------------------------------------------------------------------------------------------- CLI

# what the fake detector "says" for each GT class, and whether OSM scores it correct
SAYS = {"person": "person", "bicycle": "car", "car": "car", "dog": "hound", "cat": "spaceship", "knife": "knives"}
VOCAB = [*NAMES, "hound", "spaceship", "knives"]


def _regions_setup(tmp_path, gt):
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(16, len(VOCAB))))[0].T  # orthonormal rows
    vocab_emb = basis * rng.uniform(0.5, 2.0, (len(VOCAB), 1))  # unnormalised, like ViLD prompts
    names = {c["id"]: c["name"] for c in gt["categories"]}
    rows = [basis[VOCAB.index(SAYS[names[a["category_id"]]])] + rng.normal(0, 0.05, 16) for a in gt["annotations"]]
    return (
        write_prompts(tmp_path / "vocab.pth", VOCAB, vocab_emb),
        write_regions(tmp_path / "regions.npz", gt, np.array(rows)),
    )


def _expected(gt, correct_names, niv_names, ids):
    anns = [a for a in gt["annotations"] if not a.get("iscrowd") and a["category_id"] in ids]
    names = [NAMES[a["category_id"]] for a in anns]
    n = len(names)
    return n, 100 * sum(x in correct_names for x in names) / n, 100 * sum(x in niv_names for x in names) / n


def test_cli_open_ended_coco_with_crowd_and_synonyms_file(tmp_path):
    gt = coco_gt()
    coco = write_json(tmp_path / "val.all.json", gt)
    vocab, regions = _regions_setup(tmp_path, gt)
    syn = write_json(tmp_path / "syn.json", {"dog": ["hound"]})
    rel = write_json(tmp_path / "rel.json", {n: {"synonyms": ["hound"] if n == "dog" else []} for n in NAMES})
    dets = write_json(tmp_path / "dets.json", [])
    out = tmp_path / "eval"
    evaluate.main(
        ["--detections", str(dets), "--out-dir", str(out), "--coco", str(coco), "--num-base", str(NUM_BASE)]
        + ["--regions", str(regions), "--vocab", str(vocab), "--synonyms", str(syn), "--relationships", str(rel)]
    )
    oe = json.loads((out / "open_ended.json").read_text())
    correct = {"person", "car", "dog", "knife"}  # hound via the synonyms file, knives as a plural
    niv = {"cat", "knife"}  # spaceship and knives are not names or synonyms of the dataset
    n, acc, rate = _expected(gt, correct, niv, range(len(NAMES)))
    assert oe["all"]["n"] == n and oe["all"]["n_crowd_skipped"] == 1 and oe["n_regions"] == n + 1
    assert oe["all"]["accuracy"] == pytest.approx(acc) and oe["all"]["not_in_vocab_rate"] == pytest.approx(rate)
    n_b, acc_b, _ = _expected(gt, correct, niv, range(NUM_BASE))
    n_n, acc_n, rate_n = _expected(gt, correct, niv, range(NUM_BASE, len(NAMES)))
    assert (oe["base"]["n"], oe["novel"]["n"]) == (n_b, n_n)
    assert oe["base"]["accuracy"] == pytest.approx(acc_b) and oe["novel"]["accuracy"] == pytest.approx(acc_n)
    assert oe["novel"]["not_in_vocab_rate"] == pytest.approx(rate_n)
    assert oe["per_class"]["bicycle"]["accuracy"] == 0.0 and oe["per_class"]["dog"]["accuracy"] == 100.0
    assert {"gt": "bicycle", "pred": "car"} in [{k: c[k] for k in ("gt", "pred")} for c in oe["top_confusions"]]
    assert oe["vocabulary"]["size"] == len(VOCAB) and oe["vocabulary"]["not_in_dataset"] == 2  # spaceship, knives
    # LAC with predicted names as descriptions: exact = person, car (+ knives -> knife plural); +synonyms: hound
    lac = oe["lac"]["levels"]
    assert lac["synonyms"]["correct"] - lac["exact"]["correct"] == sum(
        1 for a in gt["annotations"] if a["category_id"] == NAMES.index("dog") and not a.get("iscrowd")
    )
    assert lac["synonyms"]["accuracy"] == pytest.approx(acc)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["open_ended"]["accuracy"] == pytest.approx(acc)
    assert metrics["open_ended"]["novel_accuracy"] == pytest.approx(acc_n)


def test_cli_open_ended_lvis_synonyms_restricted_vocabulary_and_errors(tmp_path):
    # the regions come from the COCO-format file; its crowd box (annotation 1) is not in the LVIS-format file
    coco, gt = coco_gt(), lvis_gt()
    assert coco["annotations"][0]["iscrowd"] == 1 and gt["annotations"][0]["id"] == 1
    del gt["annotations"][0]
    lvis = write_json(tmp_path / "lvis_val.all.json", gt)
    vocab, regions = _regions_setup(tmp_path, coco)
    dets = write_json(tmp_path / "dets.json", [])
    out = tmp_path / "eval"
    base = ["--detections", str(dets), "--out-dir", str(out), "--lvis", str(lvis), "--vocab", str(vocab)]
    evaluate.main([*base, "--regions", str(regions)])
    oe = json.loads((out / "open_ended.json").read_text())
    # hound is an LVIS synonym of dog (no synonyms file needed); no crowd in LVIS
    n, acc, rate = _expected(gt, {"person", "car", "dog", "knife"}, {"cat", "knife"}, range(len(NAMES)))
    assert oe["gt"] == "lvis" and oe["all"]["n"] == n and oe["all"]["n_crowd_skipped"] == 1
    assert oe["all"]["accuracy"] == pytest.approx(acc) and oe["all"]["not_in_vocab_rate"] == pytest.approx(rate)
    _, acc_r, _ = _expected(gt, {"knife"}, set(), [4, 5])
    assert oe["r"]["accuracy"] == pytest.approx(acc_r) and oe["novel"]["accuracy"] == pytest.approx(acc_r)
    # restricting the vocabulary to the dataset's names: the closed-vocabulary case, nothing outside it
    names_file = write_json(tmp_path / "names.json", {"images": [], "annotations": [], "categories": CATEGORIES})
    evaluate.main([*base, "--regions", str(regions), "--vocab-annotations", str(names_file)])
    oe = json.loads((out / "open_ended.json").read_text())
    assert oe["vocabulary"]["size"] == len(NAMES) and oe["all"]["not_in_vocab_rate"] == 0.0
    # a region whose annotation id the GT file does not have
    bad = write_regions(tmp_path / "bad.npz", gt, np.ones((1, 16)), ann_ids=[gt["annotations"][0]["id"]])
    arrays = dict(np.load(bad))
    arrays["ann_ids"] = np.array([987654], np.int64)
    np.savez(bad, **arrays)
    with pytest.raises(ValueError, match=r"bad\.npz: annotation id 987654 is not in .*lvis_val\.all\.json"):
        evaluate.main([*base, "--regions", str(bad)])
    wrong_dim = write_regions(tmp_path / "dim.npz", gt, np.ones((len(gt["annotations"]), 8)))
    with pytest.raises(ValueError, match=r"dim\.npz: embeddings have 8 dims but the vocabulary .*vocab\.pth has 16"):
        evaluate.main([*base, "--regions", str(wrong_dim)])


def test_cli_open_ended_scores_the_object_head_too(tmp_path):
    """Regions of a distilled detector carry the object head's embeddings: they are scored against the same
    vocabulary, per group, next to the bbox head's, with the share of base boxes given a novel name; a wrong shape
    is refused naming the array."""
    gt = coco_gt()
    coco = write_json(tmp_path / "val.all.json", gt)
    vocab, regions = _regions_setup(tmp_path, gt)
    arrays = dict(np.load(regions))  # the bbox head says SAYS[gt name]; the object head says the gt name
    rng = np.random.default_rng(1)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    vocab_rows = prompts.load(vocab)["embeddings"].numpy()
    says = {n: n if i >= NUM_BASE else "cat" for i, n in enumerate(NAMES)}  # every base box named "cat" (novel)
    object_rows = np.array(
        [vocab_rows[VOCAB.index(says[names[c]])] + rng.normal(0, 0.01, 16) for c in arrays["category_ids"].tolist()]
    )
    np.savez(tmp_path / "both.npz", **{**arrays, "object_embeddings": object_rows.astype(np.float32)})
    out = tmp_path / "eval"
    evaluate.main(
        ["--detections", str(write_json(tmp_path / "dets.json", [])), "--out-dir", str(out), "--coco", str(coco)]
        + ["--num-base", str(NUM_BASE), "--regions", str(tmp_path / "both.npz"), "--vocab", str(vocab)]
    )
    oe = json.loads((out / "open_ended.json").read_text())
    n_b, acc_b, _ = _expected(gt, {"person", "car"}, set(), range(NUM_BASE))
    assert oe["base"]["accuracy"] == pytest.approx(acc_b)  # the bbox head's, as without object embeddings
    assert oe["object_head"]["base"]["n"] == n_b and oe["object_head"]["base"]["accuracy"] == 0.0
    assert oe["object_head"]["novel"]["accuracy"] == 100.0 and oe["object_head"]["all"]["n"] == oe["all"]["n"]
    # a hub: every base box takes the novel name "cat"; the bbox head (SAYS) never gives a base box a novel name
    assert oe["object_head"]["base_named_novel"] == {"n": n_b, "n_named_novel": n_b, "rate": 100.0}
    assert oe["base_named_novel"] == {"n": n_b, "n_named_novel": 0, "rate": 0.0}
    metrics = json.loads((out / "metrics.json").read_text())["open_ended"]
    assert (metrics["object_base_accuracy"], metrics["object_novel_accuracy"]) == (0.0, 100.0)
    assert metrics["base_accuracy"] == pytest.approx(acc_b) and metrics["base_named_novel_rate"] == 0.0
    np.savez(tmp_path / "bad.npz", **{**arrays, "object_embeddings": object_rows[:, :8].astype(np.float32)})
    with pytest.raises(ValueError, match=r"bad\.npz: 'object_embeddings' has shape \(\d+, 8\)"):
        open_ended.load_regions(tmp_path / "bad.npz")
    assert open_ended.load_regions(regions).object_embeddings is None
