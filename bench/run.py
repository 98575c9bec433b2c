"""The suite entry point: the side-by-side benchmarks one after another, then docs/benchmarks.md.

    python -m bench.run --suite peers [--quick] [--only pack,tokens,records,images,remote]

Each step is a subprocess (a script of ``bench/``) with sizes chosen to fit its time budget on
the project's 2-core machine; a step past 1.25x its budget is stopped and reported. The default
suite's budgets add up to 14 minutes (under 15), ``--quick``'s to 115 s (under 2 minutes). Each step's tables
(Markdown lines of its stdout) go, with the commands, machine, versions and each step's time,
into the generated section of ``docs/benchmarks.md`` between the markers below; text outside the
markers is left alone. Plots (matplotlib optional) go under ``docs/``. A script that is not
there yet, or a peer that is not installed, is reported as skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .common import BENCH_HOME, DEFAULT_DATA_DIR, machine_info

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- bench.run: generated section, begin (python -m bench.run rewrites it) -->"
END = "<!-- bench.run: generated section, end -->"
SUITES = ("peers",)
# the quick loader runs: the reference, fastload's default and best settings, every system at w0
_QUICK_LOADER = "fastload w0 full,fastload w2 thread full,torch w0,mds w0,litdata w0,wds w0"


@dataclass(frozen=True, kw_only=True)
class Step:
    """One benchmark script of the suite and what it is given in each mode."""

    name: str
    module: str
    base: tuple[str, ...] = ()
    full: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    budget_s: float = 120.0
    quick_budget_s: float = 20.0
    out_dir: bool = False  # takes --out-dir (written, then deleted)

    def args(self, quick: bool, scale: float | None, repeats: int | None) -> list[str]:
        args = list(self.base) + list(self.quick if quick else self.full)
        for flag, value in (("--scale", scale), ("--repeats", repeats)):
            if value is not None:
                if flag in args:
                    args[args.index(flag) + 1] = str(value)
                else:
                    args += [flag, str(value)]
        return args


# Sizes: pack at --scale 0.05 takes ~1/5 of the 0.25 run's 3-repeat time (~12 min, docs/benchmarks.md)
# with 2 repeats; a loader run is ~3 s of process start plus its cap, x 15 configurations x repeats,
# plus writing each peer's copy once at that scale. Quick runs measured on the 2-core VM with peers
# (2026-11-27): pack 8.7 s, tokens 18.8 s, records 24.3 s, images 29.6 s (first, writing its inputs).
STEPS = {
    "pack": Step(name="pack", module="bench.pack_throughput", full=("--scale", "0.05", "--repeats", "2"),
                 quick=("--scale", "0.01", "--repeats", "1", "--datasets", "tokens,records"),
                 budget_s=210, quick_budget_s=12, out_dir=True),
    "tokens": Step(name="tokens", module="bench.loader_throughput", base=("--datasets", "tokens", "--no-manifest"),
                   full=("--scale", "0.1", "--repeats", "2", "--cap", "3"),
                   quick=("--scale", "0.02", "--repeats", "1", "--cap", "1",
                          "--only", "memmap mm[batch]," + _QUICK_LOADER), budget_s=180, quick_budget_s=24),
    "records": Step(name="records", module="bench.loader_throughput", base=("--datasets", "records", "--no-manifest"),
                    full=("--scale", "0.1", "--repeats", "2", "--cap", "3"),
                    quick=("--scale", "0.02", "--repeats", "1", "--cap", "1",
                           "--only", "arrow take," + _QUICK_LOADER), budget_s=180, quick_budget_s=26),
    "images": Step(name="images", module="bench.images",
                   full=("--scale", "0.1", "--repeats", "2", "--cap", "2", "--transforms", "train"),
                   # --quick for its short decode-limit probe; 200 images, no FFCV (it compiles 14-19 s)
                   quick=("--quick", "--scale", "0.01", "--repeats", "1", "--cap", "1", "--transforms", "train",
                          "--systems", "fastload-thread,torch,mds,litdata"), budget_s=150, quick_budget_s=28),
    "remote": Step(name="remote", module="bench.remote", full=("--scale", "0.05", "--repeats", "2"),
                   # 1,000 token rows (4 MB a system): measured 31 s with each system's first write
                   quick=("--quick", "--scale", "0.005"), budget_s=120, quick_budget_s=25),
}


def script_exists(module: str) -> bool:
    return (ROOT / (module.replace(".", "/") + ".py")).exists()


def command(step: Step, a: argparse.Namespace, json_path: Path, paths: bool = True) -> list[str]:
    """The step's command line; without ``paths``, as the page shows it (no machine paths)."""
    cmd = [sys.executable, "-m", step.module, *step.args(a.quick, a.scale, a.repeats)]
    if a.systems and step.name in ("pack", "tokens", "records"):
        cmd += ["--systems", a.systems if step.name == "pack" else "ref," + a.systems]
    if paths:
        cmd += ["--data-dir", str(a.data_dir), "--json", str(json_path)]
        if step.out_dir:
            cmd += ["--out-dir", str(a.work_dir / "pack-out")]
    return cmd


