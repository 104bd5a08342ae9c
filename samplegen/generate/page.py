"""The audition page: one static HTML file that presents a run folder (no server, no internet).

Audio and images are referenced by relative paths, so the page works from `file://` as long as it
stays inside the run folder; all style is inline and there is no script. Every part of the run
folder that exists is shown, every part that does not is listed as missing.
"""

from __future__ import annotations

import csv
import functools
import html
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from samplegen.atomic import write_text_atomic

PAGE_NAME = "index.html"
STUDIES = ("outer_study", "vae_study")
# The folders of a run folder the page presents; a folder with none of them is not a run folder.
RUN_PARTS = ("dataset", *STUDIES, "models", "evaluation", "sounds")
# What every page this module writes holds, so an existing file is replaced only if it is one.
PAGE_TITLE = "<title>samplegen run "
MODEL_GROUPS = ("outer", "combined")
SOUND_ORDER = ("reconstruct", "interpolate", "grid", "random", "perturb", "sweep")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#b8c0d0;font-size:13px}
nav{padding:8px 28px;background:#e8ebf0;font-size:13px}nav a{margin-right:14px;color:#2a4f8a}
main{padding:8px 28px 40px}section{background:#fff;border-radius:8px;padding:14px 18px;margin:16px 0;
box-shadow:0 1px 3px rgba(0,0,0,.08)}h2{margin:4px 0 10px;font-size:18px}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:12px;margin:6px 0}td,th{border:1px solid #d5dae3;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#eef1f5}.missing{color:#a33;font-size:13px}.note{color:#555;font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #dde2ea;border-radius:6px;padding:6px;width:262px;font-size:12px;background:#fbfcfd}
.card img{width:256px;display:block}.card audio{width:256px;height:32px}.card .label{font-weight:600;margin:2px 0;word-break:break-all}
.pair{display:flex;gap:10px;align-items:flex-start;margin-bottom:10px}
.grid td{padding:2px;border:none}.grid .card{width:132px}.grid .card img{width:128px}.grid .card audio{width:128px;height:28px}
img.plot{max-width:100%;border:1px solid #e2e6ec}pre{background:#f3f5f8;padding:8px;font-size:12px;overflow:auto}
"""


@dataclass
class Page:
    """HTML being assembled; `missing` collects the run-folder parts that do not exist."""

    page_dir: Path
    parts: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    toc: list[tuple[str, str]] = field(default_factory=list)
    media: list[Path] = field(default_factory=list)

    def url(self, target: Path) -> str:
        """Relative URL from the page to `target` (URL-quoted, forward slashes)."""
        rel = os.path.relpath(Path(target).resolve(), self.page_dir.resolve())
        return quote(rel.replace(os.sep, "/"))

    def add(self, text: str) -> None:
        self.parts.append(text)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)[:200]
    return str(value)


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return '<p class="note">(empty)</p>'
    cols = columns or list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(_fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _kv_table(data: dict[str, Any]) -> str:
    return _table([{"setting": k, "value": v} for k, v in _flatten(data).items()])


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict):
                out.update(_flatten(v, key))
            else:
                out[key] = v
    else:
        out[prefix or "value"] = data
    return out


def markdown_to_html(text: str) -> str:
    """A small Markdown subset (headings, tables, lists, code blocks, paragraphs); all text escaped."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0

    def inline(s: str) -> str:
        s = _e(s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", s)

    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append("<pre>" + _e("\n".join(lines[i + 1 : j])) + "</pre>")
            i = j + 1
        elif m := re.match(r"^(#{1,6})\s+(.*)", line):
            level = min(6, len(m.group(1)) + 2)
            out.append(f"<h{level}>{inline(m.group(2))}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|"):
            rows = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(re.fullmatch(r":?-{2,}:?", c) for c in cells if c):
                    rows.append(cells)
                i += 1
            if rows:
                head = "".join(f"<th>{inline(c)}</th>" for c in rows[0])
                body = "".join(
                    "<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:]
                )
                out.append(f"<table><tr>{head}</tr>{body}</table>")
        elif re.match(r"^\s*[-*]\s+", line):
            items = []
            while i < len(lines) and re.match(r"^\s*[-*]\s+", lines[i]):
                item = re.sub(r"^\s*[-*]\s+", "", lines[i])
                items.append(f"<li>{inline(item)}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        elif line.strip():
            para = []
            while (
                i < len(lines)
                and lines[i].strip()
                and not re.match(r"^(#|\||```|\s*[-*]\s)", lines[i])
            ):
                para.append(inline(lines[i]))
                i += 1
            out.append("<p>" + " ".join(para) + "</p>")
        else:
            i += 1
    return "\n".join(out)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {"error": f"could not read {path.name}: {exc}"}


def _section(page: Page, anchor: str, title: str, body: Callable[[], str]) -> None:
    page.toc.append((anchor, title))
    page.add(f'<section id="{anchor}"><h2>{_e(title)}</h2>{body()}</section>')


def _missing(page: Page, path: Path, run_dir: Path) -> str:
    rel = os.path.relpath(path, run_dir)
    page.missing.append(rel)
    return f'<p class="missing">missing: {_e(rel)}</p>'


def _img(page: Page, path: Path, alt: str, cls: str = "plot") -> str:
    page.media.append(path)
    return f'<img class="{cls}" src="{page.url(path)}" alt="{_e(alt)}">'


def _audio(page: Page, path: Path) -> str:
    page.media.append(path)
    return f'<audio controls preload="none" src="{page.url(path)}"></audio>'


def _card(page: Page, folder: Path, item: dict[str, Any], label: str | None = None) -> str:
    parts = [f'<div class="card"><div class="label">{_e(label or item.get("name", ""))}</div>']
    wav = folder / str(item.get("wav", ""))
    if item.get("wav") and wav.is_file():
        parts.append(_audio(page, wav))
    else:
        parts.append(f'<p class="missing">missing audio {_e(item.get("wav", ""))}</p>')
    png = folder / str(item.get("png", ""))
    if item.get("png") and png.is_file():
        parts.append(_img(page, png, f"spectrogram of {item.get('name', '')}", cls="spec"))
    parts.append("</div>")
    return "".join(parts)


# --- sections ---------------------------------------------------------------------------------
def _dataset(page: Page, run: Path) -> str:
    d = run / "dataset"
    md, js = d / "report.md", d / "report.json"
    if md.is_file():
        return markdown_to_html(md.read_text(encoding="utf-8"))
    if js.is_file():
        return _kv_table(_read_json(js))
    return _missing(page, md, run)


def _results_rows(path: Path, limit: int = 10) -> tuple[list[dict[str, Any]], str]:
    """Top rows of a study's results.csv, sorted by its loss-like column when there is one."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return [], ""
    keys = list(rows[0])
    metric = next(
        (k for pref in ("objective", "test_loss", "val_loss", "loss") for k in keys if k == pref),
        None,
    ) or next((k for k in keys if "loss" in k.lower()), None)

    def num(v: Any) -> float:
        try:
            return float(v)
        except (TypeError, ValueError):
            return float("inf")

    if metric:
        rows.sort(key=lambda r: num(r.get(metric)))
    cols = [k for k in keys if not k.startswith("config/") or len(keys) < 14][:14]
    trimmed = [{k: r.get(k, "") for k in cols} for r in rows[:limit]]
    note = f"{len(rows)} trials" + (f", best {limit} by {metric}" if metric else "")
    return trimmed, note


def _study(page: Page, run: Path, name: str) -> str:
    d = run / name
    if not d.is_dir():
        return _missing(page, d, run)
    out = []
    best = d / "best_config.json"
    out.append("<h3>Best configuration</h3>")
    out.append(_kv_table(_read_json(best)) if best.is_file() else _missing(page, best, run))
    prog = d / "progress.png"
    out.append("<h3>Search progress</h3>")
    out.append(
        _img(page, prog, f"{name} progress") if prog.is_file() else _missing(page, prog, run)
    )
    res = d / "results.csv"
    out.append("<h3>Results</h3>")
    if res.is_file():
        rows, note = _results_rows(res)
        out.append(f'<p class="note">{_e(note)}</p>' + _table(rows))
    elif (d / "results.parquet").is_file():
        out.append('<p class="note">results.parquet present (no CSV copy to show)</p>')
    else:
        out.append(_missing(page, res, run))
    return "".join(out)


def _models(page: Page, run: Path) -> str:
    out = []
    for group in MODEL_GROUPS:
        d = run / "models" / group
        out.append(f"<h3>{_e(group)}</h3>")
        if not d.is_dir():
            out.append(_missing(page, d, run))
            continue
        rows = []
        # models/<group> is either one model directory or a folder of them.
        dirs = [d] if (d / "config.json").is_file() else sorted(d.iterdir())
        for m in (p for p in dirs if (p / "config.json").is_file()):
            cfg = _read_json(m / "config.json")
            row: dict[str, Any] = {"model": m.name}
            if isinstance(cfg, dict):
                row["architecture"] = cfg.get("name", cfg.get("model", ""))
                for k in ("num_params", "params", "compression"):
                    if k in cfg:
                        row[k] = cfg[k]
                metrics = cfg.get("metrics")
                if isinstance(metrics, dict):
                    row.update(
                        {k: v for k, v in _flatten(metrics).items() if not isinstance(v, list)}
                    )
            rows.append(row)
        out.append(_table(rows) if rows else '<p class="note">no model directories</p>')
    return "".join(out)


def _evaluation(page: Page, run: Path) -> str:
    d = run / "evaluation"
    if not d.is_dir():
        return _missing(page, d, run)
    out = [_evaluation_folder(page, run, d, required=True)]
    # Evaluations of other models (e.g. the outer model alone) in sub-folders.
    for sub in sorted(p for p in d.iterdir() if p.is_dir()):
        out.append(f"<h3>{_e(sub.name)}</h3>" + _evaluation_folder(page, run, sub, required=False))
    return "".join(out)


def _evaluation_folder(page: Page, run: Path, d: Path, *, required: bool) -> str:
    out = []
    summary, metrics = d / "summary.md", d / "metrics.json"
    if summary.is_file():
        out.append(markdown_to_html(summary.read_text(encoding="utf-8")))
    elif required:
        out.append(_missing(page, summary, run))
    if metrics.is_file():
        out.append(f"<h4>{_e(os.path.relpath(metrics, run))}</h4>" + _kv_table(_read_json(metrics)))
    elif required:
        out.append(_missing(page, metrics, run))
    for png in sorted(d.glob("*.png")):
        out.append(f"<h4>{_e(png.stem)}</h4>" + _img(page, png, png.stem))
    return "".join(out)


def _sound_kind(page: Page, run: Path, folder: Path) -> str:
    man_path = folder / "manifest.json"
    if not man_path.is_file():
        return _missing(page, man_path, run)
    man = _read_json(man_path)
    items: list[dict[str, Any]] = man.get("sounds", []) if isinstance(man, dict) else []
    kind = man.get("kind", folder.name) if isinstance(man, dict) else folder.name
    settings = man.get("settings", {}) if isinstance(man, dict) else {}
    model = (man.get("model") or {}) if isinstance(man, dict) else {}
    out = [
        f'<p class="note">model {_e(model.get("name", "?"))} ({_e(model.get("path", ""))}), '
        f"settings {_e(json.dumps(settings)[:300])}</p>"
    ]
    inputs = man.get("inputs", []) if isinstance(man, dict) else []
    input_cards = {
        i.get("name"): _card(page, folder, i, f"input {i.get('name')}")
        for i in inputs
        if i.get("wav")
    }
    for png in sorted(folder.glob("analysis_*.png")):
        out.append(_img(page, png, png.stem))
    if kind == "reconstruct":
        for idx, inp in enumerate(inputs):
            mine = [s for s in items if (s.get("info") or {}).get("input_index") == idx]
            out.append('<div class="pair">' + input_cards.get(inp.get("name"), ""))
            out.append("".join(_card(page, folder, s) for s in mine) + "</div>")
            pair = folder / str(inp.get("pair_png", ""))
            if inp.get("pair_png") and pair.is_file():
                out.append(_img(page, pair, f"original vs reconstruction {inp.get('name')}"))
        return "".join(out)
    if input_cards:
        out.append('<h3>inputs</h3><div class="cards">' + "".join(input_cards.values()) + "</div>")
    layout = man.get("layout") or {}
    if kind in ("grid", "sweep") and layout.get("rows") and layout.get("cols"):
        cols = int(layout["cols"])
        out.append('<table class="grid">')
        for r in range(0, len(items), cols):
            out.append(
                "<tr>"
                + "".join(f"<td>{_card(page, folder, s)}</td>" for s in items[r : r + cols])
                + "</tr>"
            )
        out.append("</table>")
    else:
        out.append(
            '<div class="cards">' + "".join(_card(page, folder, s) for s in items) + "</div>"
        )
    return "".join(out)


def _sounds(page: Page, run: Path) -> Iterable[tuple[str, str, Callable[[], str]]]:
    root = run / "sounds"
    if not root.is_dir():
        yield "sounds", "Sounds", lambda: _missing(page, root, run)
        return
    present = [p for p in root.iterdir() if p.is_dir()]
    known = [root / k for k in SOUND_ORDER]
    extra = sorted(p for p in present if p.name not in SOUND_ORDER)
    for folder in known + extra:
        title = f"Sounds: {folder.name}"
        if folder.is_dir():
            yield f"sounds-{folder.name}", title, functools.partial(_sound_kind, page, run, folder)
        else:
            yield f"sounds-{folder.name}", title, functools.partial(_missing, page, folder, run)


def _check_target(run: Path, target: Path) -> None:
    """Refuse a folder that is no run folder, and a page path that would replace something else."""
    from samplegen.errors import SamplegenError

    if not any((run / part).is_dir() for part in RUN_PARTS):
        raise SamplegenError(
            f"{run}: not a run folder (none of {', '.join(p + '/' for p in RUN_PARTS)} in it); "
            "give the folder that `samplegen run --out` wrote"
        )
    if target.is_dir():
        raise SamplegenError(
            f"--out {target}: is a folder; give the page's file path ({target / PAGE_NAME})"
        )
    if target.exists():
        try:
            ours = PAGE_TITLE in target.read_text(encoding="utf-8", errors="replace")[:4096]
        except OSError:
            ours = False
        if not ours:
            raise SamplegenError(
                f"--out {target}: a file that is not an audition page is there; refusing to "
                "replace it (give another path, or remove it)"
            )


def build_page(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    missing: list[str] | None = None,
) -> Path:
    """Write the audition page for `run_dir` (default `RUN_DIR/index.html`); returns its path.

    The page must stay inside (or next to) the run folder: media are linked by relative path.
    `missing`, when given, receives the parts of a run folder that are not there (the page lists
    them too).
    """
    run = Path(run_dir).resolve()
    target = Path(out).resolve() if out is not None else run / PAGE_NAME
    _check_target(run, target)
    page = Page(target.parent)
    _section(page, "dataset", "Dataset", lambda: _dataset(page, run))
    for name in STUDIES:
        _section(page, name, f"Study: {name}", functools.partial(_study, page, run, name))
    _section(page, "models", "Best models", lambda: _models(page, run))
    _section(page, "evaluation", "Evaluation", lambda: _evaluation(page, run))
    for anchor, title, body in _sounds(page, run):
        _section(page, anchor, title, body)
    missing_html = (
        "<ul>" + "".join(f"<li>{_e(m)}</li>" for m in page.missing) + "</ul>"
        if page.missing
        else "<p>nothing: every part of the run folder is present.</p>"
    )
    if missing is not None:
        missing.extend(page.missing)
    page.toc.append(("missing", "Missing"))
    page.add(
        f'<section id="missing"><h2>Missing parts of the run folder</h2>{missing_html}</section>'
    )
    nav = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in page.toc)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{PAGE_TITLE}{_e(run.name)}</title>"
        # Nothing is fetched from the network; inline style only, and no favicon request.
        '<link rel="icon" href="data:,">'
        f"<style>{_CSS}</style></head><body>"
        f"<header><h1>samplegen run: {_e(run.name)}</h1><p>{_e(str(run))} &middot; page written {stamp}"
        f" &middot; {len(page.missing)} part(s) missing</p></header>"
        f"<nav>{nav}</nav><main>{''.join(page.parts)}</main></body></html>\n"
    )
    return write_text_atomic(target, doc)
