"""The plan as a readable table: one line per stage (and split or experiment), then the totals."""

from __future__ import annotations

from collections.abc import Mapping


def human_bytes(n: float | None) -> str:
    """``1.2 GB`` style (decimal units), ``?`` for unknown."""
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def human_seconds(s: float | None) -> str:
    """``42 s``, ``7.5 min``, ``3.2 h``; ``unmeasured`` for unknown."""
    if s is None:
        return "unmeasured"
    if s < 120:
        return f"{s:.0f} s"
    if s < 2 * 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _work(stage: Mapping) -> str:
    w = stage["work"]
    name = stage["stage"]
    if name.startswith("oake_"):
        return f"{w['images']} img x {w['rows_per_image']} rows x {w['dim']} dims"
    if name in ("train", "proposals_train"):
        text = f"{w['iters']} it x {w['images_per_step']} img"
        if w.get("accumulation", 1) > 1:
            text += f" ({w['accumulation']} accumulated)"
        return text
    if name == "train_predict":
        return f"{w['images']} img x {w['detections_per_image']} dets"
    return f"{w['images']} img x {w['boxes_per_image']} boxes"


def table(plan: Mapping) -> str:
    """The plan's table (stage, where, jobs done / all, work, disk, time on the plan's device, remaining)."""
    head = ("stage", "split / experiment", "done", "work", "disk", f"time ({plan['device']})", "remaining")
    rows = [head]
    for s in plan["stages"]:
        where = s.get("folder") or s.get("experiment") or ""
        remaining = f"{human_bytes(s['remaining_bytes'])}, {human_seconds(s['remaining_seconds'])}"
        rows.append(
            (
                s["stage"],
                where,
                f"{s['done']}/{len(s['jobs'])}",
                _work(s),
                human_bytes(s["bytes"]),
                human_seconds(s["seconds"]),
                remaining if s["done"] < len(s["jobs"]) else "-",
            )
        )
    t = plan["totals"]
    time_total = human_seconds(t["seconds"]) + (" + unmeasured" if t["unmeasured"] else "")
    rows.append(("total", "", "", "", human_bytes(t["bytes"]) + (" + ?" if t["bytes_unknown"] else ""), time_total, ""))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    splits = ", ".join(
        f"{k}: {v['images']} images ({v['blocks_per_image']} blocks each)" for k, v in plan["splits"].items()
    )
    lines.insert(0, f"plan for {plan['dataset']}{' (dry run)' if plan['dry_run'] else ''}: {splits}")
    kinds = ", ".join(f"{k} {human_bytes(v)}" for k, v in plan["bytes_by_kind"].items())
    lines.append(
        f"OAKE disk by kind: {kinds}; remaining: {human_bytes(t['remaining_bytes'])}, "
        f"{human_seconds(t['remaining_seconds'])} of measured time"
    )
    if t["unmeasured"]:
        lines.append(f"unmeasured on {plan['device']} (no stages.json benchmark): {', '.join(t['unmeasured'])}")
    return "\n".join(lines)
