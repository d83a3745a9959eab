"""pipeline.released detector: the reference's mmdet-2 detector checkpoints, converted without running their code.

Synthetic checkpoints in the reference's layout (mmcv's ``{"meta", "state_dict", "optimizer"}``, its module names,
todd's step counters) are written from a small model of this project's configs and imported back: same weights,
same RoI-head outputs; wrong shapes, missing and extra keys and crafted pickles are refused naming file and key.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pipeline.core.safe_pickle import UnsafePickleError
from pipeline.formats import prompt_file
from pipeline.released import detector as released
from pipeline.released import detector_keys as keys
from tests.conftest import DEMO4

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

D = 16  # text-embedding width of the synthetic prompt files
MASK_HEAD = {  # the reference's OV-LVIS mask head (configs/dp/models/mask.py), narrow
    "model.roi_head.mask_roi_extractor": dict(
        type="SingleRoIExtractor",
        roi_layer=dict(type="RoIAlign", output_size=14, sampling_ratio=0),
        out_channels=16,
        featmap_strides=[4, 8, 16, 32],
    ),
    "model.roi_head.mask_head": dict(
        type="FCNMaskHead",
        num_convs=2,
        in_channels=16,
        conv_out_channels=8,
        num_classes=None,
        class_agnostic=True,
        loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0),
    ),
    "model.train_cfg.rcnn.mask_size": 28,
    "model.test_cfg.rcnn.mask_thr_binary": 0.5,
}
SMALL = {  # oadp_demo with 8-32 channels: every module of the pyramid, a few thousand weights each
    "model.backbone.base_channels": 8,
    "model.neck.in_channels": [8, 16, 32, 64],
    "model.neck.out_channels": 16,
    "model.rpn_head.in_channels": 16,
    "model.rpn_head.feat_channels": 16,
    "model.roi_head.bbox_roi_extractor.out_channels": 16,
    **{f"model.roi_head.{h}_head.in_channels": 16 for h in ("bbox", "object", "block")},
    **{f"model.roi_head.{h}_head.fc_out_channels": 32 for h in ("bbox", "object", "block")},
    "model.global_head.in_channels": 16,
    **MASK_HEAD,
}
SCHEDULES = {"object": 41, "block": 42, "relation": 43, "block_asl": 1}  # distinct, to see each one mapped
GLOBAL_SCHEDULES = {"asl": 1, "mse": 44}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """Class names (a remapped file), a vild and an ml prompt file of random unit rows."""
    root = tmp_path_factory.mktemp("released")
    names = root / "val.all.json"
    names.write_text(json.dumps({"categories": [{"id": i, "name": n} for i, n in enumerate(DEMO4)]}))
    g = torch.Generator().manual_seed(0)
    for kind, extra in (("vild", {}), ("ml", {"scaler": 20.0, "bias": 4.0})):
        emb = F.normalize(torch.randn(len(DEMO4), D, generator=g), dim=-1)
        prompt_file.save(root / f"{kind}.pth", list(DEMO4), emb, {"kind": kind}, **extra)
    return {"root": root, "names": names, "prompts": {k: str(root / f"{k}.pth") for k in ("vild", "ml")}}


def build(inputs, options=SMALL):
    """The small oadp_demo model (every head, a mask head), seeded, with distinct warm-up counters."""
    from mmdet.registry import MODELS

    from pipeline.models.detector import register_modules
    from pipeline.models.detector.config import detector_config

    register_modules()
    cfg = detector_config("oadp_demo", names=list(DEMO4), num_base=3, prompts=inputs["prompts"], options=options)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)  # torch's random initialisation of every layer
    for name, n in SCHEDULES.items():
        model.roi_head.schedules[name].iteration = n
    for name, n in GLOBAL_SCHEDULES.items():
        model.global_weights[name].iteration = n
    return model.eval()


MMCV_META = {  # what the reference's train.py, mmdet 2.25 and mmcv 1.7 put into every checkpoint
    "env_info": "sys.platform: linux\nPython: 3.10.8\nCUDA available: True\nPyTorch: 1.12.1+cu113\nMMDetection: 2.25.2",
    "config": "model = dict(type='OADP', roi_head=dict(type='OADPRoIHead'))\n",
    "mmdet_version": "2.25.2",
    "classes": tuple(DEMO4[:3]),
    "mmcv_version": "1.7.0",
    "time": "Mon Jul  3 12:00:00 2023",
    "epoch": 1,
    "iter": 32000,
    "hook_msgs": {"last_ckpt": "work_dirs/oadp_ov_coco/iter_32000.pth"},
    "fp16": {"loss_scaler": {"scale": 64.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000}},
}


def write_release(path: Path, state: OrderedDict) -> Path:
    """``state`` saved as mmcv saves a checkpoint: meta, state_dict and an SGD state of its first tensors."""
    params = [torch.nn.Parameter(v.clone()) for v in list(state.values())[:3]]
    sgd = torch.optim.SGD(params, lr=0.02, momentum=0.9)
    for p in params:
        p.grad = torch.ones_like(p)
    sgd.step()
    released.write_reference_checkpoint(path, state, MMCV_META, optimizer=sgd.state_dict())
    return path


def _dotted(options: dict, prefix: str = ""):
    """``(dotted key, value)`` pairs of nested options (mmengine's ``DictAction`` parses no dict values)."""
    for key, value in options.items():
        if isinstance(value, dict):
            yield from _dotted(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _cli_value(value) -> str:
    return "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)


def convert(inputs, checkpoint: Path, output: Path, experiment: str = "oadp_demo", options=SMALL) -> None:
    argv = ["detector", "--checkpoint", str(checkpoint), "--experiment", experiment]
    argv += ["--names-from", str(inputs["names"]), "--num-base", "3", "--output", str(output)]
    for kind, path in inputs["prompts"].items():
        argv += ["--prompt", f"{kind}={path}"]
    argv += ["--cfg-options"] + [f"{k}={_cli_value(v)}" for k, v in _dotted(options)]
    from pipeline import released as stage

    stage.main(argv)


def test_the_reference_layout_of_every_tensor(inputs):
    model = build(inputs)
    ref = keys.to_reference(model.state_dict(), model)
    tensors = [k for k in model.state_dict() if not k.endswith("_extra_state")]
    # every tensor once, the six step counters and the five non-persistent buffers mmcv 1.x saves as well
    assert len(ref) == len(tensors) + 6 + 5
    # the reference's module names (oadp/dp/*.py on mmdet 2.25), by hand
    for key, shape in {
        "backbone.conv1.weight": [8, 3, 7, 7],
        "backbone.layer4.1.bn2.running_var": [64],
        "neck.lateral_convs.3.conv.weight": [16, 64, 1, 1],
        "neck.fpn_convs.0.conv.bias": [16],
        "rpn_head.rpn_conv.weight": [16, 16, 3, 3],
        "rpn_head.rpn_cls.weight": [3, 16, 1, 1],
        "rpn_head.rpn_reg.weight": [12, 16, 1, 1],
        "roi_head.bbox_head.shared_fcs.1.weight": [32, 32],
        "roi_head.bbox_head.fc_reg.weight": [4, 32],  # class-agnostic
        "roi_head.bbox_head.fc_cls._linear.weight": [D, 32],
        "roi_head.bbox_head.fc_cls._bg_embedding": [1, D],
        "roi_head._object_head.shared_fcs.0.weight": [32, 16 * 7 * 7],
        "roi_head._object_head.fc_cls._linear.bias": [D],
        "roi_head._object_head.fc_cls._bg_embedding": [1, D],
        "roi_head._block_head.fc_cls._linear.weight": [D, 32],
        "roi_head._block_head.fc_cls._bg_embedding": [1, D],
        "_global_head._classifier._linear.weight": [D, 16],
        "roi_head.mask_head.convs.1.conv.weight": [8, 8, 3, 3],
        "roi_head.mask_head.upsample.weight": [8, 8, 2, 2],
        "roi_head.mask_head.conv_logits.weight": [1, 8, 1, 1],  # class-agnostic
        "roi_head._lambda": [len(DEMO4) + 1],  # ViLDEnsembleRoIHead: a buffer of num_all + 1
        "roi_head.bbox_head.fc_cls._embeddings": [len(DEMO4), D],  # BaseClassifier: the prompt rows of every class
        "roi_head._object_head.fc_cls._embeddings": [len(DEMO4), D],
        "roi_head._block_head.fc_cls._embeddings": [len(DEMO4), D],
        "_global_head._classifier._embeddings": [len(DEMO4), D],
    }.items():
        assert list(ref[key].shape) == shape, key
    # the reference's values: lambda 2/3 for the three bases, 1/3 for the novel class and the background entry;
    # the embeddings are the prompt files' rows in the class order (vild for the bbox head, ml for the others)
    assert torch.allclose(ref["roi_head._lambda"], torch.tensor([2 / 3] * 3 + [1 / 3] * 2))
    assert ref["roi_head._lambda"].dtype == torch.float32
    vild, ml = (prompt_file.load(inputs["prompts"][k]) for k in ("vild", "ml"))
    assert torch.equal(ref["roi_head.bbox_head.fc_cls._embeddings"], vild["embeddings"])
    for key in ("roi_head._object_head.fc_cls", "roi_head._block_head.fc_cls", "_global_head._classifier"):
        assert torch.equal(ref[f"{key}._embeddings"], ml["embeddings"]), key
    counters = {
        "_distiller._losses.0.0._weight._steps": 41,  # objects, global, blocks, block relations
        "_distiller._losses.1.0._weight._steps": 44,
        "_distiller._losses.2.0._weight._steps": 42,
        "_distiller._losses.3.0._weight._steps": 43,
        "roi_head._block_head._loss._weight._steps": 1,
        "_global_head._loss._weight._steps": 1,
    }
    for key, n in counters.items():
        assert ref[key].dtype == torch.int64 and ref[key].ndim == 0 and int(ref[key]) == n, key
    assert ref["backbone.bn1.num_batches_tracked"].dtype == torch.int64
    heads_here = ("global_head.", "roi_head.object_head.", "roi_head.block_head.")
    assert not [k for k in ref if ".linear." in k or "background" in k or k.startswith(heads_here)]


def test_a_released_checkpoint_converts_to_the_same_detector(inputs, tmp_path):
    from mmengine.structures import InstanceData

    from pipeline.models.detector.inference import load_detector

    model = build(inputs)
    source = write_release(
        tmp_path / "work_dirs/oadp_demo/iter_32000.pth", keys.to_reference(model.state_dict(), model)
    )
    convert(inputs, source, tmp_path / "final.pth")
    ckpt = torch.load(tmp_path / "final.pth", map_location="cpu", weights_only=True)
    imported = ckpt["meta"]["imported"]
    assert imported["checkpoint"] == str(source) and len(imported["sha256"]) == 64
    assert imported["meta"]["iter"] == 32000 and imported["meta"]["mmdet_version"] == "2.25.2"
    assert imported["meta"]["num_classes"] == 3 and "environment" not in ckpt["meta"]
    original = model.state_dict()
    assert ckpt["state_dict"].keys() == original.keys()
    for key, value in original.items():
        if key.endswith("_extra_state"):
            assert ckpt["state_dict"][key] == value, key  # the warm-up counters, from the reference's
        else:
            assert torch.equal(ckpt["state_dict"][key], value), key

    converted = load_detector(tmp_path / "final.pth")[0]
    g = torch.Generator().manual_seed(3)
    feats = tuple(torch.randn(1, 16, 64 // 2**i, 64 // 2**i, generator=g) for i in range(5))
    xy = torch.rand(30, 2, generator=g) * 200
    proposals = InstanceData(bboxes=torch.cat([xy, xy + 8 + torch.rand(30, 2, generator=g) * 50], 1),
                             scores=torch.rand(30, generator=g))  # fmt: skip
    from mmdet.structures import DetDataSample

    sample = DetDataSample(metainfo={"img_shape": (256, 256), "ori_shape": (256, 256), "scale_factor": (1.0, 1.0)})
    with torch.no_grad():
        a, b = (m.roi_head.predict(feats, [proposals.clone()], [sample], rescale=False)[0] for m in (model, converted))
    assert len(a.bboxes) > 0 and "masks" in a
    for field in ("bboxes", "scores", "labels", "masks"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


def _tamper(state: OrderedDict, change: str) -> tuple[OrderedDict, str]:
    state = OrderedDict(state)
    if change == "wrong shape":
        state["roi_head._object_head.fc_cls._linear.weight"] = torch.zeros(D + 1, 32)
        return state, r"roi_head\._object_head\.fc_cls\._linear\.weight \[17, 32\] \(the model's .* is \[16, 32\]\)"
    if change == "missing key":
        del state["neck.fpn_convs.2.conv.weight"]
        return state, r"1 tensors of this model that the file lacks: neck\.fpn_convs\.2\.conv\.weight"
    if change == "extra key":
        state["roi_head._object_head.fc_reg.weight"] = torch.zeros(4, 32)
        return state, r"keys this model has no place for: roi_head\._object_head\.fc_reg\.weight"
    if change == "key without a rule":
        state["_teacher.visual.proj"] = torch.zeros(2)
        return state, r"keys without a rule of the key table: _teacher\.visual\.proj"
    if change == "this project's name":
        state["roi_head.bbox_head.fc_cls.linear.weight"] = state.pop("roi_head.bbox_head.fc_cls._linear.weight")
        return state, r"without a rule of the key table: roi_head\.bbox_head\.fc_cls\.linear\.weight"
    if change == "extra counter":
        state["_distiller._losses.4.0._weight._steps"] = torch.tensor(5)
        return state, r"_distiller\._losses\.4\.0\._weight\._steps \(a loss-weight counter of a head"
    if change == "other exponents":  # a file trained with lambda 1/2 for every class
        state["roi_head._lambda"] = torch.full((len(DEMO4) + 1,), 0.5)
        return state, r"roi_head\._lambda: the file's ensemble exponents \(base 0\.5, novel 0\.5\) are not this exp"
    if change == "exponents of another size":
        state["roi_head._lambda"] = torch.full((66,), 1 / 3)
        return state, r"roi_head\._lambda \[66\] \(this experiment's ensemble has 4 classes \+ background\)"
    if change == "embeddings of other classes":
        state["roi_head._block_head.fc_cls._embeddings"] = torch.zeros(65, D)
        return state, r"roi_head\._block_head\.fc_cls\._embeddings \[65, 16\]: .* but .*ml\.pth gives \[4, 16\]"
    raise AssertionError(change)


@pytest.mark.parametrize(
    "change",
    [
        "wrong shape",
        "missing key",
        "extra key",
        "key without a rule",
        "this project's name",
        "extra counter",
        "other exponents",
        "exponents of another size",
        "embeddings of other classes",
    ],
)
def test_a_checkpoint_that_does_not_fit_is_refused_naming_file_and_key(inputs, tmp_path, change):
    model = build(inputs)
    state, message = _tamper(keys.to_reference(model.state_dict(), model), change)
    source = write_release(tmp_path / "iter_1.pth", state)
    with pytest.raises(released.ReleasedFormatError, match=message) as err:
        convert(inputs, source, tmp_path / "final.pth")
    assert str(source) in str(err.value) and "experiment oadp_demo" in str(err.value)
    assert not (tmp_path / "final.pth").exists()


def reference_buffers(inputs, num_base: int = 3) -> dict[str, torch.Tensor]:
    """The non-persistent buffers of the reference's OADP modules for DEMO4, as mmcv 1.x saves them: ``roi_head.
    _lambda`` (``ViLDEnsembleRoIHead``: ones(K + 1) / 3, times 2 for the bases) and each classifier's ``_embeddings``
    (``BaseClassifier``: the prompt file's rows of every class, in class order; the bbox head reads vild here)."""
    lam = torch.ones(len(DEMO4) + 1) / 3
    lam[:num_base] *= 2
    vild, ml = (prompt_file.load(inputs["prompts"][k]) for k in ("vild", "ml"))
    rows = {k: p["embeddings"][[p["names"].index(n) for n in DEMO4]] for k, p in (("vild", vild), ("ml", ml))}
    return {
        "roi_head._lambda": lam,
        "roi_head.bbox_head.fc_cls._embeddings": rows["vild"],
        "roi_head._object_head.fc_cls._embeddings": rows["ml"],
        "roi_head._block_head.fc_cls._embeddings": rows["ml"],
        "_global_head._classifier._embeddings": rows["ml"],
    }


def test_the_released_buffers_are_accepted_and_the_wrong_prompt_file_is_named(inputs, tmp_path):
    """A file with the reference's `_lambda` and `_embeddings` converts to the same weights as one without them; one
    trained with the ml prompts in the bbox head (where this experiment reads vild) is refused naming vild.pth."""
    model = build(inputs)
    bare = OrderedDict((k, v) for k, v in keys.to_reference(model.state_dict(), model).items()
                       if not k.endswith(("._lambda", "._embeddings")))  # fmt: skip
    state = OrderedDict({**bare, **reference_buffers(inputs)})
    convert(inputs, write_release(tmp_path / "iter_1.pth", state), tmp_path / "final.pth")
    convert(inputs, write_release(tmp_path / "iter_2.pth", bare), tmp_path / "final2.pth")
    a, b = (torch.load(tmp_path / f, weights_only=True)["state_dict"] for f in ("final.pth", "final2.pth"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if not k.endswith("_extra_state"))

    # fp16 storage of the right rows and exponents is the same prompt file and ensemble
    halved = OrderedDict(state)
    for key in ("roi_head.bbox_head.fc_cls._embeddings", "roi_head._lambda"):
        halved[key] = state[key].half()
    convert(inputs, write_release(tmp_path / "iter_3.pth", halved), tmp_path / "final3.pth")

    swapped = OrderedDict(state)
    swapped["roi_head.bbox_head.fc_cls._embeddings"] = state["roi_head._object_head.fc_cls._embeddings"]
    source = write_release(tmp_path / "iter_4.pth", swapped)
    vild = re.escape(inputs["prompts"]["vild"])
    with pytest.raises(released.ReleasedFormatError, match=rf"_embeddings: .* are not the rows of {vild} \(4 of 4 "):
        convert(inputs, source, tmp_path / "final4.pth")
    assert not (tmp_path / "final4.pth").exists()


def test_to_reference_writes_the_buffers_the_reference_saves(inputs):
    model = build(inputs)
    ref = keys.to_reference(model.state_dict(), model)
    for key, value in reference_buffers(inputs).items():
        assert ref[key].dtype == value.dtype == torch.float32 and torch.allclose(ref[key], value), key


def test_the_released_lvis_file_needs_the_experiment_without_a_global_head(inputs, tmp_path):
    """An OV-LVIS-style file (no global head, no global counters) into an experiment with one: listed as missing."""
    model = build(inputs, {**SMALL, "model.global_head": None})
    source = write_release(tmp_path / "epoch_24.pth", keys.to_reference(model.state_dict(), model))
    with pytest.raises(released.ReleasedFormatError, match=r"_global_head\._classifier\._linear\.weight \(-> glo"):
        convert(inputs, source, tmp_path / "final.pth")
    convert(inputs, source, tmp_path / "final.pth", options={**SMALL, "model.global_head": None})
    assert (tmp_path / "final.pth").is_file()


class _Call:
    """Pickles as a call of ``fn(*args)``: what a crafted file runs when a plain unpickler loads it."""

    def __init__(self, fn, *args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


@pytest.mark.parametrize("where", ["meta", "state_dict", "optimizer"])
def test_a_crafted_checkpoint_is_refused_and_runs_nothing(inputs, tmp_path, where):
    marker = tmp_path / "pwned"
    obj = {"meta": dict(MMCV_META), "state_dict": OrderedDict(w=torch.zeros(2)), "optimizer": {"state": {}}}
    payload = _Call(os.system, f"touch {marker}")
    if where == "state_dict":
        obj["state_dict"]["backbone.conv1.weight"] = payload
    else:
        obj[where]["x"] = payload
    torch.save(obj, tmp_path / "iter_32000.pth")
    where_ = re.escape(str(tmp_path / "iter_32000.pth"))
    with pytest.raises(UnsafePickleError, match=rf"{where_}: refused: refers to (posix|os)\.system"):
        convert(inputs, tmp_path / "iter_32000.pth", tmp_path / "final.pth")
    assert not marker.exists() and not (tmp_path / "final.pth").exists()
    torch.load(tmp_path / "iter_32000.pth", weights_only=False)  # the control: a plain load runs the payload
    assert marker.exists()


def test_a_plain_pickle_is_not_unpickled_at_all(inputs, tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "epoch_24.pth").write_bytes(pickle.dumps({"state_dict": _Call(os.system, f"touch {marker}")}))
    with pytest.raises(released.ReleasedFormatError, match=r"epoch_24\.pth: not a torch zip archive .* nothing was"):
        convert(inputs, tmp_path / "epoch_24.pth", tmp_path / "final.pth")
    assert not marker.exists()
    pickle.loads((tmp_path / "epoch_24.pth").read_bytes())  # the control: a plain unpickler runs the payload
    assert marker.exists()


def test_the_report_shows_the_published_figure_beside_the_measured_one(tmp_path):
    from pipeline import report
    from pipeline.report.options import ReportOptions

    metrics = {"novel_ap50": 30.0, "base_ap50": 50.0, "all_ap50": 45.0}
    for run in ("oadp_ov_coco", "vild_ov_coco"):
        (tmp_path / "evaluate" / run).mkdir(parents=True)
        (tmp_path / "evaluate" / run / "metrics.json").write_text(json.dumps(metrics))
        (tmp_path / "train" / run).mkdir(parents=True)
    imported = {"checkpoint": "work_dirs/oadp_ov_coco/iter_32000.pth", "sha256": "ab" * 32, "meta": {}}
    torch.save({"state_dict": {}, "meta": {"imported": imported}}, tmp_path / "train/oadp_ov_coco/final.pth")
    torch.save({"state_dict": {}, "meta": {"environment": {}}}, tmp_path / "train/vild_ov_coco/final.pth")
    report.run(
        ReportOptions(
            experiments=("oadp_ov_coco", "vild_ov_coco"),
            evaluate_dir=tmp_path / "evaluate",
            train_dir=tmp_path / "train",
            out_dir=tmp_path / "report",
        )
    )
    summary = (tmp_path / "report/summary.md").read_text()
    section = summary.split("## Released checkpoints: published vs measured (percent)")[1]
    row = "| oadp_ov_coco | novel_ap50 | 31.3 | 30.0 | -1.3 | `work_dirs/oadp_ov_coco/iter_32000.pth` (sha256 ababab"
    assert row in section and "vild_ov_coco" not in section.split("\n\n")[1]


def test_train_import_is_checked_at_parse_time(snakemake_bin, tmp_path):
    from tests.test_workflow import snakemake

    (tmp_path / "iter_3.pth").write_bytes(b"")
    for config, message in (
        ("train={import: {vild_demo: nope/iter_3.pth}}", "config key 'train.import.vild_demo': no such file: nope/"),
        ("train={import: {oadp_ov_coco: iter_3.pth}}", "config key 'train.import.oadp_ov_coco': 'oadp_ov_coco' is not"),
    ):
        proc = snakemake(snakemake_bin, tmp_path, "-n", "--config", config, check=False)
        assert proc.returncode != 0 and message in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-2000:]


def test_an_imported_experiment_is_converted_instead_of_trained(snakemake_bin, tmp_path):
    from tests.test_workflow import snakemake

    (tmp_path / "iter_3.pth").write_bytes(b"")
    targets = ("results/train/vild_demo/final.pth", "results/train/oadp_demo/final.pth")
    proc = snakemake(snakemake_bin, tmp_path, *targets, "-n", "--quiet", "rules", "--config",
                     "train={import: {vild_demo: iter_3.pth}}")  # fmt: skip
    out = proc.stdout + proc.stderr
    assert re.search(r"^train_import\s+1$", out, re.M) and re.search(r"^train\s+1$", out, re.M), out[-3000:]


@pytest.mark.slow
def test_a_demo_detector_exported_and_imported_back_evaluates_the_same(snakemake_bin, tmp_path):
    """A demo detector trained by the DAG, written in the reference's layout, imported with train.import: the
    same metrics, to the last digit."""
    from pipeline.models.detector.inference import load_detector
    from tests.test_workflow import SMALL_DEMO, snakemake

    target = "results/evaluate/baseline_demo/metrics.json"  # no OAKE, no RPN, no teacher: the cheapest detector
    config = [
        "experiments=[baseline_demo]",
        "prompts={kinds: [vild]}",
        "clip={model: OADP-Tiny-ViT-32, weights: random}",
        "detect={experiment: null}",  # the demo's detect and export use vild_demo, not a run here
        "export_instructcv={sources: []}",
        "train={init: random}",
    ]
    snakemake(snakemake_bin, tmp_path, target, "--cores", "2", "--config", *config, demo=SMALL_DEMO)
    trained = tmp_path / "results/train/baseline_demo/final.pth"
    model = load_detector(trained)[0]
    release = tmp_path / "work_dirs/baseline_demo/iter_3.pth"
    released.write_reference_checkpoint(release, keys.to_reference(model.state_dict(), model), MMCV_META)
    original = json.loads((tmp_path / target).read_text())
    trained.rename(tmp_path / "trained.pth")
    (tmp_path / target).unlink()

    config[-1] = "train={init: random, import: {baseline_demo: work_dirs/baseline_demo/iter_3.pth}}"
    proc = snakemake(snakemake_bin, tmp_path, target, "--cores", "2", "--config", *config, demo=SMALL_DEMO)
    assert "rule train_import:" in proc.stdout + proc.stderr and "rule train:" not in proc.stdout + proc.stderr
    assert json.loads((tmp_path / target).read_text()) == original
    meta = torch.load(trained, map_location="cpu", weights_only=True)["meta"]
    assert meta["imported"]["checkpoint"] == "work_dirs/baseline_demo/iter_3.pth"
    assert meta["experiment"] == "baseline_demo"
