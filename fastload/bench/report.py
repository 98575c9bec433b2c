"""A benchmark's results as a terminal report, a JSON file, and a PNG plot of rate against workers."""

from __future__ import annotations

import json
from pathlib import Path
from statistics import median
from typing import Any

from ..errors import FastloadError


def _n(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    s = f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"
    return s + unit


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    def line(cells: list[str]) -> str:  # first column left-aligned, figures right-aligned
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]


def text(m: dict[str, Any]) -> str:
    """The human-readable report: dataset, storage, decode, loader grid, stall, advice."""
    d, mach = m["dataset"], m["machine"]
    out = [f"fastload bench: {d['url']}" + (f" (synthetic {d['synthetic']})" if d.get("synthetic") else ""),
           f"  {d['records']:,} records in {d['shards']} shards, {_n(d['bytes'] / 1e6)} MB "
           f"({_n(d['bytes_per_record'])} B/record), compression {d['compression']}; "
           f"schema {d['schema']}",
           f"  machine: {mach['cores']} cores, {mach['memory'].get('total_gib')} GiB, {mach['cpu']}; "
           f"repeats {m['config']['repeats']} (medians)", ""]
    st = m.get("storage")
    if st:
        out.append(f"1. storage limit ({st['pattern']})")
        kind = "remote" if st.get("remote") else "page cache (warm)"
        out.append(f"   {kind:<20} {_n(median(st['mb_s']))} MB/s  = {_n(median(st['mb_s']) * 1e6 / max(d['bytes_per_record'], 1e-9))} samples/s")
        if st.get("cold_mb_s"):
            out.append(f"   {'disk (cold)':<20} {_n(median(st['cold_mb_s']))} MB/s  [{st['cold_method']}]")
        elif st.get("cold_skipped"):
            out.append(f"   {'disk (cold)':<20} not measured: {st['cold_skipped']}")
        out.append(f"   {'memory copy':<20} {_n(median(st['memcpy_mb_s']))} MB/s (one core)")
        out.append("")
    dec = m.get("decode")
    if dec:
        out.append("2. decode cost, one core")
        c = dec["codec"]
        line = f"   checksum {_n(c['checksum_mb_s'])} MB/s"
        if c.get("zstd_mb_s"):
            line += (f"; zstd {_n(c['zstd_mb_s'])} MB/s raw ({c['blocks_compressed']}/{c['blocks_sampled']} "
                     f"blocks compressed, ratio {c['ratio']:.2f})")
        else:
            line += "; no compressed blocks"
        out.append(line)
        rows = [[name, f["spec"], _n(f["bytes_per_record"]), _n(f.get("gather_samples_s")),
                 _n(f.get("decode_samples_s")), f["decode"]] for name, f in dec["fields"].items()]
        out += ["   " + x for x in _table(["field", "type", "B/rec", "gather/s", "decode/s", "decode"], rows)]
        out.append("")
    rows_l = m.get("loader")
    if rows_l:
        out.append("3. loader (fastload.DataLoader)")
        rows = [[r["label"], _n(r["samples_s"]), _n(r["mb_s"]),
                 "-" if r["fraction_of_storage"] is None else f"{r['fraction_of_storage']:.0%}",
                 _n(r["first_batch_s"])] for r in rows_l]
        out += ["   " + x for x in _table(["setting", "samples/s", "MB/s", "of storage", "first batch s"], rows)]
        out.append("")
    s = m.get("stall")
    if s:
        out.append(f"4. data stall with a {s['step_ms']:.1f} ms step ({s['setting']['label']}): "
                   f"{s['stall_pct']:.1f}% of step time waiting for data; {_n(s['samples_s'])} samples/s")
        out.append("")
    tc = m.get("torch_compare")
    if tc:
        out.append(f"   your torch Dataset ({tc['spec']}, {tc['samples']:,} samples; packed in {tc['pack_s']:.1f} s)")
        rows = [[r["system"], str(r["num_workers"]), _n(r["samples_s"]), _n(r["first_batch_s"])] for r in tc["rows"]]
        out += ["   " + x for x in _table(["loader", "workers", "samples/s", "first batch s"], rows)]
        out.append("")
    out.append("5. advice")
    out += [f"   - {a}" for a in m["advice"]]
    for note in m.get("notes", []):
        out.append(f"   note: {note}")
    return "\n".join(out)


def write_json(path: str | Path, m: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(m, indent=1, default=str) + "\n")


def plot(path: str | Path, m: dict[str, Any]) -> None:
    """Samples/s against num_workers, one line per (worker type, shuffle, batch size), with the
    storage limit (converted to samples/s) drawn as a horizontal line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FastloadError("--plot needs matplotlib: pip install 'fastload[bench]' (or matplotlib)") from None
    rows = m.get("loader") or []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lines: dict[tuple, list[tuple[int, float]]] = {}
    for r in rows:
        key = (r["shuffle"], r["batch_size"])
        for kind in ((r["worker_type"],) if r["num_workers"] else ("thread", "process")):
            lines.setdefault((kind, *key), []).append((r["num_workers"], r["samples_s"]))
    for (kind, shuffle, bs), pts in sorted(lines.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{kind}, {shuffle}, batch {bs}")
    st = m.get("storage")
    bpr = m["dataset"]["bytes_per_record"]
    if st and bpr:
        limit = median(st["mb_s"]) * 1e6 / bpr
        ax.axhline(limit, color="k", linestyle="--", label="storage limit" + (" (remote)" if st.get("remote") else " (warm)"))
        if st.get("cold_mb_s"):
            ax.axhline(median(st["cold_mb_s"]) * 1e6 / bpr, color="grey", linestyle=":", label="storage limit (cold)")
    ax.set_xticks(sorted({r["num_workers"] for r in rows}))
    ax.set_xlabel("num_workers")
    ax.set_ylabel("samples/s")
    ax.set_yscale("log")
    ax.set_title(f"fastload bench: {m['dataset']['url']}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