def run_step(step: Step, a: argparse.Namespace) -> dict:
    """Run one step as a subprocess within its budget; its stdout, time and status."""
    budget = step.quick_budget_s if a.quick else step.budget_s
    json_path = a.work_dir / f"{step.name}.json"
    json_path.unlink(missing_ok=True)
    cmd = command(step, a, json_path)
    shown = " ".join(["python"] + [_quote(c) for c in command(step, a, json_path, paths=False)[1:]])
    if not script_exists(step.module):
        return {"step": step.name, "status": f"skipped: {step.module.replace('.', '/')}.py is not in this tree yet",
                "command": shown, "budget_s": budget, "seconds": 0.0, "stdout": ""}
    print(f"[bench.run] {step.name}: {shown} (budget {budget:.0f} s)", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1.25 * budget, env=env)
        out, status = proc.stdout, "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        err = proc.stderr
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        status = f"stopped after {1.25 * budget:.0f} s (1.25x its budget)"
    seconds = time.perf_counter() - t0
    res = {"step": step.name, "status": status, "command": shown, "budget_s": budget, "seconds": seconds,
           "stdout": out, "skipped_peers": [ln.split("skipped: ", 1)[1] for ln in out.splitlines()
                                            if ln.startswith("# skipped: ")]}
    if status != "ok":
        res["stderr_tail"] = err[-2000:]
        print(f"[bench.run] {step.name}: {status}\n{err[-2000:]}", file=sys.stderr, flush=True)
    if json_path.exists():
        res["json"] = str(json_path)
    print(f"[bench.run] {step.name}: {status} in {seconds:.1f} s", file=sys.stderr, flush=True)
    return res


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " []") else arg


def tables(stdout: str) -> list[str]:
    """The Markdown of a step's stdout: its headings (demoted under the step's) and table rows."""
    out = []
    for line in stdout.splitlines():
        if line.startswith("|"):
            out.append(line)
        elif line.startswith("## "):
            # "tokens: /path/to/tokens.npy (41.0 MB in)" -> "tokens (41.0 MB in)": no machine path in the page
            heading = re.sub(r": /.* \(", " (", line[3:], count=1)
            out += ([""] if out else []) + ["#### " + heading, ""]
        elif line.startswith("# skipped: "):
            out.append(f"- skipped: {line[len('# skipped: '):]}")
    return out


def section(results: list[dict], a: argparse.Namespace, machine: dict, plots: dict[str, str], notes: list[str]) -> str:
    v = machine["versions"]
    lines = [BEGIN, "", f"## Suite run: `python -m bench.run --suite {a.suite}" + (" --quick" if a.quick else "")
             + (f" --only {a.only}" if a.only else "") + "`", "",
             f"Run of {time.strftime('%Y-%m-%d %H:%M', time.localtime())}; machine: {machine['cores']} cores, "
             f"{machine['memory_gib']} GiB, {machine['cpu']}, kernel {machine['kernel']}; disk `{machine['disk']}`.",
             "Versions: " + ", ".join(f"{k} {val if val else '(not installed)'}" for k, val in v.items()) + ".", "",
             "| step | status | seconds | budget s | command |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['step']} | {r['status']} | {r['seconds']:.1f} | {r['budget_s']:.0f} | `{r['command']}` |")
    total = sum(r["seconds"] for r in results)
    lines += ["", f"Total {total:.0f} s. Each step also gets `--data-dir` (the inputs), `--json` and, for pack, "
              "`--out-dir` (the suite's work directory). Tables: medians with the (min–max) range of the repeats.", ""]
    lines += [f"- {n}" for n in notes]
    for r in results:
        body = tables(r.get("stdout", ""))
        if not body:
            continue
        lines += ["", f"### {r['step']}", ""] + body
        if r["step"] in plots:
            lines += ["", f"![{r['step']}]({plots[r['step']]})"]
    lines += ["", END]
    return "\n".join(lines)


