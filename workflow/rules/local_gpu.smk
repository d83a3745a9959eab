# Local GPU safety (ARCHITECTURE.md section 5), included by the Snakefile.
#
# GPU rules declare `resources: gpu=N` and use CUDA device 0 (training: devices 0..N-1). On one machine with a
# GPU, `snakemake --cores N` would start as many of them at once as cores allow, all on the same device. Unless
# the user says how many may run together (`--resources gpu=N`), a local run therefore gets the global limit
# gpu=1: GPU jobs run one after another, other jobs beside them, and a training job that asks for more GPUs
# still runs (alone, its request lowered to the limit).
#
# No limit where it is not needed:
# - cluster runs (`--profile slurm`: a remote executor, which requires `--jobs`; a local `--jobs N` is turned
#   into `--cores N` before the Snakefile is read): SLURM gives every job its own devices;
# - machines without a GPU (CUDA_VISIBLE_DEVICES empty or -1, or unset and no /dev/nvidia0, /dev/kfd, /dev/dxg):
#   every job runs on the CPU.
#
# Why not a default workflow profile with `resources: [gpu=1]`: Snakemake finds one only in profiles/default/
# beside the Snakefile or the working directory, and its `resources:` also applies to `--profile slurm` runs
# (the workflow profile wins per key): one GPU job at a time on the cluster and a 4-GPU training shrunk to 1.

import os
from pathlib import Path


def local_gpu_present():
    """True when local jobs could share a GPU: CUDA_VISIBLE_DEVICES names one, or a GPU device node exists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return visible.strip() not in ("", "-1", "NoDevFiles")
    dev = Path(os.sep, "dev")  # NVIDIA, AMD (ROCm) and WSL2 device nodes
    return any(dev.glob("nvidia[0-9]*")) or any(
        (dev / name).exists() for name in ("kfd", "dxg")
    )


if (
    "gpu" not in workflow.global_resources
    and workflow.resource_settings.nodes is None
    and local_gpu_present()
):
    workflow.register_resource("gpu", 1)
