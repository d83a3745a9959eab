"""Same code, config and seed on one machine: bit-identical weights; the environment that decides the floating-point
results is recorded with them (pipeline.core.environment)."""

from __future__ import annotations

import json

import pytest
import torch

from pipeline import prompts
from pipeline.core import environment
from tests.conftest import TINY, make_demo_split


def _fit(tmp_path, demo, vild, work, experiment="baseline_demo", *extra):
    from pipeline import train

    args = ["fit", "--experiment", experiment, "--names-from", str(tmp_path / "train.all.json")]
    args += ["--num-base", "3", "--annotations", str(tmp_path / "train.base.json")]
    args += ["--images", str(demo / "images/train"), "--prompt", f"vild={vild}", "--work-dir", str(work)]
    args += ["--iters", "2", "--workers", "0", "--cfg-options", "model.train_cfg.rpn_proposal.max_per_img=50"]
    args += ["model.train_cfg.rcnn.sampler.num=32", *extra]
    train.main(args)
    return torch.load(work / "final.pth", map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_two_trainings_from_one_seed_give_bit_identical_weights(tmp_path):
    """Two tiny trainings of the same config and seed (separate work dirs) end with bit-identical weights; a seed
    run (E+seed1: E's config, randomness.seed=1, as the workflow's train.seeds starts it) ends elsewhere. Each
    final.pth records the environment it was trained in."""
    demo = make_demo_split(tmp_path, num_train=4, num_val=1)
    vild = tmp_path / "vild.pth"
    prompts.main(
        ["vild", "--names-from", str(tmp_path / "train.all.json"), "--model", TINY, "--weights", "random"]
        + ["--device", "cpu", "--output", str(vild)]
    )
    first = _fit(tmp_path, demo, vild, tmp_path / "a")
    second = _fit(tmp_path, demo, vild, tmp_path / "b")
    # the workflow's seed run: train.options first, then `--config E --cfg-options randomness.seed=N`
    seed_args = ["--config", "baseline_demo", "--cfg-options", "randomness.seed=1"]
    seeded = _fit(tmp_path, demo, vild, tmp_path / "c", "baseline_demo+seed1", *seed_args)
    a, b, c = (x["state_dict"] for x in (first, second, seeded))
    assert a.keys() == b.keys() == c.keys()
    tensors = [k for k in a if isinstance(a[k], torch.Tensor)]  # others: modules' extra state (warm-up counters)
    assert len(tensors) > 50
    different = [k for k in tensors if not torch.equal(a[k], b[k])]
    assert not different, f"same seed, different weights: {different[:5]}"
    assert all(a[k] == b[k] for k in a if k not in tensors)
    assert any(not torch.equal(a[k], c[k]) for k in tensors if a[k].is_floating_point())  # the seed reaches training
    assert first["meta"]["config"]["randomness"]["seed"] != 1 and seeded["meta"]["config"]["randomness"]["seed"] == 1
    assert seeded["meta"]["experiment"] == "baseline_demo+seed1"
    assert seeded["meta"]["config"]["model"]["train_cfg"]["rcnn"]["sampler"]["num"] == 32  # both option lists kept
    env = first["meta"]["environment"]
    assert env == second["meta"]["environment"]
    assert env["torch"] == torch.__version__
    assert env["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["torch_num_threads"] == torch.get_num_threads()


def test_environment_records_what_decides_the_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        env = environment.environment()
    finally:
        torch.set_num_threads(threads)
    assert json.loads(json.dumps(env)) == env  # stored in final.pth meta and JSON reports as is
    torch.save({"meta": {"environment": env}}, tmp_path / "final.pth")
    assert torch.load(tmp_path / "final.pth", weights_only=True)["meta"]["environment"] == env  # as load_detector
    assert env["torch_num_threads"] == 1
    assert env["variables"] == {**env["variables"], "DNNL_MAX_CPU_ISA": "AVX2"}
    assert "ATEN_CPU_CAPABILITY" not in env["variables"]
    assert env["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["mkl"] == torch.backends.mkl.is_available()
    import mmengine

    assert env["packages"]["mmengine"] == mmengine.__version__ and "not_a_package" not in env["packages"]
    assert environment.package_versions(("mmengine", "not_a_package")) == {"mmengine": mmengine.__version__}
    line = environment.describe(env)
    assert f"torch {torch.__version__}" in line and "; 1 threads;" in line and "DNNL_MAX_CPU_ISA=AVX2" in line
    assert environment.describe(None) == "not recorded"

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n"
        "stepping\t: 1\ncache size\t: 1024 KB\nflags\t\t: fpu sse avx avx2 fma avx512f avx512bw avx512_bf16\n\n"
        "processor\t: 1\nmodel name\t: other\nflags\t\t: amx_tile\n"
    )
    cpu = environment.cpu_info(cpuinfo)
    assert cpu["model_name"] == "AMD EPYC" and cpu["vendor"] == "AuthenticAMD"
    assert cpu["family_model_stepping"] == "25/17/1" and cpu["cache_size"] == "1024 KB"
    assert cpu["isa_flags"] == ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_bf16"]  # first processor only
    assert environment.cpu_info(tmp_path / "missing")["model_name"]  # no /proc/cpuinfo: platform's name
