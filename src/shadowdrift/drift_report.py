"""The drift report: a JSON summary, plotly figures and a self-contained HTML page.

* ``build_summary(results)``: the machine-readable summary (JSON-serialisable dict, NaN as
  ``null``, timestamps as ISO text): first the ``warnings`` (a baseline with fewer complete
  chunks than ``drift.baseline.min_chunks``) and both ``baseline`` descriptions, then the
  decision with its reasons and caveats, the chunks,
  per feature / method / chunk drift values with thresholds and alerts (PSI and NannyML),
  multivariate drift, data quality, estimated and realised performance of champion and
  challenger (and ``canary``: the challenger on the records it answered) beside the reference
  values, champion/challenger agreement, ``answered_by`` (analysis records per model that
  answered them, when the log says ``model_variant``), parameters and timings.
* ``build_figures(results)``: ``{name: plotly Figure}``: PSI heatmap (feature x chunk) and
  lines, multivariate reconstruction error, estimated vs realised performance (champion and
  challenger), agreement over time, data quality.
* ``render_html(summary, figures)``: one HTML page that works offline: plotly.js is inlined
  once (no CDN), baseline warnings come first, then the baselines, the decision and its
  reasons, the caveats, summary tables and the figures. ``write_html_report(path, ...)`` writes it.

Plain Python; does not import Kedro.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from shadowdrift.drift_monitor import DriftResults
from shadowdrift.prediction_log import CHALLENGER_STATUSES, CHAMPION_PROBABILITY

logger = logging.getLogger(__name__)

SUMMARY_FORMAT = "shadowdrift.drift_summary"
SUMMARY_VERSION = 1
_DECISION_COLOURS = {"retrain": "#c62828", "no_retrain": "#2e7d32", "insufficient_data": "#8d6e00"}
_MODEL_COLOURS = {"champion": "#1f77b4", "challenger": "#ff7f0e", "canary": "#2ca02c"}
# Performance is judged per model on the records it stands for (nannyml_drift.JUDGED): the
# canary is the challenger on the records it answered, with the challenger's reference.
_PERFORMANCE_MODELS = ("champion", "challenger", "canary")
_REFERENCE_OF = {"champion": "champion", "challenger": "challenger", "canary": "challenger"}


# --- JSON ----------------------------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, NaN/NaT as None, timestamps as ISO text."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray | pd.Index):
        return [to_jsonable(v) for v in value]
    return _scalar(value)


def _scalar(value: Any) -> Any:
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value)
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dt.date):  # datetime and pd.Timestamp too
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    return None if pd.isna(value) else str(value)


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    present = [c for c in columns if c in frame.columns]
    return [to_jsonable(r) for r in frame[present].to_dict(orient="records")]


# --- summary -------------------------------------------------------------------------------------


def _feature_drift(results: DriftResults) -> dict[str, Any]:
    """{feature: {"kind", "methods": {method: [per-chunk rows]}}}; PSI first, then NannyML."""
    kinds = dict.fromkeys(results.schema.numeric_features, "numeric")
    kinds.update(dict.fromkeys(results.schema.categorical_features, "categorical"))
    kinds[CHAMPION_PROBABILITY] = "prediction"
    out: dict[str, Any] = {}
    psi, uni = results.psi, results.nannyml.univariate
    for feature, group in psi.groupby("feature", sort=False) if len(psi) else []:
        rows = _records(
            group.rename(columns={"psi": "value"}),
            ["chunk", "value", "threshold", "alert", "severity", "n_rows", "n_missing"],
        )
        out[feature] = {"kind": kinds.get(feature), "methods": {"psi": rows}}
    for (feature, method), group in (
        uni.groupby(["feature", "method"], sort=False) if len(uni) else []
    ):
        entry = out.setdefault(feature, {"kind": kinds.get(feature), "methods": {}})
        entry["methods"][method] = _records(
            group, ["chunk", "value", "lower_threshold", "upper_threshold", "alert"]
        )
    return out


def _performance(results: DriftResults) -> dict[str, Any]:
    out: dict[str, Any] = {"reference": results.reference.get("performance", {})}
    for kind, table in (
        ("estimated", results.nannyml.estimated_performance),
        ("realised", results.nannyml.realised_performance),
    ):
        section: dict[str, Any] = {}
        if len(table):
            for (model, metric), group in table.groupby(["model", "metric"], sort=False):
                section.setdefault(model, {})[metric] = _records(
                    group,
                    ["chunk", "value", "sampling_error", "lower_threshold", "upper_threshold",
                     "alert", "n_rows"],
                )  # fmt: skip
        out[kind] = section
    return out


def build_summary(
    results: DriftResults, *, title: str = "shadowdrift drift report"
) -> dict[str, Any]:
    """The machine-readable drift summary (see the module docstring)."""
    psi = results.psi
    features = psi.loc[psi["feature"] != CHAMPION_PROBABILITY] if len(psi) else psi
    feature_drift = _feature_drift(results)
    prediction = feature_drift.pop(CHAMPION_PROBABILITY, None)
    quality = {
        feature: _records(group, [c for c in group.columns if c != "feature"])
        for feature, group in (results.data_quality.groupby("feature", sort=False)
                               if len(results.data_quality) else [])
    }  # fmt: skip
    summary = {
        "format": SUMMARY_FORMAT,
        "version": SUMMARY_VERSION,
        "title": title,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "warnings": list(results.reference.get("warnings", [])),
        "baseline": results.reference.get("baseline", {}),
        "decision": results.decision,
        "threshold": results.threshold,
        "reference": results.reference,
        "analysis": results.analysis,
        "chunks": _records(
            results.chunks,
            ["chunk", "chunk_index", "start", "end", "n_rows", "complete", "n_labelled"],
        ),
        "feature_drift": feature_drift,
        "prediction_drift": {CHAMPION_PROBABILITY: prediction} if prediction else {},
        "multivariate": _records(
            results.nannyml.multivariate,
            ["chunk", "value", "sampling_error", "lower_threshold", "upper_threshold", "alert"],
        ),
        "performance": _performance(results),
        "data_quality": quality,
        "agreement": _records(results.agreement, list(results.agreement.columns)),
        "answered_by": _answered_by(results.agreement),
        "features_alerting": sorted(features.loc[features["alert"], "feature"].unique().tolist())
        if len(features)
        else [],
        "parameters": results.params.to_dict(),
        "timings_seconds": results.seconds,
    }
    return to_jsonable(summary)


def _answered_by(agreement: pd.DataFrame) -> dict[str, int]:
    """Analysis records by the model that answered them (``model_variant``)."""
    if "n_canary" not in agreement.columns or agreement.empty:
        return {}
    canary = int(agreement["n_canary"].sum())
    return {"champion": int(agreement["n_rows"].sum()) - canary, "challenger": canary}


# --- figures -------------------------------------------------------------------------------------


def _chunk_axis(results: DriftResults) -> list[str]:
    """Chunk labels in time order, incomplete ones marked."""
    table = results.chunks
    return [
        f"{c} (incomplete)" if not complete else str(c)
        for c, complete in zip(table["chunk"], table["complete"], strict=True)
    ]


def _axis_map(results: DriftResults) -> dict[str, str]:
    return dict(zip(results.chunks["chunk"].astype(str), _chunk_axis(results), strict=True))


def psi_heatmap(results: DriftResults) -> go.Figure:
    """PSI by feature (rows, most drifted first) and chunk (columns)."""
    psi = results.psi
    alert, warn = results.params.psi.alert, results.params.psi.warn
    if psi.empty:
        return go.Figure(layout={"title": "PSI by feature and chunk (no data)"})
    axis = _axis_map(results)
    matrix = psi.pivot(index="feature", columns="chunk", values="psi")
    matrix = matrix[[c for c in results.chunks["chunk"] if c in matrix.columns]]
    matrix = matrix.loc[matrix.max(axis=1).sort_values(ascending=True).index]
    top = 2 * alert
    figure = go.Figure(
        go.Heatmap(
            z=matrix.to_numpy(),
            x=[axis[str(c)] for c in matrix.columns],
            y=matrix.index.tolist(),
            zmin=0,
            zmax=top,
            colorscale=[
                [0.0, "#f7fcf5"],
                [warn / top, "#fee08b"],
                [alert / top, "#f46d43"],
                [1.0, "#a50026"],
            ],
            texttemplate="%{z:.2f}",
            hovertemplate="%{y}<br>%{x}<br>PSI %{z:.4f}<extra></extra>",
            colorbar={"title": "PSI"},
        )
    )
    figure.update_layout(
        title=f"PSI by feature and chunk (warn {warn:g}, alert {alert:g}; colours saturate at {top:g})",
        height=max(400, 28 * len(matrix) + 160),
        xaxis={"tickangle": -45},
    )
    return figure


def psi_lines(results: DriftResults) -> go.Figure:
    """PSI per feature over time with the warn and alert lines."""
    figure = go.Figure()
    psi = results.psi
    axis = _axis_map(results)
    for feature, group in psi.groupby("feature", sort=False) if len(psi) else []:
        figure.add_trace(
            go.Scatter(
                x=[axis[str(c)] for c in group["chunk"]],
                y=group["psi"],
                mode="lines+markers",
                name=feature,
                line={"dash": "dot"} if feature == CHAMPION_PROBABILITY else None,
            )
        )
    for level, name in ((results.params.psi.warn, "warn"), (results.params.psi.alert, "alert")):
        figure.add_hline(y=level, line_dash="dash", annotation_text=f"{name} {level:g}")
    figure.update_layout(title="PSI per feature over time", yaxis_title="PSI", xaxis_tickangle=-45)
    return figure


def multivariate_figure(results: DriftResults) -> go.Figure:
    table = results.nannyml.multivariate
    figure = go.Figure()
    if len(table):
        axis = _axis_map(results)
        x = [axis[str(c)] for c in table["chunk"]]
        figure.add_trace(go.Scatter(x=x, y=table["value"], mode="lines+markers", name="error"))
        for column in ("upper_threshold", "lower_threshold"):
            figure.add_trace(
                go.Scatter(x=x, y=table[column], mode="lines", name=column, line={"dash": "dash"})
            )
        alerts = table["alert"].astype(bool).to_numpy()
        figure.add_trace(
            go.Scatter(
                x=np.asarray(x)[alerts], y=table["value"][alerts], mode="markers", name="alert",
                marker={"color": "red", "size": 11, "symbol": "x"},
            )
        )  # fmt: skip
    figure.update_layout(
        title="Multivariate drift: PCA reconstruction error (NannyML thresholds)",
        xaxis_tickangle=-45,
    )
    return figure


def performance_figure(results: DriftResults, metric: str | None = None) -> go.Figure:
    """Estimated (CBPE, dashed) and realised (solid) ``metric`` per model, with the reference."""
    metric = metric or results.params.rules.realised_performance.metric
    figure = go.Figure()
    axis = _axis_map(results)
    reference = results.reference.get("performance", {})
    for kind, table, dash in (
        ("estimated", results.nannyml.estimated_performance, "dash"),
        ("realised", results.nannyml.realised_performance, "solid"),
    ):
        if table.empty:
            continue
        for model, group in table.loc[table["metric"] == metric].groupby("model", sort=False):
            figure.add_trace(
                go.Scatter(
                    x=[axis[str(c)] for c in group["chunk"]],
                    y=group["value"],
                    mode="lines+markers",
                    name=f"{model} {kind}",
                    line={"dash": dash, "color": _MODEL_COLOURS.get(model)},
                    customdata=group["n_rows"],
                    hovertemplate="%{x}<br>%{y:.4f}<br>rows %{customdata}<extra>"
                    + f"{model} {kind}</extra>",
                )
            )
    for model, values in reference.items():
        if metric in values:
            figure.add_hline(
                y=values[metric],
                line_dash="dot",
                line_color=_MODEL_COLOURS.get(model),
                annotation_text=f"{model} reference {values[metric]:.3f}",
            )
    rule = results.params.rules.realised_performance
    champion = reference.get("champion", {}).get(metric)
    if champion is not None:
        figure.add_hline(
            y=champion - rule.max_drop,
            line_color="red",
            line_dash="dash",
            annotation_text=f"champion reference - {rule.max_drop:g}",
        )
    figure.update_layout(
        title=f"{metric}: estimated (CBPE) vs realised, champion and challenger",
        yaxis_title=metric,
        xaxis_tickangle=-45,
    )
    return figure


def agreement_figure(results: DriftResults) -> go.Figure:
    """Agreement rate and mean |p_champion - p_challenger| (lines); challenger statuses (bars)."""
    table = results.agreement
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    if "agreement_rate" in table.columns and len(table):
        axis = _axis_map(results)
        x = [axis[str(c)] for c in table["chunk"]]
        for status in CHALLENGER_STATUSES:
            column = f"n_{status}"
            if table[column].sum() > 0:
                figure.add_trace(
                    go.Bar(x=x, y=table[column], name=f"{status} (records)", opacity=0.35),
                    secondary_y=True,
                )
        figure.add_trace(
            go.Scatter(
                x=x, y=table["agreement_rate"], mode="lines+markers", name="label agreement"
            ),
            secondary_y=False,
        )
        figure.add_trace(
            go.Scatter(
                x=x, y=table["mean_abs_probability_diff"], mode="lines+markers",
                name="mean |probability difference|",
            ),
            secondary_y=False,
        )  # fmt: skip
        if table["n_canary"].sum() > 0:
            figure.add_trace(
                go.Scatter(
                    x=x, y=table["canary_agreement_rate"], mode="lines+markers",
                    name="label agreement on canary records", line={"dash": "dot"},
                ),
                secondary_y=False,
            )  # fmt: skip
            figure.add_trace(
                go.Bar(x=x, y=table["n_canary"], name="canary (records)", opacity=0.35),
                secondary_y=True,
            )
    figure.update_layout(
        title="Champion/challenger agreement and challenger status per chunk",
        barmode="stack",
        xaxis_tickangle=-45,
    )
    figure.update_yaxes(title_text="rate", range=[0, 1.05], secondary_y=False)
    figure.update_yaxes(title_text="records", secondary_y=True)
    return figure


def data_quality_figure(results: DriftResults) -> go.Figure:
    """Missing, unseen and out-of-range shares of the features where any is non-zero."""
    table = results.data_quality
    figure = go.Figure()
    if len(table):
        axis = _axis_map(results)
        for column, label in (
            ("missing_rate", "missing"),
            ("unseen_rate", "unseen"),
            ("out_of_range_rate", "out of range"),
        ):
            for feature, group in table.groupby("feature", sort=False):
                values = group[column].astype(float)
                if values.fillna(0).max() > 0:
                    figure.add_trace(
                        go.Scatter(
                            x=[axis[str(c)] for c in group["chunk"]],
                            y=values,
                            mode="lines+markers",
                            name=f"{feature} {label}",
                        )
                    )
    figure.update_layout(
        title="Data quality: share of rows missing, unseen or out of range (non-zero only)",
        yaxis_title="share of rows",
        xaxis_tickangle=-45,
    )
    return figure


def build_figures(results: DriftResults) -> dict[str, go.Figure]:
    """Every report figure by name (a Kedro plotly dataset can save each)."""
    return {
        "psi_heatmap": psi_heatmap(results),
        "psi_lines": psi_lines(results),
        "multivariate": multivariate_figure(results),
        "performance": performance_figure(results),
        "agreement": agreement_figure(results),
        "data_quality": data_quality_figure(results),
    }


# --- HTML ----------------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
.decision { color: white; padding: 0.6em 1em; border-radius: 6px; display: inline-block;
            font-size: 1.4em; font-weight: bold; }
.caveat { background: #fff8e1; border-left: 5px solid #f9a825; padding: 0.6em 1em; }
.warning { background: #ffebee; border-left: 5px solid #c62828; padding: 0.6em 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; } td.text, th.text { text-align: left; }
td.alert { background: #ffcdd2; font-weight: bold; }
"""


