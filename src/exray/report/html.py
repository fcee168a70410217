"""HTML scan reports: one page per model and an index (issue 4 item 6).

Each trigger row shows a clean victim image, the same image stamped with the trigger, the difference
(where and how the trigger changes the image), M1 and M2 as heat-maps over channels, the overlaps, the
four cross-check accuracies and the verdict with the rules that fired.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from exray.data.images import write_image
from exray.differencing.verdict import coverage_text
from exray.files import read_results
from exray.report.plots import mask_heatmap

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;vertical-align:top}
th{background:#f3f3f3}.natural{color:#2a7a2a;font-weight:bold}.injected{color:#b22;font-weight:bold}
.error{color:#b22}.warning{color:#a60;font-weight:bold}img.px{image-rendering:pixelated;width:96px;height:96px}.small{font-size:.85em;color:#555}
"""


def _slug(model: str) -> str:
    """A page directory for a model path: its last two components (``zoo_id-00000003``), made file-safe."""
    tail = "/".join(Path(model).parts[-2:])
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", tail.strip("/")).strip("_") or "model"


def _page(title: str, body: str) -> str:
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


def _upscaled(image: torch.Tensor, size: int = 96) -> torch.Tensor:
    return F.interpolate(image[None], size=(size, size), mode="nearest")[0]


def entangled_warning(result: Any) -> str:
    """A warning paragraph when some of EX-RAY's verdicts are on a layer too entangled for its premise."""
    refinement = result.diagnostics.get("refinement") or {}
    if not refinement.get("entangled"):
        return ""
    return (
        f"<p class='warning'>{refinement['entangled']} of {refinement['judged']} verdicts are on a layer "
        "where the clean-pair mask M1 covers most of the channels: there EX-RAY's premise does not hold "
        "and a <i>natural</i> verdict says little (try <code>--layer auto</code> or an earlier block).</p>"
    )


def write_model_report(result: Any, examples: dict[int, torch.Tensor], report_dir: str | Path) -> Path:
    """Write ``report_dir/<model>/index.html`` (+ PNGs) for one :class:`~exray.pipeline.ScanResult`."""
    out = Path(report_dir) / _slug(result.model)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, report in enumerate(result.triggers):
        found = report.found
        victim = examples[found.victim][:1]
        stamped = found.trigger.apply(victim)
        difference = (stamped - victim).abs().amax(1, keepdim=True).expand(-1, 3, -1, -1)
        difference = difference / difference.max().clamp(min=1e-6)
        for name, image in (("victim", victim[0]), ("stamped", stamped[0]), ("trigger", difference[0])):
            write_image(out / f"t{i}_{name}.png", _upscaled(image))
        size = "–" if found.size is None else f"{found.size:.3g}"
        cells = [
            f"<td>{i}</td><td>{found.kind}<br>{found.victim} → {found.target}</td>",
            f"<td>ASR {found.asr:.2f}<br><span class='small'>size {size}</span></td>",
            "".join(
                f"<td><img class='px' src='t{i}_{n}.png' alt='{n}'><br>{n}</td>"
                for n in ("victim", "stamped", "trigger")
            ),
        ]
        verdict = report.verdict
        if verdict is None:
            cells.append(f"<td colspan='2'>not refined: {html.escape(report.note or '')}</td>")
        else:
            mask_heatmap(verdict.m1, verdict.m2, out / f"t{i}_masks.png", title=f"layer {verdict.layer}")
            word = "natural" if report.pruned else "injected"
            accuracy = ", ".join(f"{k} {v:.2f}" for k, v in verdict.cross_accuracy.items())
            why = "<br>".join(html.escape(r) for r in verdict.reasons) or "no natural-trigger rule fired"
            if report.victim_votes:
                votes = ", ".join(
                    f"{v} {'natural' if natural else 'injected'}"
                    for v, natural in report.victim_votes.items()
                )
                why += f"<br>from each class it flips: {votes}"
            notes = "".join(f"<br>{html.escape(n)}" for n in verdict.notes)
            cells.append(f"<td><img src='t{i}_masks.png' alt='masks' style='max-width:640px'></td>")
            cells.append(
                f"<td><span class='{word}'>{word.upper()}</span><br>I1 {verdict.overlap[0]:.2f}, "
                f"I2 {verdict.overlap[1]:.2f}<br>|M1| {verdict.m1_size:.1f}, |M2| {verdict.m2_size:.1f}"
                f"<br>{coverage_text(verdict)}"
                f"<br><span class='small'>{accuracy}<br>{why}{notes}</span></td>"
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    header = (
        "<tr><th>#</th><th>trigger</th><th>strength</th><th colspan='3'>images</th>"
        "<th>masks over channels</th><th>verdict</th></tr>"
    )
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    body = (
        f"<h1>{html.escape(result.model)}</h1><p>P(trojaned) = <b>{result.probability:.3f}</b> "
        f"(score {result.score:.2f}; scanner {html.escape(result.scanner)}, refine {result.refine}, "
        f"seed {result.seed})</p>{entangled_warning(result)}<p class='small'>{html.escape(timings)}</p>"
        + (f"<table>{header}{''.join(rows)}</table>" if rows else "<p>No triggers found.</p>")
        + "<p><a href='../index.html'>all models</a></p>"
    )
    (out / "index.html").write_text(_page(result.model, body))
    return out / "index.html"


def write_index(results: str | Path, report_dir: str | Path) -> Path:
    """Write ``report_dir/index.html`` listing every model of a results file, linking to its page."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for record in read_results(results).values():
        name = html.escape(record["model"])
        page = Path(_slug(record["model"])) / "index.html"
        link = f"<a href='{page.as_posix()}'>{name}</a>" if (report_dir / page).exists() else name
        if record.get("error"):
            error = html.escape(record["error"][:300])
            rows.append(f"<tr><td>{link}</td><td colspan='4' class='error'>{error}</td></tr>")
            continue
        pruned = sum(t["pruned"] for t in record["triggers"])
        rows.append(
            f"<tr><td>{link}</td><td>{record['probability']:.3f}</td><td>{record['score']:.2f}</td>"
            f"<td>{len(record['triggers'])}</td><td>{pruned}</td></tr>"
        )
    body = (
        "<h1>exray scan</h1><table><tr><th>model</th><th>P(trojaned)</th><th>score</th><th>triggers</th>"
        "<th>pruned as natural</th></tr>" + "".join(rows) + "</table>"
    )
    index = report_dir / "index.html"
    index.write_text(_page("exray scan", body))
    return index
