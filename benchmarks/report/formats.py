"""Rendering report tables as Markdown (with citations and provenance), LaTeX and CSV."""
from __future__ import annotations

import csv
import io
import math

from .delta_m import DELTA_M
from .provenance import provenance
from .references import Reference
from .stats import ALPHA, metric_scale, summary
from .tables import Cell, Table, format_cell, has_title, markdown_lines, metric_digits


FORMATS = ("md", "csv", "latex")


DELTA_M_TEXT = (
    "Δm: mean over the task columns of the relative change (%) from the single-task baseline(s) {names} "
    "found beside each row (mtl.metrics.delta_m; higher is better, Maninis et al. 2019, the LibMTL "
    "convention; Nash-MTL's Δm% is its negation). Each seed is compared with the baselines' mean over "
    "seeds; mean ± {error} over seeds."
)


ERROR_TEXT = {
    "std": "sample standard deviation",
    "sem": "standard error of the mean",
    "ci95": "half-width of the 95% confidence interval (t distribution)",
}


def _ref_columns(table: Table) -> list[str]:
    return [m for m in table.metrics if any(k[1] == m for k in table.references)]


def _citations(tables: list[Table]) -> list[Reference]:
    seen: list[Reference] = []
    for table in tables:
        for ref in table.references.values():
            if ref not in seen:
                seen.append(ref)
    return seen


def _published_cell(ref: Reference, number: int, ours: Cell | None) -> str:
    """The published value, its citation number and how far our mean is from it (ours − published)."""
    text = f"{ref.value:g} [{number}]"
    if ours is not None and not math.isnan(ours.mean):
        gap = ours.mean - ref.value
        text += f" (ours {'−' if gap < 0 else '+'}{abs(gap):.1f})"
    return text


def to_markdown(tables: list[Table]) -> str:
    cites = _citations(tables)
    lines = []
    for table in tables:
        if has_title(tables, table):
            lines.append(f"Dataset `{table.dataset}`:")
            lines.append("")
        refcols = _ref_columns(table)
        header = ["experiment", "n"]
        for m in table.metrics:
            header.append(m)
            if m in refcols:
                header.append("published")
        body = []
        for row in table.rows:
            cells = [row.label, str(len(row.records))]
            for m in table.metrics:
                cell = table.cells.get((row.label, m))
                text = format_cell(cell, metric_digits(m))
                if m == DELTA_M and cell is None and table.delta_m_notes.get(row.label) == "baseline":
                    text = "baseline"
                if cell is not None and cell.best:
                    text = f"**{text}**"
                if cell is not None and cell.significant:
                    text += " †"
                cells.append(text)
                if m in refcols:
                    ref = table.references.get((row.label, m))
                    cells.append(_published_cell(ref, cites.index(ref) + 1, cell) if ref else "")
            body.append(cells)
        lines += [*markdown_lines(header, body), ""]
    error = tables[0].error if tables else "std"
    lines.append(
        f"Accuracies in %, mean ± {ERROR_TEXT[error]} over seeds (n runs). Bold: best per column. "
        f"†: differs from the best significantly (paired t-test over matched seeds, p < {ALPHA})."
        + (" Published: the cited number, then our mean minus it (negative: we fall short)." if cites else "")
        + (" MSE/MAE columns are in the task's own units (lower is better)."
           if any(metric_scale(m) == 1.0 for t in tables for m in t.metrics if m != DELTA_M) else "")
    )
    names = sorted({n for t in tables for n in t.delta_m_baselines})
    if names:
        lines.append("")
        lines.append(DELTA_M_TEXT.format(names=", ".join(f"`{n}`" for n in names), error=ERROR_TEXT[error]))
        missing = {label: why for t in tables for label, why in t.delta_m_notes.items() if why != "baseline"}
        for label, why in missing.items():
            lines.append(f"No Δm for `{label}`: {why}.")
    if cites:
        lines.append("")
        lines.append("Published numbers:")
        for i, ref in enumerate(cites, 1):
            what = ", ".join(x for x in (ref.label, ref.setting) if x)
            lines.append(f"[{i}] {what}: {ref.value:g}. {ref.source}")
    all_rows = [row for table in tables for row in table.rows]
    groups = provenance(all_rows)
    if groups:
        lines.append("")
        lines.append("Hardware and training budget, as recorded by the runs:")
        lines.append("")
        lines.append("| hardware | budget per run | train time per run | experiments |")
        lines.append("|---|---|---|---|")
        for group in groups:
            seconds = "n/a" if group.seconds is None else f"{group.seconds:.0f} s"
            which = f"all {len(all_rows)}" if len(groups) == 1 else ", ".join(group.labels)
            lines.append(f"| {group.hardware} | {group.budget} | {seconds} | {which} |")
    return "\n".join(lines)


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}", "^": r"\^{}", "~": r"\~{}"}


