"""The shipped experiment configs (mmdet 3 files with _base_ inheritance): what each one builds, the run-time
filling, schedule shortening, the bbox-head lr_mult, and the LVIS class-agnostic mask head."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pipeline.formats import prompt_file as prompt_files
from pipeline.models.detector import config as C

NAMES = ["c", "x", "a", "b"]


@pytest.fixture(scope="module")
def prompt_paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("prompts")
    emb = F.normalize(torch.randn(4, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    paths = {}
    for kind in ("vild", "ml", "detpro"):
        paths[kind] = str(root / f"{kind}.pth")
        extra = {"scaler": 20.0, "bias": 4.0} if kind == "ml" else {}
        prompt_files.save(paths[kind], NAMES, emb, {"kind": kind}, **extra)
    return paths


def test_every_shipped_config_loads_with_its_branches():
    expected = {
        "vild_ov_coco": ("object",),
        "oadp_ov_coco": ("object", "block", "global"),
        "baseline_ov_coco": (),
        "oadp_ov_lvis": ("object", "block", "global"),
        "oadp_ov_lvis_released": ("object", "block"),
        "vild_demo": ("object",),
        "oadp_demo": ("object", "block", "global"),
        "baseline_demo": (),
    }
    assert sorted(expected) == C.available()
    for name, branches in expected.items():
        cfg = C.read_config(name)
        assert C.branches(cfg) == branches, name
        if not name.endswith("_demo"):  # the demo's optimizer: test_method_settings_per_config
            assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=16)
            assert cfg.optim_wrapper.optimizer == dict(type="SGD", lr=0.02, momentum=0.9, weight_decay=2.5e-5)
        assert cfg.randomness.seed == 3407 and cfg.resume is True
        assert {b["type"] for b in cfg.vis_backends} == {"LocalVisBackend", "TensorboardVisBackend"}


def test_method_settings_per_config():
    coco = C.read_config("oadp_ov_coco")
    roi = coco.model.roi_head
    # OADP-COCO: bbox head ViLD with the default temperatures; object/block/global on the ml prompt
    assert roi.bbox_head.cls_predictor_cfg == dict(
        type="ViLDTextClassifier", prompts="vild", tau_train=0.007, tau_val=0.01
    )
    assert roi.object_head.cls_predictor_cfg == dict(
        type="ScaledTextClassifier", prompts="ml", background_enabled=False
    )
    assert roi.block_head.cls_predictor_cfg.type == "ScaledTextClassifier"
    assert coco.model.global_head.classifier.type == "ScaledTextClassifier"
    assert coco.optim_wrapper.paramwise_cfg == dict(custom_keys={"roi_head.bbox_head": dict(lr_mult=0.5)})
    assert coco.train_cfg.max_iters == 40000
    assert [s.get("milestones") for s in coco.param_scheduler] == [None, [30000]]
    assert roi.bbox_head.type == "Shared4Conv1FCBBoxHead" and roi.bbox_head.reg_class_agnostic
    assert roi.block_head.type == "Shared2FCBBoxHead"
    assert coco.model.test_cfg.rcnn == dict(score_thr=0.0, nms=dict(type="nms", iou_threshold=0.5), max_per_img=300)
    # ViLD: both heads tau 0.01 / 0.007, no lr_mult
    vild = C.read_config("vild_ov_coco")
    for head in ("bbox_head", "object_head"):
        pred = vild.model.roi_head[head].cls_predictor_cfg
        assert (pred.type, pred.tau_train, pred.tau_val) == ("ViLDTextClassifier", 0.01, 0.007)
    assert "paramwise_cfg" not in vild.optim_wrapper
    # LVIS: DetPro prompts, global head at the default temperatures, class-agnostic mask head, 2x, RFS
    lvis = C.read_config("oadp_ov_lvis")
    assert lvis.model.global_head.classifier == dict(
        type="ViLDTextClassifier", prompts="detpro", tau_train=0.007, tau_val=0.01
    )
    assert lvis.model.roi_head.block_head.cls_predictor_cfg.tau_train == 0.01
    assert lvis.model.roi_head.mask_head.class_agnostic is True
    assert lvis.model.roi_head.mask_roi_extractor.roi_layer.output_size == 14
    assert lvis.train_cfg == dict(type="EpochBasedTrainLoop", max_epochs=24, val_interval=25)
    assert lvis.param_scheduler[1].milestones == [16, 19]
    assert lvis.train_dataloader.dataset.type == "ClassBalancedDataset"
    assert lvis.train_dataloader.dataset.oversample_thr == 1e-3
    # demo variants keep the method's classifiers but a CPU-sized network
    demo = C.read_config("oadp_demo")
    assert demo.model.roi_head.object_head.cls_predictor_cfg == roi.object_head.cls_predictor_cfg
    assert demo.model.backbone.depth == 18 and demo.model.train_cfg.rcnn.sampler.num == 128
    assert coco.model.backbone.depth == 50 and coco.model.train_cfg.rcnn.sampler.num == 512
    loaders = [
        [t for t in c.train_dataloader.dataset.pipeline if t["type"] == "LoadCLIPFeatures"][0] for c in (demo, coco)
    ]
    assert all(t.get("max_objects") is None for t in loaders)  # every stored object, as the reference
    assert (coco.model.warmup, coco.model.roi_head.weights.warmup) == (200, 200)
    assert (demo.model.warmup, demo.model.roi_head.weights.warmup) == (30, 30)
    # slim heads (two 256-wide fcs) for every RoI head the full config has, and no head it removed
    for name, heads in (("baseline_demo", ("bbox",)), ("vild_demo", ("bbox", "object")), ("oadp_demo", None)):
        cfg = C.read_config(name)
        roi = cfg.model.roi_head
        present = [h for h in ("bbox", "object", "block") if roi.get(f"{h}_head") is not None]
        assert present == list(heads or ("bbox", "object", "block")), name
        assert all(roi[f"{h}_head"].fc_out_channels == 256 for h in present), name
        assert roi.bbox_head.type == "Shared2FCBBoxHead" and (cfg.model.get("global_head") is not None) == (
            heads is None
        )
        # the bbox head's classifier at temperature 0.05 (the full configs: 0.01 / 0.007 or 0.007 / 0.01); the
        # distilled heads keep the full config's classifier
        full = C.read_config(name.replace("_demo", "_ov_coco")).model.roi_head
        assert roi.bbox_head.cls_predictor_cfg == dict(full.bbox_head.cls_predictor_cfg, tau_train=0.05, tau_val=0.05)
        for h in present[1:]:
            assert roi[f"{h}_head"].cls_predictor_cfg == full[f"{h}_head"].cls_predictor_cfg, (name, h)
        # AdamW, lr for 2 images (auto-scaled), clipped gradients; the bbox head's lr_mult of OADP is kept
        assert cfg.optim_wrapper.optimizer == dict(type="AdamW", lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05)
        assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=2) and cfg.optim_wrapper.clip_grad.max_norm
        assert ("paramwise_cfg" in cfg.optim_wrapper) == (name == "oadp_demo")


def test_set_iters_keeps_the_step_fractions():
    coco = C.read_config("oadp_ov_coco")
    C.set_iters(coco, 400)
    assert coco.train_cfg == dict(type="IterBasedTrainLoop", max_iters=400, val_interval=401)
    assert coco.param_scheduler[0].end == 400  # warm-up 500 capped at the run
    assert coco.param_scheduler[1].milestones == [300] and coco.param_scheduler[1].end == 400
    lvis = C.read_config("oadp_ov_lvis")
    C.set_iters(lvis, 240)  # 2x: steps at epochs 16 and 19 of 24
    assert lvis.train_cfg.type == "IterBasedTrainLoop"
    assert lvis.param_scheduler[1].milestones == [160, 190] and lvis.param_scheduler[1].by_epoch is False
    assert lvis.default_hooks.checkpoint.by_epoch is False
    assert lvis.train_dataloader.sampler.type == "InfiniteSampler"


def test_fill_runtime(prompt_paths):
    cfg = C.detector_config(
        "oadp_ov_coco",
        names=NAMES,
        num_base=2,
        prompts={"vild": prompt_paths["vild"], "ml": prompt_paths["ml"]},
        annotations="a.json",
        images="imgs",
        shards={"globals": ["g.h5"], "blocks": ["b.h5"], "objects": ["o.h5"]},
        work_dir="w",
    )
    roi = cfg.model.roi_head
    assert roi.bbox_head.cls_predictor_cfg.prompts == prompt_paths["vild"]
    assert roi.object_head.cls_predictor_cfg.prompts == prompt_paths["ml"]
    assert roi.bbox_head.cls_predictor_cfg.names == NAMES and roi.num_base == 2
    assert roi.bbox_head.num_classes == roi.block_head.num_classes == 4
    assert roi.bbox_head.norm_cfg.type == "BN" and cfg.model.neck.norm_cfg.type == "BN"  # SyncBN in one process
    assert cfg.optim_wrapper.type == "OptimWrapper" and "loss_scale" not in cfg.optim_wrapper  # no fp16 on CPU
    dataset = cfg.train_dataloader.dataset
    assert dataset.ann_file.endswith("a.json") and dataset.metainfo == dict(classes=tuple(NAMES))
    load = [t for t in dataset.pipeline if t.type == "LoadCLIPFeatures"][0]
    assert load.objects_shards == ["o.h5"] and load.num_classes == 4
    gpu = C.detector_config(
        "oadp_ov_coco", names=NAMES, num_base=2, prompts=prompt_paths, world_size=8, cuda=True, iters=10
    )
    assert gpu.optim_wrapper.type == "AmpOptimWrapper" and gpu.optim_wrapper.loss_scale == dict(init_scale=64.0)
    assert gpu.model.neck.norm_cfg.type == "SyncBN" and gpu.launcher == "pytorch"


def test_fill_runtime_names_what_is_missing(prompt_paths):
    with pytest.raises(ValueError, match=r"oadp_demo: the config's classifiers read the prompt kind\(s\) \['ml'\]"):
        C.detector_config("oadp_demo", names=NAMES, num_base=2, prompts={"vild": prompt_paths["vild"]})
    with pytest.raises(ValueError, match="the block branch needs the OAKE blocks cache shards"):
        C.detector_config(
            "oadp_demo", names=NAMES, num_base=2, prompts=prompt_paths, annotations="a.json", shards={"objects": ["o"]}
        )
    with pytest.raises(ValueError, match="no config detr_demo.py"):
        C.read_config("detr_demo")
    with pytest.raises(ValueError, match="num_base 5 must be in 1..4"):
        C.detector_config("vild_demo", names=NAMES, num_base=5, prompts=prompt_paths)


def test_bbox_head_lr_mult_reaches_the_optimizer(prompt_paths):
    from mmdet.registry import MODELS
    from mmengine.optim import build_optim_wrapper

    from pipeline.models.detector import register_modules

    register_modules()
    cfg = C.detector_config("oadp_demo", names=NAMES, num_base=2, prompts=prompt_paths)
    model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lr_of = {}
    for group in wrapper.optimizer.param_groups:
        for p in group["params"]:
            lr_of[id(p)] = group["lr"]
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        base = cfg.optim_wrapper.optimizer.lr
        expected = base * 0.5 if name.startswith("roi_head.bbox_head.") else base
        assert lr_of[id(p)] == pytest.approx(expected), name


@pytest.mark.slow
def test_lvis_config_trains_a_class_agnostic_mask_head(prompt_paths):
    """The OV-LVIS model (slimmed backbone) on a synthetic batch with masks: mask, box, distillation and ASL losses
    are all finite and backpropagate; inference returns one mask per detection."""
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs

    from pipeline.models.detector import register_modules

    register_modules()
    cfg = C.detector_config(
        "oadp_ov_lvis",
        names=NAMES,
        num_base=2,
        prompts=prompt_paths,
        options={
            "model.backbone.depth": 18,
            "model.backbone.style": "pytorch",
            "model.neck.in_channels": [64, 128, 256, 512],
            "model.train_cfg.rcnn.sampler.num": 32,
            "model.test_cfg.rpn.max_per_img": 50,
        },
    )
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    packed = demo_mm_inputs(
        batch_size=2, image_shapes=[(3, 128, 160)] * 2, num_items=[3, 2], num_classes=2, with_mask=True
    )
    g = torch.Generator().manual_seed(1)
    for s in packed["data_samples"]:
        s.gt_instances.labels = s.gt_instances.labels % 2  # base classes only
        s.clip_global = F.normalize(torch.randn(16, generator=g), dim=0)
        s.block_bboxes = torch.tensor([[0.0, 0, 64, 64], [32, 32, 128, 128]])
        s.clip_blocks = F.normalize(torch.randn(2, 16, generator=g), dim=1)
        s.block_labels = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.bool)
        s.object_bboxes = torch.tensor([[10.0, 10, 50, 60], [60, 30, 120, 100], [5, 70, 40, 120]])
        s.clip_objects = F.normalize(torch.randn(3, 16, generator=g), dim=1)
    data = model.data_preprocessor(packed, True)
    model.train()
    losses = model.loss(data["inputs"], data["data_samples"])
    for key in ("loss_mask", "loss_cls", "loss_bbox", "loss_clip_objects", "loss_block", "loss_clip_global"):
        assert key in losses and torch.isfinite(torch.as_tensor(losses[key])).all(), key
    assert model.roi_head.mask_head.class_agnostic and model.roi_head.mask_head.conv_logits.out_channels == 1
    sum(v for k, v in losses.items() if "loss" in k and torch.is_tensor(v)).backward()
    assert model.roi_head.mask_head.conv_logits.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model.predict(data["inputs"], data["data_samples"])[0].pred_instances
    assert out.masks.shape[0] == len(out.bboxes) and out.masks.shape[1:] == data["data_samples"][0].ori_shape


def test_a_backbone_checkpoint_initialises_the_backbone_and_counts_in_the_fingerprint(prompt_paths, tmp_path, caplog):
    """train.backbone (--backbone): an ImageNet state dict in torchvision's layout becomes the backbone's init_cfg,
    in pytorch style; the work-dir fingerprint sees its contents; no initial weights at all is a logged warning."""
    from pipeline.core import workdir
    from pipeline.train import check_initial_weights

    def build(**kw):
        return C.detector_config("vild_ov_coco", names=NAMES, num_base=2, prompts=prompt_paths, **kw)

    plain = build()
    assert plain.model.backbone.style == "caffe" and not plain.model.backbone.get("init_cfg") and not plain.load_from
    r50 = tmp_path / "resnet50-0676ba61.pth"
    cfg = build(backbone=str(r50))
    assert cfg.model.backbone.init_cfg == dict(type="Pretrained", checkpoint=str(r50))
    assert cfg.model.backbone.style == "pytorch"
    with pytest.raises(ValueError, match=f"vild_ov_coco: backbone checkpoint {r50}: no such file"):
        check_initial_weights(cfg, "vild_ov_coco")
    r50.write_bytes(b"imagenet weights")
    before = workdir.fingerprint(workdir.identified_config(cfg))
    r50.write_bytes(b"other weights")
    assert workdir.fingerprint(workdir.identified_config(cfg)) != before
    with caplog.at_level("INFO", logger="pipeline.train"):
        check_initial_weights(cfg, "vild_ov_coco")
        check_initial_weights(plain, "vild_ov_coco")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "vild_ov_coco: no initial weights (no load_from, no backbone checkpoint): training from random weights"
    ]


def test_lvis_training_images_are_found_through_their_coco_url(prompt_paths, tmp_path):
    """mmdet's LVIS dataset names an image by its ``coco_url`` path, split folder included (``train2017/<id>.jpg``):
    given the split's image folder (``data_root/coco/train2017``), the filled config reads the image files."""
    from mmdet.registry import DATASETS
    from PIL import Image

    from pipeline.models.detector import register_modules
    from tests.conftest import make_lvis, write_json

    register_modules()
    categories = [{"id": i + 1, "name": n, "frequency": "f", "synonyms": [n], "synset": n} for i, n in enumerate(NAMES)]
    data = make_lvis(categories, 5, per_image=2)
    write_json(tmp_path / "lvis_v1_train.json", data)
    images = tmp_path / "coco/train2017"
    images.mkdir(parents=True)
    for im in data["images"]:
        Image.new("RGB", (640, 480)).save(images / im["coco_url"].rsplit("/", 1)[-1])
    cfg = C.detector_config(
        "oadp_ov_lvis",
        names=NAMES,
        num_base=2,
        prompts=prompt_paths,
        annotations=str(tmp_path / "lvis_v1_train.json"),
        images=str(images),
        shards={"globals": ["g.h5"], "blocks": ["b.h5"], "objects": ["o.h5"]},
    )
    dataset_cfg = C.train_dataset(cfg)
    assert dataset_cfg.data_prefix == dict(img=str(tmp_path / "coco") + "/")
    dataset = DATASETS.build({**dataset_cfg.to_dict(), "pipeline": []})
    paths = [dataset.get_data_info(i)["img_path"] for i in range(len(dataset))]
    assert len(paths) == 4  # image 2 has no box
    assert all(Path(p).parent == images and Path(p).is_file() for p in paths), paths
