"""``iac report RUN_DIR... --out DIR``: the paper's Section V from finished runs.

Writes into DIR (built in a temporary sibling folder, then moved into place file by file, so an
interrupted report leaves no file half-written)::

    report.md          every table (Markdown), the warnings and links to the figures
    report.html        one self-contained page: the tables, the warnings and the figures
                       embedded as PNG data
    tables/*.csv       one CSV per table
    figures/*.png      the figures
    statistics.json    the Section V-C numbers per method, unrounded
    .iac-report        the marker: "a report written by iac_tf"
    .iac-manifest      the files the report wrote: path, size, SHA-256

Rules, all checked before any run is read or any figure drawn:

* DIR is written only when it is a report this tool wrote before (it holds the
  ``.iac-report`` marker) or is new or empty. A non-empty folder without the marker, a folder
  that is or holds a run folder (also one of the RUN_DIR arguments, or a folder holding them)
  and a file are refused, and nothing is changed.
* In a report folder, only the files the earlier report wrote (listed with their size and
  SHA-256 in ``.iac-manifest``) are replaced, or removed when this report no longer has them;
  files someone else put there (notes, figures) are kept. A listed file that changed since (an
  edited ``report.md``) is refused before any run is read; someone else's file at a path this
  report writes is refused before anything is moved.
* DIR (or the nearest existing folder above it) must be writable.
* ``n_slices`` (``--slices``) is a positive number.

One run per setting: every table counts a setting (dataset x backbone) once, so two run
folders of one setting (e.g. ``runs/a`` and ``runs/b``, both acdc / base) are refused with an
error naming both; pass only one run folder per setting. This is checked after the runs are
read and before anything is written.

Files of a run that are there but cannot be read (not JSON, cut off, a missing column, a cell
that is not a number) are printed as ``warning:`` lines and listed in the report's Warnings
section; a run whose evaluation table is unreadable is listed as partial, not finished.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
import pathlib
import re

from iac_tf.diskspace import check_writable_folder
from iac_tf.errors import UserError, UserValueError
from iac_tf.files import REPORT_MARKER, RefusedPath, Staging, check_listed_unchanged, dumps_json
from iac_tf.reporting import figures as figs
from iac_tf.reporting.collect import expand_run_dirs, read_run, use_split
from iac_tf.reporting.tables import Table, all_tables
from iac_tf.run_layout import check_replaceable_folder
from iac_tf.version import code_version

log_ = logging.getLogger(__name__)


def _log(msg: str) -> None:
    log_.info("%s", msg)


def check_out_dir(out_dir, run_dirs=(), runs=()) -> None:
    """Raise unless ``out_dir`` may be (re)written whole as a report: :class:`RefusedPath` when
    it is, or holds, one of ``run_dirs`` / ``runs`` or any run folder, or is a non-empty folder
    the tool did not write as a report; an ``OSError`` naming the folder when it cannot be
    written."""
    out_dir = pathlib.Path(out_dir)
    here = out_dir.resolve()
    named = [(run, "a run folder of this report") for run in runs]
    named += [(pathlib.Path(arg), "a RUN_DIR of this report") for arg in run_dirs]
    for run, what in named:
        there = run.resolve()
        if there == here or here in there.parents:
            where = f"is {what}" if there == here else f"holds {run}, {what}"
            raise RefusedPath(f"{out_dir}: {where}; a report is never written over a run folder. "
                              "Nothing was changed. Choose a new --out folder outside the run "
                              "folders")
    check_replaceable_folder(out_dir, REPORT_MARKER, "a report", "--out")
    check_listed_unchanged(out_dir, "a report file", CHANGED_HINT)
    check_writable_folder(out_dir.absolute().parent, "the report", "--out")
    if out_dir.is_dir():
        check_writable_folder(out_dir, "the report", "--out")


CHANGED_HINT = ("Nothing was changed; move it out of the report folder (or choose another "
                "--out), then rerun")


def build_report(run_dirs, out_dir, overlays: bool = True, n_slices: int = 3, log=_log) -> dict:
    """Collect ``run_dirs``, write the report to ``out_dir``; returns a summary dict.

    Raises (before anything is written): :class:`~iac_tf.errors.UserError` for no runs,
    ``n_slices < 1`` (a :class:`~iac_tf.errors.UserValueError`) or two runs of one setting;
    :class:`~iac_tf.files.RefusedPath` for an ``out_dir`` the report may not replace; ``OSError``
    for an ``out_dir`` that cannot be written.
    """
    out_dir = pathlib.Path(out_dir)
    if int(n_slices) < 1:
        raise UserValueError(f"n_slices must be a positive number of slices, got {n_slices}")
    runs = expand_run_dirs(run_dirs)
    if not runs:
        raise UserError("no run folders given")
    check_out_dir(out_dir, run_dirs, runs)
    records = [read_run(p) for p in runs]
    warnings = []
    for r in records:
        log(f"report: {r.name}: {r.status.state}" + (f" (missing: {', '.join(r.status.missing)})"
                                                     if r.status.missing else ""))
        for w in r.warnings:
            log(f"warning: {r.name}: {w}")
            warnings.append(f"{r.name}: {w}")
    version = code_version()
    split = use_split(records)  # test_dt when every run has it (refuses a mix)
    rules = sorted({r.rule for r in records if r.case_scores})
    log(f"report: {split_note(split, rules)}")
    tables, stats = all_tables(records, version)  # refuses two runs of one setting
    stats["split"] = split
    stats["rules"] = rules
    with Staging(out_dir) as stage:  # built beside out_dir, then published file by file
        tmp = stage.root
        figures, skipped = _figures(records, stage.path("figures/x").parent, overlays,
                                    n_slices, log)
        for t in tables:
            stage.write_text(f"tables/{t.key}.csv", _csv_text(t))
        stage.write_text("statistics.json", dumps_json(stats))
        stage.write_text("report.md", markdown(tables, figures, skipped, out_root=tmp,
                                               warnings=warnings, split=split, rules=rules))
        stage.write_text("report.html", html_page(tables, figures, skipped, warnings=warnings,
                                                  split=split, rules=rules))
        moved = stage.publish(REPORT_MARKER, "a report file", CHANGED_HINT)
    if moved["kept"]:
        log(f"report: kept {len(moved['kept'])} file(s) in {out_dir} that this tool did not "
            f"write: {', '.join(moved['kept'][:5])}" + (" ..." if len(moved["kept"]) > 5 else ""))
    log(f"report: {len(records)} runs, {len(figures)} figures"
        + (f", {len(warnings)} warning(s)" if warnings else "") + f" -> {out_dir / 'report.html'}")
    return {"runs": len(records), "figures": len(figures), "skipped_figures": skipped,
            "tables": [t.key for t in tables], "warnings": warnings, "out": str(out_dir)}


def _figures(records, fig_dir, overlays, n_slices, log):
    figures, skipped = [], []
    for rec in records:
        if not rec.status.exists:
            continue
        jobs = [("Stage III curves", lambda r=rec: [(f"{r.name}: Stage III learning curves (Fig. 6)",
                                                     figs.stage3_curves(r, fig_dir / f"{r.name}_stage3_curves.png"))]),
                ("alpha/beta evolution", lambda r=rec: [(f"{r.name}: alpha and beta during the search",
                                                         figs.arch_evolution(r, fig_dir / f"{r.name}_arch.png"))]),
                ("genotype diagrams", lambda r=rec: figs.genotype_diagrams(r, fig_dir))]
        if overlays:
            jobs.append(("overlays", lambda r=rec: [(f"{r.name}: image / ground truth / U-Net / IAC",
                                                     figs.overlays(r, fig_dir / f"{r.name}_overlays.png",
                                                                   n_slices=n_slices))]))
        for kind, job in jobs:
            try:
                for caption, png in job():
                    if png.parent != fig_dir:  # a genotype PNG of the run: copy it into the report
                        dest = fig_dir / f"{rec.name}_{png.name}"
                        dest.write_bytes(png.read_bytes())  # into the staging folder
                        png = dest
                    figures.append((caption, png))
            except figs.FigureUnavailable as exc:
                skipped.append(f"{rec.name}: {kind}: {exc}")
                log(f"report: {rec.name}: no {kind} ({exc})")
    return figures, skipped


def _csv_text(t: Table) -> str:
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(t.header)
    w.writerows(t.rows)
    return buf.getvalue()


#: The caution a table prints beside a p-value of few pairs (:func:`iac_tf.evaluation.stats.caution`).
CAUTION = re.compile(r"\(caution: [^)]*\)")


def _md_table(t: Table) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    cell = lambda s: CAUTION.sub(lambda m: f"**{m.group(0)}**", esc(s))  # noqa: E731
    lines = [f"## {t.title}", "", "| " + " | ".join(map(esc, t.header)) + " |",
             "|" + "---|" * len(t.header)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in t.rows]
    if not t.rows:
        lines.append("| " + " | ".join(["(no data)"] + [""] * (len(t.header) - 1)) + " |")
    if t.note:
        lines += ["", f"*{t.note}*"]
    return "\n".join(lines) + "\n"


WARNINGS_NOTE = ("Files of the runs that are there but could not be read; the cells that need "
                 "them are n/a, and a run with an unreadable evaluation table is not finished.")


#: What each decision rule (``evaluation.metric``, ``RunRecord.rule``) scores.
RULE_NOTES = {
    "labels": "one label per voxel, the label maps `iac predict` writes (exclusive classes: the "
              "most probable class above 0.5; nested regions: painted most specific last)",
    "paper_channels": "each output channel thresholded at 0.5 and scored on its own (the "
                      "paper's protocol; a voxel may count for two classes)",
    "not recorded": "evaluated before the rule was recorded: each output channel on its own",
}


def split_note(split: str, rules=()) -> str:
    """Which split and decision rule(s) the report's Dice tables and statistics score with,
    and what that means."""
    if split == "test_dt":
        text = ("Dice of Tables I, II, IV-VI and the statistics: test_dt, whole volumes in their "
                "original space, a split nothing was trained or selected on.")
    else:
        text = ("Dice of Tables I, II, IV-VI and the statistics: val_dt, the split that also "
                "selected each model's best epoch (in-sample; the runs have no test split: set "
                "data.test_fraction or provide labelsTs).")
    if rules:
        text += " Decision rule: " + "; ".join(f"{r} ({RULE_NOTES.get(r, r)})" for r in rules)
        text += (". The runs were scored with different rules: their numbers do not compare."
                 if len(rules) > 1 else ".")
    return text


def markdown(tables, figures, skipped, out_root, warnings=(), split: str = "val_dt",
             rules=()) -> str:
    parts = ["# IAC report", "", f"*{split_note(split, rules)}*", ""]
    if warnings:
        parts += ["## Warnings", "", f"*{WARNINGS_NOTE}*", ""] + [f"- {w}" for w in warnings] + [""]
    parts += [_md_table(t) for t in tables]
    parts.append("## Figures\n")
    for caption, png in figures:
        parts.append(f"![{caption}]({png.relative_to(out_root)})\n\n*{caption}*\n")
    if skipped:
        parts.append("### Figures not drawn\n")
        parts += [f"- {s}" for s in skipped]
    return "\n".join(parts) + "\n"


def _html_cell(value) -> str:
    """A table cell as HTML, a caution beside a p-value marked in red with a warning sign."""
    return CAUTION.sub(lambda m: f"<span class=caution>&#9888; {m.group(0)}</span>",
                       html.escape(str(value)))


def html_page(tables, figures, skipped, warnings=(), split: str = "val_dt", rules=()) -> str:
    def table(t: Table) -> str:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in t.header)
        body = "".join("<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>"
                       for row in t.rows) or f"<tr><td colspan={len(t.header)}>(no data)</td></tr>"
        note = f"<p class=note>{html.escape(t.note)}</p>" if t.note else ""
        return f"<h2 id={t.key}>{html.escape(t.title)}</h2><table><tr>{head}</tr>{body}</table>{note}"

    def figure(caption, png) -> str:
        data = base64.b64encode(pathlib.Path(png).read_bytes()).decode()
        return (f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(caption)}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    buf = io.StringIO()
    buf.write("<!DOCTYPE html><html><head><meta charset='utf-8'><title>IAC report</title><style>"
              "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
              "margin:.5em 0}td,th{border:1px solid #bbb;padding:3px 7px;font-size:13px}th{background:#eee}"
              ".note{font-size:12px;color:#555;max-width:1100px}figure{display:inline-block;margin:1em}"
              "img{max-width:1100px}.caution{color:#b00000;font-weight:bold}</style></head><body>"
              "<h1>IAC report</h1>")
    buf.write(f"<p class=note>{html.escape(split_note(split, rules))}</p>")
    links = ([("warnings", "Warnings")] if warnings else []) + [
        (t.key, t.title.split(":")[0]) for t in tables] + [("figures", "Figures")]
    buf.write("<p>" + " · ".join(f"<a href='#{k}'>{html.escape(title)}</a>" for k, title in links)
              + "</p>")
    if warnings:
        buf.write(f"<h2 id=warnings>Warnings</h2><p class=note>{html.escape(WARNINGS_NOTE)}</p><ul>"
                  + "".join(f"<li>{html.escape(w)}</li>" for w in warnings) + "</ul>")
    for t in tables:
        buf.write(table(t))
    buf.write("<h2 id=figures>Figures</h2>")
    for caption, png in figures:
        buf.write(figure(caption, png))
    if skipped:
        buf.write("<h3>Figures not drawn</h3><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in skipped)
                  + "</ul>")
    buf.write("</body></html>\n")
    return buf.getvalue()
