"""pipeline.core.compat: torchvision works on the CPU torch, and the shim stands aside where its ops load."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pipeline.core import compat

REPO = Path(__file__).resolve().parents[1]


def python(code: str, stderr: list[str] | None = None) -> str:
    """Run ``code`` in a fresh interpreter; its stdout (``stderr``, when given, receives its stderr)."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if stderr is not None:
        stderr.append(proc.stderr)
    return proc.stdout.strip()


def test_nms_reference_hand_example():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # IoU(3, 0) = 90/100 -> 0 dropped; IoU(3, 1) = 72/(90+100-72) = 0.61 -> 1 dropped at 0.5, kept at 0.7
    assert compat.nms_reference(boxes, scores, 0.5).tolist() == [3, 2]
    assert compat.nms_reference(boxes, scores, 0.7).tolist() == [3, 1, 2]
    assert compat.nms_reference(boxes[:0], scores[:0], 0.5).numel() == 0


def test_nms_reference_equals_mmcv_on_random_boxes():
    mmcv_ops = pytest.importorskip("mmcv.ops")
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(600, 2, generator=g) * 200
    wh = torch.rand(600, 2, generator=g) * 60 + 1
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(600, generator=g)
    _, keep = mmcv_ops.nms(boxes, scores, 0.5)
    assert compat.nms_reference(boxes, scores, 0.5).tolist() == keep.tolist()


def test_torchvision_and_its_users_import_here():
    out = python(
        """
        import pipeline, torch
        from pipeline.core import compat
        import torchvision
        from torchvision.ops import nms, roi_align
        b = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30.]])
        s = torch.tensor([0.9, 0.8, 0.7])
        print(nms(b, s, 0.5).tolist())
        x = torch.arange(16.).reshape(1, 1, 4, 4)
        print(roi_align(x, [torch.tensor([[0, 0, 4, 4.]])], 2, 1.0, 2, True).flatten().tolist())
        import open_clip, mmengine.runner, transformers  # all import torchvision
        from transformers import CLIPModel
        native = compat._probe_native_torchvision()
        print(compat.FALLBACK_ACTIVE, native)
        """
    )
    lines = out.splitlines()
    assert lines[0] == "[0, 2]"
    assert lines[1] == "[2.5, 4.5, 10.5, 12.5]"  # 2x2 average of the 4x4 ramp, aligned
    active, native = lines[-1].split()
    assert active != native  # fallback exactly where the compiled ops do not load


def test_stands_aside_when_native_ops_exist():
    """Simulate a torchvision whose compiled ops loaded: the shim must not register its own kernel."""
    out = python(
        """
        import torch
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        calls = []
        def native(d, s, t):
            calls.append(1)
            return torch.tensor([0])
        lib.impl("nms", native, "CPU")
        from pipeline.core import compat
        print(compat.ensure_torchvision_ops(), compat.FALLBACK_ACTIVE, compat._fallback_lib is None)
        torch.ops.torchvision.nms(torch.zeros(2, 4), torch.zeros(2), 0.5)
        print(len(calls))
        """
    )
    assert out.splitlines() == ["False False True", "1"]


def test_importing_the_package_loads_no_torch_and_the_first_torchvision_import_gets_the_shim():
    """``import pipeline`` only installs the finder; mmengine's runner, importing torchvision first, gets a working
    torchvision, and ``torchvision.ops.nms`` runs (on the fallback kernel where the compiled ops do not load)."""
    stderr: list[str] = []
    out = python(
        """
        import sys
        import pipeline.report, pipeline.evaluate, pipeline.annotations
        print("torch" in sys.modules, "torchvision" in sys.modules)
        import mmengine.runner
        import torch, torchvision
        from pipeline.core import compat, torchvision_hook
        b = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30.]])
        print(torchvision.ops.nms(b, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist())
        print(compat.FALLBACK_ACTIVE != compat._probe_native_torchvision(), torchvision_hook._FINDER in sys.meta_path)
        """,
        stderr,
    )
    assert out.splitlines() == ["False False", "[0, 2]", "True False"]
    assert "imported before" not in stderr[0]  # the shim ran before torchvision, not after


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_torchvision_uses_its_own_ops():
    out = python(
        """
        from pipeline.core import compat
        import torch, torchvision
        b = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11.]], device="cuda")
        print(compat.FALLBACK_ACTIVE, torchvision.ops.nms(b, torch.tensor([0.9, 0.8], device="cuda"), 0.5).tolist())
        """
    )
    assert out == "False [0]"


def test_lvis_eval_runs_on_numpy_2(tmp_path):
    """lvis-api 0.5.3 uses np.float; the patch makes LVISEval run on numpy 2."""
    import json

    import numpy as np

    compat.patch_lvis_numpy()
    from lvis import LVIS, LVISEval, LVISResults

    gt = {
        "images": [{"id": 1, "width": 100, "height": 100, "neg_category_ids": [], "not_exhaustive_category_ids": []}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [10, 10, 20, 20],
                "area": 400,
                "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]],
            }
        ],
        "categories": [{"id": 1, "name": "a", "frequency": "f", "image_count": 1, "instance_count": 1}],
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    lvis_gt = LVIS(str(tmp_path / "gt.json"))
    res = LVISResults(lvis_gt, [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}])
    ev = LVISEval(lvis_gt, res, "bbox")
    ev.run()
    assert np.isclose(ev.results["AP"], 1.0)
    assert "float" not in np.__dict__  # numpy itself is not patched


def test_mmengine_checkpoint_allow_list_is_narrow():
    import pickle

    from mmengine.logging.history_buffer import HistoryBuffer

    compat.allow_mmengine_checkpoints()
    assert compat._history_buffer_getattr(HistoryBuffer, "mean") is HistoryBuffer.mean
    for obj, name in ((HistoryBuffer, "__init__"), (torch, "load"), (HistoryBuffer, "__class__")):
        with pytest.raises(pickle.UnpicklingError, match="not on the allow-list"):
            compat._history_buffer_getattr(obj, name)
