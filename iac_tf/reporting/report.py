"""``iac report RUN_DIR... --out DIR``: the paper's Section V from finished runs.

Writes into DIR (built in a temporary sibling folder and moved into place, so an interrupted
report leaves nothing half-written)::

    report.md          every table (Markdown) and links to the figures
    report.html        one self-contained page: the tables and the figures embedded as PNG data
    tables/*.csv       one CSV per table
    figures/*.png      the figures
    statistics.json    the Section V-C numbers per method, unrounded
"""

from __future__ import annotations

import base64
import csv
import html
import io
import pathlib
import shutil

from iac_tf.files import atomic_path, dumps_json
from iac_tf.reporting import figures as figs
from iac_tf.reporting.collect import expand_run_dirs, read_run
from iac_tf.reporting.tables import Table, all_tables


def _log(msg: str) -> None:
    print(f"[iac] {msg}", flush=True)


def build_report(run_dirs, out_dir, overlays: bool = True, n_slices: int = 3, log=_log) -> dict:
    """Collect ``run_dirs``, write the report to ``out_dir``; returns a summary dict."""
    from iac_tf.version import code_version

    out_dir = pathlib.Path(out_dir)
    runs = expand_run_dirs(run_dirs)
    if not runs:
        raise ValueError("no run folders given")
    records = [read_run(p) for p in runs]
    for r in records:
        log(f"report: {r.name}: {r.status.state}" + (f" (missing: {', '.join(r.status.missing)})"
                                                     if r.status.missing else ""))
    version = code_version()
    tables, stats = all_tables(records, version)
    with atomic_path(out_dir) as tmp:  # built beside out_dir, moved into place when complete
        (tmp / "tables").mkdir(parents=True)
        (tmp / "figures").mkdir()
        figures, skipped = _figures(records, tmp / "figures", overlays, n_slices, log)
        for t in tables:
            _write_csv(t, tmp / "tables" / f"{t.key}.csv")
        (tmp / "statistics.json").write_text(dumps_json(stats))
        (tmp / "report.md").write_text(markdown(tables, figures, skipped, out_root=tmp))
        (tmp / "report.html").write_text(html_page(tables, figures, skipped))
    log(f"report: {len(records)} runs, {len(figures)} figures -> {out_dir / 'report.html'}")
    return {"runs": len(records), "figures": len(figures), "skipped_figures": skipped,
            "tables": [t.key for t in tables], "out": str(out_dir)}


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
                        shutil.copyfile(png, dest)
                        png = dest
                    figures.append((caption, png))
            except figs.FigureUnavailable as exc:
                skipped.append(f"{rec.name}: {kind}: {exc}")
                log(f"report: {rec.name}: no {kind} ({exc})")
    return figures, skipped


def _write_csv(t: Table, path: pathlib.Path) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(t.header)
        w.writerows(t.rows)


def _md_table(t: Table) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = [f"## {t.title}", "", "| " + " | ".join(map(esc, t.header)) + " |",
             "|" + "---|" * len(t.header)]
    lines += ["| " + " | ".join(map(esc, row)) + " |" for row in t.rows]
    if not t.rows:
        lines.append("| " + " | ".join(["(no data)"] + [""] * (len(t.header) - 1)) + " |")
    if t.note:
        lines += ["", f"*{t.note}*"]
    return "\n".join(lines) + "\n"


def markdown(tables, figures, skipped, out_root) -> str:
    parts = ["# IAC report", ""]
    parts += [_md_table(t) for t in tables]
    parts.append("## Figures\n")
    for caption, png in figures:
        parts.append(f"![{caption}]({png.relative_to(out_root)})\n\n*{caption}*\n")
    if skipped:
        parts.append("### Figures not drawn\n")
        parts += [f"- {s}" for s in skipped]
    return "\n".join(parts) + "\n"


def html_page(tables, figures, skipped) -> str:
    def table(t: Table) -> str:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in t.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
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
              "img{max-width:1100px}</style></head><body><h1>IAC report</h1>")
    buf.write("<p>" + " · ".join(f"<a href='#{t.key}'>{html.escape(t.title.split(':')[0])}</a>"
                                  for t in tables) + " · <a href='#figures'>Figures</a></p>")
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
