"""The dataset report: what was seen, kept, rejected (with reasons) and filtered, as JSON and Markdown."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from samplegen.platform.splits import SPLIT_NAMES


def count_table(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, dict[str, int]]:
    """{value of `key`: {split: count}} over the kept rows."""
    table: dict[str, dict[str, int]] = {}
    for row in rows:
        value = str(row.get(key) if row.get(key) is not None else "unknown")
        per_split = table.setdefault(value, dict.fromkeys(SPLIT_NAMES, 0))
        per_split[row["split"]] += 1
    return dict(sorted(table.items()))


def build_report(
    *,
    source: str,
    fingerprint: str,
    codec: Mapping[str, Any],
    settings: Mapping[str, Any],
    files: Sequence[Mapping[str, Any]],
    rows: Sequence[Mapping[str, Any]],
    other_files: Sequence[str],
    warnings: Sequence[str],
) -> dict[str, Any]:
    """The report.json content.

    `files` holds one entry per audio file seen (path, status, reason, detail, size, sha256, ...),
    `rows` one entry per dataset row (kept files and augmented rows: mixes, variation presets)
    with split, group and category.
    """
    status = Counter(f["status"] for f in files)
    originals = [r for r in rows if not r["augmented"]]
    return {
        "source": source,
        "fingerprint": fingerprint,
        "codec": dict(codec),
        "settings": dict(settings),
        "counts": {
            "seen": len(files),
            "kept": status.get("kept", 0),
            "rejected": status.get("rejected", 0),
            "filtered": status.get("filtered", 0),
            "augmented": len(rows) - len(originals),
            "rows": len(rows),
            "other_files_ignored": len(other_files),
        },
        "rejected_by_reason": dict(
            sorted(Counter(f["reason"] for f in files if f["status"] == "rejected").items())
        ),
        "filtered_by_reason": dict(
            sorted(Counter(f["reason"] for f in files if f["status"] == "filtered").items())
        ),
        "rows_per_split": {s: sum(r["split"] == s for r in rows) for s in SPLIT_NAMES},
        "groups_per_split": {
            s: len({r["group"] for r in originals if r["split"] == s}) for s in SPLIT_NAMES
        },
        "kept_per_category": count_table(originals, "category"),
        "warnings": list(warnings),
        "files": list(files),
        "other_files_ignored": list(other_files),
    }


def _md_escape(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Mapping[str, Any]) -> str:
    """A readable report.md for `report` (as built by build_report)."""
    c = report["counts"]
    lines = [
        f"# Dataset report: {report['source']}",
        "",
        f"Fingerprint `{report['fingerprint']}`.",
        "",
        f"- Files seen: {c['seen']} (kept {c['kept']}, rejected {c['rejected']}, filtered {c['filtered']})",
        f"- Augmented rows (train only: audio-domain mixes, variation presets): {c['augmented']}",
        f"- Dataset rows: {c['rows']} "
        + "("
        + ", ".join(f"{s} {n}" for s, n in report["rows_per_split"].items())
        + ")",
        "- Instrument groups per split: "
        + ", ".join(f"{s} {n}" for s, n in report["groups_per_split"].items()),
        f"- Other (non-audio) files ignored: {c['other_files_ignored']}",
        "",
    ]
    if report["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    lines += [
        "## Kept files per category and split",
        "",
        "| category | " + " | ".join(SPLIT_NAMES) + " |",
    ]
    lines.append("|---|" + "---:|" * len(SPLIT_NAMES))
    for category, per_split in report["kept_per_category"].items():
        lines.append(
            f"| {_md_escape(category)} | "
            + " | ".join(str(per_split[s]) for s in SPLIT_NAMES)
            + " |"
        )
    lines.append("")
    for status, title in (("rejected", "Rejected files"), ("filtered", "Filtered files")):
        entries = [f for f in report["files"] if f["status"] == status]
        lines += [f"## {title} ({len(entries)})", ""]
        if entries:
            by_reason = report[f"{status}_by_reason"]
            lines.append("By reason: " + ", ".join(f"{r} {n}" for r, n in by_reason.items()) + ".")
            lines += ["", "| file | reason | detail |", "|---|---|---|"]
            lines += [
                f"| {_md_escape(f['path'])} | {f['reason']} | {_md_escape(f.get('detail') or '')} |"
                for f in entries
            ]
        else:
            lines.append("None.")
        lines.append("")
    lines += ["## Codec settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report["codec"].items()]
    lines += ["", "## Preparation settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {_md_escape(v)} |" for k, v in report["settings"].items()]
    lines.append("")
    return "\n".join(lines)
