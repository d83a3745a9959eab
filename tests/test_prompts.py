"""Stage prompts: ViLD templates and embeddings, DetPro import, MM-OVOD classifiers, the file contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pipeline import prompts
from pipeline.models.clip import load_clip, text
from pipeline.prompts import mmovod
from tests.conftest import write_json

TINY = "OADP-Tiny-ViT-32"


@pytest.fixture(scope="module")
def clip():
    return load_clip(TINY, "random")


def run(*argv: str) -> None:
    prompts.main(list(argv))


def test_vild_templates_exactly():
    t = prompts.vild_templates()
    assert len(t) == 74 and len(set(t)) == 74 and all(s.count("{}") == 1 for s in t)
    expected_some = {
        "a photo of a {}",
        "a photo of a small {} in the scene",
        "This is a photo of a large {}",
        "There is the medium {} in the picture",
        "This is one {} in the photo",
        "There is one {} in the scene",
        "This is one small {} in the scene",
        "There is a large {} in the scene",
        "This is a {}",
        "There is a {}",
    }
    assert expected_some <= set(t)
    assert "This is one {} in the scene" in t and "There is a {} in the scene" in t  # group 3 (no size)
    assert sum(s.endswith("in the photo") for s in t) == 24 and sum(s.endswith("in the picture") for s in t) == 24


def test_vild_rows_equal_a_direct_computation(tmp_path, clip):
    names = ["red circle", "speaker_(stero_equipment)", "blue square"]
    src = write_json(tmp_path / "a.json", {"categories": [{"id": i, "name": n} for i, n in enumerate(names)]})
    out = tmp_path / "vild.pth"
    run(
        "vild",
        "--names-from",
        str(src),
        "--model",
        TINY,
        "--weights",
        "random",
        "--device",
        "cpu",
        "--output",
        str(out),
    )
    obj = torch.load(out, weights_only=True)
    assert obj["names"] == sorted(names) and obj["embeddings"].dtype == torch.float32
    assert obj["meta"]["clip_weights"] == "random" and obj["meta"]["renormalized"] == "False"
    for name in ("speaker_(stero_equipment)", "red circle"):  # names inserted raw, underscores kept
        direct = torch.zeros(64)
        for template in prompts.vild_templates():
            with torch.inference_mode():
                f = clip.model.encode_text(text.tokenizer()([template.format(name)]))[0]
            direct += f / f.norm()
        direct /= 74
        torch.testing.assert_close(prompts.select(obj, [name])[0], direct, atol=1e-5, rtol=0)
    norms = obj["embeddings"].norm(dim=-1)
    assert (norms < 1).all()  # faithful: the mean is not renormalised
    out2 = tmp_path / "vild_norm.pth"
    run(
        "vild",
        "--names-from",
        str(src),
        "--model",
        TINY,
        "--weights",
        "random",
        "--device",
        "cpu",
        "--output",
        str(out2),
        "--renormalize",
    )
    renorm = torch.load(out2, weights_only=True)["embeddings"]
    torch.testing.assert_close(renorm, F.normalize(obj["embeddings"], dim=-1))


def test_dry_run_keeps_every_name_and_shrinks_the_ensembles(tmp_path, clip):
    from pipeline.core import dry_run as dry

    names = ["red circle", "blue square", "green star"]
    src = write_json(tmp_path / "a.json", {"categories": [{"id": i, "name": n} for i, n in enumerate(names)]})
    common = ["--names-from", str(src), "--model", TINY, "--weights", "random", "--device", "cpu"]
    run("vild", *common, "--output", str(tmp_path / "vild.pth"), "--dry-run")
    obj = torch.load(tmp_path / "vild.pth", weights_only=True)
    assert obj["names"] == sorted(names)  # the vocabulary stays complete
    assert obj["meta"]["dry_run"] == "True" and obj["meta"]["templates"] == str(dry.TEMPLATES) == "2"
    templates = prompts.vild_templates()[: dry.TEMPLATES]
    direct = text.encode_text(clip.model, [t.format("green star") for t in templates]).mean(0)  # unit rows, mean
    torch.testing.assert_close(prompts.select(obj, ["green star"])[0], direct, atol=1e-5, rtol=0)
    run("vild", *common, "--output", str(tmp_path / "full.pth"))
    assert torch.load(tmp_path / "full.pth", weights_only=True)["meta"]["dry_run"] == "False"
    desc = {n: [f"a {n}.", f"the {n}.", f"one more {n}."] for n in names}
    write_json(tmp_path / "d.json", desc)
    run("text", *common, "--descriptions", str(tmp_path / "d.json"), "--output", str(tmp_path / "t.pth"), "--dry-run")
    t = torch.load(tmp_path / "t.pth", weights_only=True)
    assert t["names"] == sorted(names) and t["meta"]["dry_run"] == "True"
    first = text.encode_text(clip.model, desc["red circle"][: dry.TEMPLATES], normalize=False).mean(0)
    torch.testing.assert_close(prompts.select(t, ["red circle"])[0], F.normalize(first, dim=0), atol=1e-5, rtol=0)
    run("multimodal", "--text", str(tmp_path / "t.pth"), "--vision", str(tmp_path / "t.pth"), "--output",
        str(tmp_path / "m.pth"))  # fmt: skip
    assert torch.load(tmp_path / "m.pth", weights_only=True)["meta"]["dry_run"] == "True"  # made of a dry run's file


def test_vocabulary_is_the_sorted_union(tmp_path):
    a = write_json(tmp_path / "a.json", {"categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}]})
    b = write_json(tmp_path / "b.json", {"categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "ant"}]})
    assert prompts.vocabulary([a, b]) == ["ant", "cat", "dog"]


def test_union_of_coco65_and_lvis1203_has_1217_names(tmp_path, coco_categories, lvis_categories):
    from pipeline.core import vocab

    coco = write_json(
        tmp_path / "c.json",
        {"categories": [{"id": i, "name": n} for i, n in enumerate(vocab.COCO_BASE + vocab.COCO_NOVEL)]},
    )
    lvis = write_json(tmp_path / "l.json", {"categories": lvis_categories})
    assert len(prompts.vocabulary([coco, lvis])) == 1217


def test_select_by_name_survives_reordering(tmp_path):
    names = ["a", "b", "c"]
    emb = torch.arange(9.0).reshape(3, 3)
    prompts.save(tmp_path / "p.pth", names, emb, {"kind": "test"})
    shuffled = [2, 0, 1]
    prompts.save(tmp_path / "q.pth", [names[i] for i in shuffled], emb[shuffled], {"kind": "test"})
    p, q = prompts.load(tmp_path / "p.pth"), prompts.load(tmp_path / "q.pth")
    torch.testing.assert_close(prompts.select(p, ["c", "a"]), prompts.select(q, ["c", "a"]))
    with pytest.raises(prompts.PromptError, match=r"names missing: \['zebra'\]"):
        prompts.select(p, ["a", "zebra"], "p.pth")


def test_detpro_import(tmp_path, lvis_categories):
    rows = torch.randn(1203, 512)
    src = tmp_path / "iou_neg5_ens.pth"
    torch.save(rows, src)
    out = tmp_path / "detpro_lvis.pth"
    run("detpro", "--input", str(src), "--output", str(out))
    obj = torch.load(out, weights_only=True)
    lvis_names = {c["name"] for c in lvis_categories}
    assert len(obj["names"]) == 1203 and set(obj["names"]) == lvis_names  # typo restored: every name matches LVIS
    i = obj["names"].index("speaker_(stero_equipment)")
    torch.testing.assert_close(obj["embeddings"][i], rows[i])
    by_id = [c["name"] for c in sorted(lvis_categories, key=lambda c: c["id"])]
    assert obj["names"] == by_id  # mmdet order is LVIS id order


@pytest.mark.parametrize("bad", ["shape", "pickle"])
def test_detpro_refuses_bad_files(tmp_path, bad):
    src = tmp_path / "x.pth"
    if bad == "shape":
        torch.save(torch.randn(10, 512), src)
        match = r"expected a \[1203, D\] tensor"
    else:
        import pickle

        class Evil:
            def __reduce__(self):
                return (open, (str(tmp_path / "pwned"), "w"))

        src.write_bytes(pickle.dumps(Evil()))
        match = "not a readable DetPro tensor"
    with pytest.raises(prompts.PromptError, match=match):
        run("detpro", "--input", str(src), "--output", str(tmp_path / "o.pth"))
    assert not (tmp_path / "o.pth").exists() and not (tmp_path / "pwned").exists()


def test_mmovod_text(tmp_path, clip):
    names = ["red_circle", "blue square"]
    desc = {"red circle": ["A round red disc.", "It is red."], "blue square": ["Four equal sides, blue."]}
    emb = mmovod.text_classifier(clip.model, names, desc, "d.json")
    raw = text.encode_text(clip.model, desc["red circle"], normalize=False).mean(0)
    torch.testing.assert_close(emb[0], F.normalize(raw, dim=0), atol=1e-6, rtol=0)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-6)
    with pytest.raises(prompts.PromptError, match=r"d.json: no descriptions for classes \['green star'\]"):
        mmovod.text_classifier(clip.model, ["red_circle", "green star"], desc, "d.json")


def test_mmovod_fusion_invariants():
    g = torch.Generator().manual_seed(0)
    t, v = torch.randn(5, 8, generator=g) * 7, torch.randn(5, 8, generator=g) * 100
    fused = mmovod.fuse(t, v)
    assert torch.allclose(fused.norm(dim=-1), torch.ones(5), atol=1e-6)
    torch.testing.assert_close(mmovod.fuse(t * 3, v * 0.1), fused)  # scale-invariant per input
    torch.testing.assert_close(mmovod.fuse(t, t), F.normalize(t, dim=-1))  # same direction -> itself
    # fused row bisects the two unit rows: equal cosine to both
    tn, vn = F.normalize(t, dim=-1), F.normalize(v, dim=-1)
    torch.testing.assert_close((fused * tn).sum(-1), (fused * vn).sum(-1), atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def demo_set(tmp_path_factory):
    from pipeline import demo_data

    out = tmp_path_factory.mktemp("demo")
    demo_data.run(
        demo_data.DemoOptions(out_dir=out, classes=("red circle", "blue square", "green star"), num_train=6, num_val=1)
    )
    return out


def test_mmovod_vision_and_multimodal_cli(tmp_path, demo_set):
    ann = demo_set / "annotations" / "instances_train.json"
    ex = tmp_path / "exemplars.json"
    run("sample-exemplars", "--input", str(ann), "--output", str(ex), "-k", "2")
    sampled = json.loads(ex.read_text())
    assert [len(x) for x in sampled] == [2, 2, 2]
    assert all(e["category_id"] == i + 1 for i, lst in enumerate(sampled) for e in lst)
    common = ["--names-from", str(ann), "--model", TINY, "--weights", "random", "--device", "cpu"]
    run(
        "vision-avg",
        *common,
        "--exemplars",
        str(ex),
        "--categories",
        str(ann),
        "--images",
        str(demo_set / "images" / "train"),
        "--num-augs",
        "2",
        "--output",
        str(tmp_path / "v.pth"),
    )
    desc = write_json(
        tmp_path / "d.json", {n: [f"a photo of a {n}"] for n in ("red circle", "blue square", "green star")}
    )
    run("text", *common, "--descriptions", str(desc), "--output", str(tmp_path / "t.pth"))
    run(
        "multimodal",
        "--text",
        str(tmp_path / "t.pth"),
        "--vision",
        str(tmp_path / "v.pth"),
        "--output",
        str(tmp_path / "m.pth"),
    )
    v, t, m = (torch.load(tmp_path / f"{k}.pth", weights_only=True) for k in "vtm")
    assert v["names"] == t["names"] == m["names"] == ["blue square", "green star", "red circle"]
    for obj in (v, t, m):
        assert torch.allclose(obj["embeddings"].norm(dim=-1), torch.ones(3), atol=1e-5)
    torch.testing.assert_close(m["embeddings"], mmovod.fuse(t["embeddings"], v["embeddings"]))
    # seeded TTA: a second run gives the same file content
    run(
        "vision-avg",
        *common,
        "--exemplars",
        str(ex),
        "--categories",
        str(ann),
        "--images",
        str(demo_set / "images" / "train"),
        "--num-augs",
        "2",
        "--output",
        str(tmp_path / "v2.pth"),
    )
    torch.testing.assert_close(torch.load(tmp_path / "v2.pth", weights_only=True)["embeddings"], v["embeddings"])
    # dry run: every class, one exemplar with one view (equal to the full run with k 1 and one view)
    vision = ["vision-avg", *common, "--categories", str(ann), "--images", str(demo_set / "images" / "train")]
    run(*vision, "--exemplars", str(ex), "--num-augs", "2", "--output", str(tmp_path / "vd.pth"), "--dry-run")
    run("sample-exemplars", "--input", str(ann), "--output", str(tmp_path / "ex1.json"), "-k", "2")
    one = [lst[:1] for lst in json.loads((tmp_path / "ex1.json").read_text())]
    write_json(tmp_path / "ex1.json", one)
    run(*vision, "--exemplars", str(tmp_path / "ex1.json"), "--num-augs", "1", "--output", str(tmp_path / "v1.pth"))
    vd, v1 = (torch.load(tmp_path / f"{k}.pth", weights_only=True) for k in ("vd", "v1"))
    assert vd["names"] == v["names"] and vd["meta"]["dry_run"] == "True" and vd["meta"]["num_augs"] == "1"
    torch.testing.assert_close(vd["embeddings"], v1["embeddings"])


def test_context_crop_is_square_and_clipped():
    from PIL import Image

    img = Image.new("RGB", (100, 80))
    assert mmovod.context_crop(img, [40, 30, 20, 10], 0.4).size == (28, 28)
    assert mmovod.context_crop(img, [0, 0, 20, 20], 0.4).size == (24, 24)  # clipped at the corner: 0..24


def test_unknown_model_is_a_clear_cli_error(tmp_path):
    import subprocess
    import sys

    src = write_json(tmp_path / "a.json", {"categories": [{"id": 1, "name": "dog"}]})
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.prompts",
            "vild",
            "--names-from",
            str(src),
            "--model",
            "ViT-Q-99",
            "--weights",
            "random",
            "--output",
            str(tmp_path / "o.pth"),
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 2 and "unknown CLIP model 'ViT-Q-99'; known models:" in proc.stderr
    assert not (tmp_path / "o.pth").exists()


def test_a_name_longer_than_the_clip_context_is_embedded_truncated_with_a_warning(tmp_path, clip, capsys):
    """A class name of 300 characters: the vild stage warns once in its log, naming it, and its row is the row of
    any name with the same first 77 tokens (CLIP reads no further); short names give no warning."""
    long_name = "red-" * 75  # 300 characters, 150 tokens
    names = ["red circle", long_name, long_name + " with a different end"]
    assert len(long_name) == 300 and len(text.tokenizer().encode(long_name)) == 150
    src = write_json(tmp_path / "a.json", {"categories": [{"id": i, "name": n} for i, n in enumerate(names)]})
    common = ["--model", TINY, "--weights", "random", "--device", "cpu", "--dry-run"]
    capsys.readouterr()
    run("vild", "--names-from", str(src), *common, "--output", str(tmp_path / "vild.pth"))
    warnings = [line for line in capsys.readouterr().err.splitlines() if "context are truncated" in line]
    assert len(warnings) == 1, warnings
    line = warnings[0]
    assert "WARNING" in line and "2 class name(s) longer than CLIP's 77-token context are truncated to it" in line
    assert "'red-red-red-" in line and "red circle" not in line
    obj = torch.load(tmp_path / "vild.pth", weights_only=True)
    torch.testing.assert_close(prompts.select(obj, [names[1]])[0], prompts.select(obj, [names[2]])[0])
    short = write_json(tmp_path / "b.json", {"categories": [{"id": 0, "name": "dog"}]})
    run("vild", "--names-from", str(short), *common, "--output", str(tmp_path / "short.pth"))
    assert "truncated" not in capsys.readouterr().err


def test_a_learned_context_warns_about_a_name_it_cuts():
    """The ml prompt's tokens: 'X' * n_ctx before the name; a name that does not fit is named in the warning."""
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger(text.__name__)
    logger.addHandler(handler)
    try:
        tokens = text.context_tokens(["dog", "cat " * 70], n_ctx=8)
    finally:
        logger.removeHandler(handler)
    assert tokens.shape == (2, 77) and int(tokens[1, -1]) == text.tokenizer().eot_token_id
    assert len(records) == 1 and "1 class name(s)" in records[0].getMessage() and "'cat cat" in records[0].getMessage()
