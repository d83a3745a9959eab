"""The numerics-relevant environment of a process: what decides the floating-point results of a CPU training.

Two runs of the same code, config and seed on one machine give bit-identical weights; on two machines they need
not. PyTorch picks its CPU kernels at run time by instruction set (``torch.backends.cpu.get_cpu_capability()``:
DEFAULT / AVX2 / AVX512, capped by ``ATEN_CPU_CAPABILITY``), oneDNN (convolutions) and MKL (matrix products)
dispatch on the CPU's instruction set and cache sizes (capped by ``DNNL_MAX_CPU_ISA``, ``MKL_CBWR`` /
``MKL_ENABLE_INSTRUCTIONS``), and reductions split their work by thread count: each choice changes the order of
floating-point sums, and training amplifies the last-bit differences. :func:`environment` records all of these,
so that two runs' records say whether their numbers can be expected to agree.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# environment variables that change which kernels run or how work is split
NUMERICS_VARIABLES = (
    "ATEN_CPU_CAPABILITY",
    "DNNL_MAX_CPU_ISA",
    "ONEDNN_MAX_CPU_ISA",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_NUM_THREADS",
    "OMP_NUM_THREADS",
    "CUBLAS_WORKSPACE_CONFIG",
)
# packages whose kernels or defaults reach the numbers (mmcv's ops are compiled on the installing machine)
PACKAGES = ("mmcv", "mmdet", "mmengine", "numpy", "open_clip_torch")
# /proc/cpuinfo flags that select kernels (AVX-512 and AMX variants, VNNI, FMA)
ISA_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx_vnni",
             "amx_tile", "amx_bf16")  # fmt: skip


def cpu_info(path: Path = Path("/proc/cpuinfo")) -> dict:
    """CPU model name, vendor, family / model / stepping numbers (they tell CPU generations apart where a cloud VM
    reports a generic name such as ``AMD EPYC``) and the kernel-selecting ISA flags present; from ``/proc/cpuinfo``
    (the first processor), else ``platform.processor()`` alone."""
    fields: dict[str, str] = {}
    try:
        for line in path.read_text(errors="replace").splitlines():
            if not line.strip():
                break  # the first processor's block only
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except OSError:
        pass
    flags = set(fields.get("flags", "").split())
    return {
        "model_name": fields.get("model name") or platform.processor() or platform.machine(),
        "vendor": fields.get("vendor_id"),
        "family_model_stepping": "/".join(fields.get(k, "?") for k in ("cpu family", "model", "stepping")),
        "isa_flags": [f for f in ISA_FLAGS if f in flags],
        "cache_size": fields.get("cache size"),  # oneDNN and MKL size their blocks by the caches
        "logical_cpus": os.cpu_count(),
    }


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (those not installed are left out)."""
    from importlib import metadata

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def environment() -> dict:
    """The numerics-relevant environment of this process (JSON-serialisable): torch version, CPU, the instruction
    set torch dispatches to, thread counts, MKL / oneDNN use, deterministic-algorithm mode, the GPU when one is
    visible, the environment variables of :data:`NUMERICS_VARIABLES` that are set and the versions of
    :data:`PACKAGES`. Plain types only, so that
    ``torch.load(..., weights_only=True)`` reads it back (``torch.__version__`` is a ``str`` subclass that it
    refuses)."""
    import torch

    env = {
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": cpu_info(),
        "torch_cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "mkl": torch.backends.mkl.is_available(),
        "onednn": bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "variables": {k: os.environ[k] for k in NUMERICS_VARIABLES if k in os.environ},
        "packages": package_versions(),
    }
    if torch.cuda.is_available():
        env["cuda"] = {
            "version": str(torch.version.cuda),
            "device": str(torch.cuda.get_device_name()),
            "cudnn": torch.backends.cudnn.version(),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        }
    return env


def describe(env: dict | None) -> str:
    """One line of an :func:`environment` record, for reports and logs."""
    if not env:
        return "not recorded"
    cpu = env.get("cpu") or {}
    parts = [
        f"torch {env.get('torch', '?')}",
        f"{cpu.get('model_name', '?')} (family/model/stepping {cpu.get('family_model_stepping', '?')}, "
        f"{cpu.get('logical_cpus', '?')} logical CPUs, ISA {' '.join(cpu.get('isa_flags') or []) or 'none listed'})",
        f"torch CPU capability {env.get('torch_cpu_capability', '?')}",
        f"{env.get('torch_num_threads', '?')} threads",
        f"MKL {'on' if env.get('mkl') else 'off'}, oneDNN {'on' if env.get('onednn') else 'off'}",
    ]
    if env.get("packages"):
        parts.append(", ".join(f"{k} {v}" for k, v in sorted(env["packages"].items())))
    if env.get("cuda"):
        parts.append(f"GPU {env['cuda'].get('device')} (CUDA {env['cuda'].get('version')})")
    if env.get("variables"):
        parts.append(" ".join(f"{k}={v}" for k, v in sorted(env["variables"].items())))
    return "; ".join(parts)
