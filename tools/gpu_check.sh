#!/usr/bin/env bash
# The GPU check (issue #20, part 6): one command on a machine with one CUDA GPU, about 12 minutes once the venv is
# installed there. Writes OUT/summary.md and OUT/summary.json (default OUT: results/gpu_check), beside each step's
# log and outputs:
#   env      torch sees the GPU; mmcv's RoIAlign and NMS run on it (mmcv built with CUDA ops)      -> env.log
#   tests    the GPU-marked tests (pytest -m gpu): torchvision's own CUDA ops, OAKE on CUDA vs CPU  -> tests.xml
#   bench    OAKE throughput: each extractor end to end vs the bare batched forward, ViT-B-32 fp16  -> bench/oake.json
#   bench_stages  the cost plan's GPU throughputs: OAKE rows/s per kind, detector s/iteration       -> bench/stages.json
#   presets  both presets end to end under dry_run on CUDA through the same snakemake commands as CI
#            (tests/test_presets_e2e.py: CLIP under autocast at oake.precision, AMP training, one GPU per
#            job; the two presets side by side)                                                    -> presets/
# The venv must be built on the GPU machine: `make install` there takes PyPI's CUDA torch wheel; mmcv's ops are
# compiled with CUDA when nvcc is found (FORCE_CUDA=1 makes a missing nvcc an error). Usage:
#   tools/gpu_check.sh [OUT]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/gpu_check}
PY=.venv/bin/python
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
: > "$OUT/steps.tsv"

step() {  # step NAME SECONDS COMMAND...: run under a time limit, log to OUT/NAME.log, record rc and seconds
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(($(date +%s) - start))" | tee -a "$OUT/steps.tsv"
    return $rc
}

step env 60 "$PY" -c '
import torch, mmcv.ops
assert torch.cuda.is_available(), "torch sees no CUDA device (a CPU wheel? make install on this machine)"
print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))
x = torch.rand(1, 4, 16, 16, device="cuda")
rois = torch.tensor([[0, 1.0, 1.0, 9.0, 9.0]], device="cuda")
print("RoIAlign", tuple(mmcv.ops.roi_align(x, rois, (7, 7), 1.0, 0).shape))
boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11.0]], device="cuda")
print("NMS kept", mmcv.ops.nms(boxes, torch.tensor([0.9, 0.8], device="cuda"), 0.5)[1].tolist())
' || { echo "no usable GPU environment: see $OUT/env.log" >&2; exit 1; }
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1

step tests 90 "$PY" -m pytest -q -rs -m gpu --junitxml "$OUT/tests.xml" tests
step bench 120 "$PY" -m benchmarks oake --out-dir "$OUT/bench"
# the throughputs the cost plan reads for this GPU (python -m pipeline.plan --device <its short name>)
step bench_stages 300 "$PY" -m benchmarks stages --out-dir "$OUT/bench"

# both presets at once, each its own snakemake run (8 cores, two GPU jobs at a time)
export OADP_PRESETS_KEEP="$OUT/presets" OADP_PRESETS_SNAKEMAKE="--cores 8 --resources gpu=2"
step presets_coco 300 "$PY" -m pytest -q -rs -s -m presets tests/test_presets_e2e.py -k coco \
    --junitxml "$OUT/presets_coco.xml" &
step presets_lvis 300 "$PY" -m pytest -q -rs -s -m presets tests/test_presets_e2e.py -k lvis \
    --junitxml "$OUT/presets_lvis.xml" &
wait

"$PY" - "$OUT" <<'EOF'
"""summary.json and summary.md of the steps, the tests, the benchmark and the preset runs."""
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

out = Path(sys.argv[1])
steps = {}
for line in (out / "steps.tsv").read_text().splitlines():
    name, rc, seconds = line.split("\t")
    steps[name] = {"rc": int(rc), "seconds": int(seconds)}
summary = {"steps": steps, "tests": {}, "presets": {}}
for xml in sorted(out.glob("*.xml")):
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    summary["tests"][xml.stem] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
bench = out / "bench/oake.json"
if bench.exists():
    summary["oake_throughput"] = json.loads(bench.read_text())["throughput"]
stages = out / "bench/stages.json"
if stages.exists():
    summary["stages"] = json.loads(stages.read_text())
for preset in ("ov_coco", "ov_lvis"):
    folder = out / "presets" / preset
    if (folder / "time.json").exists():
        entry = json.loads((folder / "time.json").read_text())
        entry["metrics"] = {p.parent.name: json.loads(p.read_text()) for p in folder.glob("evaluate/*/metrics.json")}
        summary["presets"][preset] = entry
ok = all(s["rc"] == 0 for s in steps.values())
summary["ok"] = ok
(out / "summary.json").write_text(json.dumps(summary, indent=1))
lines = [f"# GPU check: {'passed' if ok else 'FAILED'}", "", "| step | rc | seconds |", "|---|---|---|"]
lines += [f"| {n} | {s['rc']} | {s['seconds']} |" for n, s in steps.items()]
lines += ["", "| tests | run | failed | errors | skipped |", "|---|---|---|---|---|"]
lines += [
    f"| {n} | {t['tests']} | {t['failures']} | {t['errors']} | {t['skipped']} |" for n, t in summary["tests"].items()
]
if "oake_throughput" in summary:
    lines += ["", "| OAKE kind | extractor img/s | bare forward img/s | ratio (target >= 0.9) |", "|---|---|---|---|"]
    lines += [
        f"| {k} | {v['extractor_images_per_s']} | {v['bare_forward_images_per_s']} | {v['ratio']} |"
        for k, v in summary["oake_throughput"].items()
    ]
if "stages" in summary:
    st = summary["stages"]
    lines += ["", f"| cost plan throughputs on {st['device_name']} | rows/s |", "|---|---|"]
    lines += [f"| oake {m} {k} | {v['rows_per_s']} |" for m, kinds in st["oake"].items() for k, v in kinds.items()]
    lines += [f"| train {c} (s per iteration of 2 images) | {v['s_per_iter']} |" for c, v in st["train"].items()]
for preset, entry in summary["presets"].items():
    lines += ["", f"{preset}: {entry['seconds']} s (cuda: {entry['cuda']}); metrics in presets/{preset}/evaluate/"]
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
sys.exit(0 if ok else 1)
EOF