def _latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(tables: list[Table]) -> str:
    cites = _citations(tables)
    out = []
    for table in tables:
        if has_title(tables, table):
            out.append(f"% dataset {table.dataset}")
        refcols = _ref_columns(table)
        ncols = 2 + len(table.metrics) + len(refcols)
        out.append(r"\begin{tabular}{l" + "r" * (ncols - 1) + "}")
        out.append(r"\toprule")
        header = ["experiment", "$n$"]
        for m in table.metrics:
            header.append(r"$\Delta_m$ (\%)" if m == DELTA_M else r"\texttt{" + _latex_escape(m) + "}")
            if m in refcols:
                header.append("published")
        out.append(" & ".join(header) + r" \\")
        out.append(r"\midrule")
        for row in table.rows:
            cells = [_latex_escape(row.label), str(len(row.records))]
            for m in table.metrics:
                cell = table.cells.get((row.label, m))
                if cell is None:
                    text = "n/a"
                else:
                    text = format_cell(cell, metric_digits(m)).replace(" ± ", r" $\pm$ ")
                    if cell.best:
                        text = r"\textbf{" + text + "}"
                    if cell.significant:
                        text += r"$^\dagger$"
                cells.append(text)
                if m in refcols:
                    ref = table.references.get((row.label, m))
                    cells.append(f"{ref.value:g}$^{{[{cites.index(ref) + 1}]}}$" if ref else "")
            out.append(" & ".join(cells) + r" \\")
        out.append(r"\bottomrule")
        out.append(r"\end{tabular}")
        out.append("")
    error = tables[0].error if tables else "std"
    out.append(
        f"% Accuracies in %, mean $\\pm$ {ERROR_TEXT[error]} over seeds. Bold: best per column. "
        f"$\\dagger$: significantly different from the best (paired t-test, p < {ALPHA})."
    )
    for i, ref in enumerate(cites, 1):
        out.append(f"% [{i}] {ref.label} {ref.setting}: {ref.value:g}. {ref.source}")
    return "\n".join(out)


def to_csv(tables: list[Table]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["experiment", "metric", "n", "mean", "std", "sem", "ci95", "best", "significant_vs_best", "p_value",
         "published", "published_source", "seeds"]
    )
    for table in tables:
        for row in table.rows:
            for m in table.metrics:
                cell = table.cells.get((row.label, m))
                if cell is None:
                    continue
                s = summary(list(cell.values.values()))
                ref = table.references.get((row.label, m))
                writer.writerow(
                    [row.label, m, cell.n, f"{s['mean']:.4f}", _num(s["std"]), _num(s["sem"]), _num(s["ci95"]),
                     int(cell.best), int(cell.significant), "" if cell.p_value is None else f"{cell.p_value:.4g}",
                     "" if ref is None else f"{ref.value:g}", "" if ref is None else ref.source,
                     " ".join(str(k) for k in sorted(cell.values))]
                )
    return buffer.getvalue()


def _num(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.4f}"


RENDERERS = {"md": to_markdown, "csv": to_csv, "latex": to_latex}