def write_docs(path: Path, text: str) -> None:
    """Replace the generated section of ``path`` (or append one), keeping everything else."""
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        new = head + text + tail
    else:
        new = old + ("\n" if old and not old.endswith("\n") else "") + ("\n" if old else "") + text + "\n"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(new)
    os.replace(tmp, path)


def plot(result: dict, png: Path) -> bool:
    """A bar chart of a step's JSON (pack: MB/s in per system; loaders: samples/s); False if the
    JSON has neither shape."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(Path(result["json"]).read_text())
    groups: dict[str, dict[str, float]] = {}
    unit = ""
    for dset, res in (data.get("results") or {}).items():
        runs = res.get("runs", res) if isinstance(res, dict) else {}
        for system, rs in runs.items():
            if not isinstance(rs, list) or not rs or not isinstance(rs[0], dict):
                continue
            key = "mb_in_s" if "mb_in_s" in rs[0] else "samples_s" if "samples_s" in rs[0] else None
            if key is None:
                continue
            unit = "MB/s in" if key == "mb_in_s" else "samples/s"
            vals = sorted(r[key] for r in rs)
            groups.setdefault(dset, {})[system] = vals[len(vals) // 2]
    if not groups:
        return False
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4), squeeze=False)
    for ax, (dset, vals) in zip(axes[0], groups.items()):
        names = list(vals)
        ax.barh(names, [vals[n] for n in names], color=["C0" if n.startswith("fastload") else "C7" for n in names])
        ax.set_xscale("log")
        ax.set_xlabel(unit + " (median, log scale)")
        ax.set_title(result["step"] if result["step"] == dset else f"{result['step']}: {dset}")
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", choices=SUITES, default="peers")
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat: under 2 minutes")
    ap.add_argument("--only", default="", help="comma list of steps: " + ",".join(STEPS))
    ap.add_argument("--scale", type=float, help="override every step's scale (fraction of the full inputs)")
    ap.add_argument("--repeats", type=int, help="override every step's repeats")
    ap.add_argument("--systems", default="", help="restrict pack/loader steps to these systems (e.g. fastload,copy)")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--work-dir", type=Path, default=BENCH_HOME / "run",
                    help="each step's JSON and the pack outputs")
    ap.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--dry-run", action="store_true", help="print the steps' commands and budgets, run nothing")
    ap.add_argument("--json", type=Path, help="write the suite's record (steps, times, statuses) here")
    a = ap.parse_args(argv)
    names = [n for n in a.only.split(",") if n] or list(STEPS)
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        ap.error(f"unknown step(s) {unknown}; valid: {','.join(STEPS)}")
    a.work_dir.mkdir(parents=True, exist_ok=True)
    steps = [STEPS[n] for n in names]
    if a.dry_run:
        total = 0.0
        for s in steps:
            budget = s.quick_budget_s if a.quick else s.budget_s
            total += budget
            there = "" if script_exists(s.module) else "   [skipped: script not in this tree yet]"
            print(f"{s.name:8} budget {budget:5.0f} s  " + " ".join(command(s, a, a.work_dir / f"{s.name}.json")[1:]) + there)
        print(f"total budget {total:.0f} s")
        return 0
    results = [run_step(s, a) for s in steps]
    machine = machine_info(a.data_dir)
    notes: list[str] = []
    plots: dict[str, str] = {}
    if importlib.util.find_spec("matplotlib") is None:
        notes.append("plots skipped: matplotlib is not installed (pip install 'fastload[bench]')")
    else:
        for r in results:
            if r.get("json"):
                png = a.docs.parent / f"bench-{r['step']}.png"
                if plot(r, png):
                    plots[r["step"]] = os.path.relpath(png, a.docs.parent)
    write_docs(a.docs, section(results, a, machine, plots, notes))
    print(f"[bench.run] wrote {a.docs}" + (f" and {len(plots)} plot(s)" if plots else ""), file=sys.stderr)
    if a.json:
        a.json.write_text(json.dumps({"machine": machine, "steps": [{k: v for k, v in r.items() if k != "stdout"}
                                                                  for r in results]}, indent=1) + "\n")
    return 0 if all(r["status"] == "ok" or r["status"].startswith("skipped") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