def _cell(value: Any, *, alert: bool = False, text: bool = False, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        shown = ""
    elif isinstance(value, float):
        shown = f"{value:.{digits}g}"
    else:
        shown = str(value)
    classes = " ".join(c for c, on in (("alert", alert), ("text", text)) if on)
    attr = f' class="{classes}"' if classes else ""
    return f"<td{attr}>{html.escape(shown)}</td>"


def _table(headers: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return f"<table><tr>{head}</tr>{''.join(f'<tr>{r}</tr>' for r in rows)}</table>"


def _feature_rows(summary: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    complete = {c["chunk"] for c in summary["chunks"] if c["complete"]}
    methods = sorted(
        {m for f in summary["feature_drift"].values() for m in f["methods"] if m != "psi"}
    )
    headers = ["feature", "max PSI", "PSI alert chunks", *[f"{m} alerts" for m in methods],
               "max missing", "max unseen", "unseen values", "max out of range"]  # fmt: skip
    rows = []
    for feature, drift in summary["feature_drift"].items():
        psi_rows = [r for r in drift["methods"].get("psi", []) if r["chunk"] in complete]
        psi_values = [r["value"] for r in psi_rows if r["value"] is not None]
        psi_alerts = sum(bool(r["alert"]) for r in psi_rows)
        cells = [_cell(feature, text=True), _cell(max(psi_values, default=None), alert=psi_alerts > 0),
                 _cell(psi_alerts, alert=psi_alerts > 0)]  # fmt: skip
        for method in methods:
            n = sum(
                bool(r["alert"]) for r in drift["methods"].get(method, []) if r["chunk"] in complete
            )
            cells.append(_cell(n if method in drift["methods"] else None, alert=n > 0))
        quality = summary["data_quality"].get(feature, [])

        def worst(column: str, rows: list[dict[str, Any]] = quality) -> float | None:
            values = [r[column] for r in rows if r.get(column) is not None]
            return max(values, default=None)

        unseen: dict[str, int] = {}
        for r in quality:
            for value, n in (r.get("unseen_values") or {}).items():
                unseen[value] = unseen.get(value, 0) + n
        cells += [
            _cell(worst("missing_rate")),
            _cell(worst("unseen_rate")),
            _cell(", ".join(f"{v} ({n})" for v, n in sorted(unseen.items(), key=lambda kv: -kv[1])[:5]), text=True),
            _cell(worst("out_of_range_rate")),
        ]  # fmt: skip
        rows.append("".join(cells))
    return headers, rows


def _performance_rows(summary: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    perf = summary["performance"]
    metrics = sorted({m for model in perf["estimated"].values() for m in model}
                     | {m for model in perf["realised"].values() for m in model})  # fmt: skip
    headers = ["model", "metric", "reference", "estimated (latest complete)", "min estimated",
               "realised (latest judged)", "min realised"]  # fmt: skip
    complete = {c["chunk"] for c in summary["chunks"] if c["complete"]}
    min_labels = summary["parameters"]["rules"]["realised_performance"]["min_labelled_rows"]
    rows = []
    for model in _PERFORMANCE_MODELS:
        for metric in metrics:
            est = [
                r
                for r in perf["estimated"].get(model, {}).get(metric, [])
                if r["chunk"] in complete
            ]
            real = [
                r for r in perf["realised"].get(model, {}).get(metric, [])
                if r["chunk"] in complete and (r["n_rows"] or 0) >= min_labels
            ]  # fmt: skip
            if not est and not real:
                continue
            ref = perf["reference"].get(_REFERENCE_OF[model], {}).get(metric)

            def values(rows: list[dict[str, Any]]) -> list[float]:
                return [r["value"] for r in rows if r["value"] is not None]

            rows.append("".join([
                _cell(model, text=True), _cell(metric, text=True), _cell(ref),
                _cell(values(est)[-1] if values(est) else None),
                _cell(min(values(est), default=None)),
                _cell(values(real)[-1] if values(real) else None),
                _cell(min(values(real), default=None)),
            ]))  # fmt: skip
    return headers, rows


def _canary_html(summary: Mapping[str, Any]) -> str:
    """How the analysis records were answered, when a canary answered some of them."""
    answered = summary.get("answered_by") or {}
    canary = answered.get("challenger", 0)
    if not canary:
        return ""
    total = canary + answered.get("champion", 0)
    return (
        f"<p><b>Canary:</b> the challenger answered {canary} of the {total} analysis records "
        f"({canary / total:.1%}, <code>model_variant = challenger</code>). The champion's "
        "performance is judged on the records it answered, the challenger's (in shadow) on the "
        "same records, and the canary's on the records the challenger answered; agreement is "
        "reported apart for the canary records.</p>"
    )


def _decision_html(decision: Mapping[str, Any]) -> str:
    colour = _DECISION_COLOURS.get(decision["decision"], "#555")
    parts = [
        f'<p><span class="decision" style="background:{colour}">'
        f"Decision: {html.escape(decision['decision'])}</span></p>",
        f"<p>{html.escape(decision['summary'])}</p>",
    ]
    if decision["reasons"]:
        items = "".join(
            f"<li><b>{html.escape(r['rule'])}</b>: {html.escape(r['message'])}</li>"
            for r in decision["reasons"]
        )
        parts.append(f"<h2>Reasons</h2><ul>{items}</ul>")
    held_back = decision.get("reasons_not_acted_on") or []
    if held_back:
        items = "".join(
            f"<li><b>{html.escape(r['rule'])}</b>: {html.escape(r['message'])} "
            f"(<i>{html.escape(r['why'])}</i>)</li>"
            for r in held_back
        )
        parts.append(f"<h2>Alerts not acted on</h2><ul>{items}</ul>")
    caveats = "".join(f"<p>{html.escape(c)}</p>" for c in decision["caveats"])
    parts.append(f'<div class="caveat"><b>Caveats</b>{caveats}</div>')
    rules = [
        "".join([
            _cell(r["rule"], text=True), _cell("yes" if r["enabled"] else "no", text=True),
            _cell("FIRED" if r["fired"] else "", alert=r["fired"], text=True),
            _cell(r["chunks_judged"]), _cell(r["note"], text=True),
        ])
        for r in decision["evaluated_rules"]
    ]  # fmt: skip
    parts.append(
        "<h2>Rules</h2>" + _table(["rule", "enabled", "fired", "chunks judged", "note"], rules)
    )
    return "\n".join(parts)


def _baseline_html(summary: Mapping[str, Any]) -> str:
    """The baseline warnings (a box at the top) and what each baseline holds."""
    parts = [
        f'<div class="warning"><b>Baseline warning</b><p>{html.escape(w)}</p></div>'
        for w in summary.get("warnings", [])
    ]
    baseline = summary.get("baseline") or {}
    rows = []
    for role, used_for in (
        ("features", "PSI, NannyML univariate and multivariate, data quality"),
        ("performance", "CBPE, realised performance, prediction PSI"),
    ):
        info = baseline.get(role)
        if not info:
            continue
        small = info.get("complete_chunks", 0) < baseline.get("min_chunks", 0)
        rows.append("".join([
            _cell(role, text=True), _cell(used_for, text=True),
            _cell(info.get("source"), text=True),
            _cell(", ".join(info.get("windows") or []), text=True),
            _cell(info.get("n_rows")), _cell(info.get("start"), text=True),
            _cell(info.get("end"), text=True),
            _cell(f"{info.get('complete_chunks')} of {info.get('chunks')}", alert=small),
        ]))  # fmt: skip
    if rows:
        parts.append(
            f"<p>Baselines (at least {baseline.get('min_chunks')} complete chunks needed for "
            "NannyML's thresholds to count):</p>"
            + _table(
                [
                    "baseline",
                    "used for",
                    "source",
                    "windows",
                    "rows",
                    "start",
                    "end",
                    "complete chunks",
                ],
                rows,
            )
        )
    return "\n".join(parts)


def _chunks_html(summary: Mapping[str, Any]) -> str:
    rows = [
        "".join([
            _cell(c["chunk"], text=True), _cell(c["start"], text=True), _cell(c["end"], text=True),
            _cell(c["n_rows"]), _cell(c.get("n_labelled")),
            _cell("yes" if c["complete"] else "no (no alarms)", text=True, alert=not c["complete"]),
        ])
        for c in summary["chunks"]
    ]  # fmt: skip
    return _table(["chunk", "start", "end", "rows", "labelled", "complete"], rows)


def render_html(summary: Mapping[str, Any], figures: Mapping[str, go.Figure]) -> str:
    """The report as one self-contained HTML page (plotly.js inlined once, no network)."""
    title = html.escape(summary.get("title", "Drift report"))
    ref, ana = summary["reference"], summary["analysis"]
    feature_headers, feature_rows = _feature_rows(summary)
    perf_headers, perf_rows = _performance_rows(summary)
    plots = []
    for i, (name, figure) in enumerate(figures.items()):
        plots.append(
            f'<div id="figure-{html.escape(name)}">'
            + figure.to_html(
                full_html=False,
                include_plotlyjs=i == 0,  # the first figure carries the one inlined plotly.js
                config={"displaylogo": False},
            )
            + "</div>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{_STYLE}</style></head>
<body>
<h1>{title}</h1>
{_baseline_html(summary)}
<p>Generated {html.escape(str(summary.get("generated_at")))}.
Performance baseline: {ref.get("n_rows")} rows, {html.escape(str(ref.get("start")))} to {html.escape(str(ref.get("end")))}.
Analysis: {ana.get("n_rows")} rows ({ana.get("n_labelled")} labelled), {html.escape(str(ana.get("start")))}
to {html.escape(str(ana.get("end")))}; champion threshold {summary.get("threshold")}.</p>
{_canary_html(summary)}
{_decision_html(summary["decision"])}
<h2>Features</h2>
<p>Alerts counted over complete chunks; PSI alert at {summary["parameters"]["psi"]["alert"]}, NannyML
alerts at its own thresholds (3 standard deviations of the reference chunks; chi2 at p &lt; 0.05).</p>
{_table(feature_headers, feature_rows)}
<h2>Performance</h2>
{_table(perf_headers, perf_rows) if perf_rows else "<p>No performance results.</p>"}
<h2>Chunks</h2>
{_chunks_html(summary)}
<h2>Figures</h2>
{"".join(plots)}
</body></html>
"""


def write_html_report(
    path: str | Path, summary: Mapping[str, Any], figures: Mapping[str, go.Figure]
) -> Path:
    """Write ``render_html`` to ``path`` (parent directories created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(summary, figures), encoding="utf-8")
    logger.info("Wrote the drift report to %s", path)
    return path
