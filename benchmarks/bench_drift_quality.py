"""How well does the drift pipeline detect the simulator's drift scenarios, and how often does it cry wolf?

Usage::

    .venv/bin/python benchmarks/bench_drift_quality.py             # the grid, 8 seeds (~10 min)
    .venv/bin/python benchmarks/bench_drift_quality.py --seeds 10  # docs/drift_quality.md (12 min)
    .venv/bin/python benchmarks/bench_drift_quality.py --quick     # 2 seeds, one magnitude
    .venv/bin/python benchmarks/bench_drift_quality.py --timing    # default parameters, timed
                                       # beside smaller baselines
    .venv/bin/python benchmarks/bench_drift_quality.py --scenarios covariate_shift \
        --features-baseline reference --performance-baseline reference --chunk-size 5000
                                       # another baseline (drift.baseline) or chunking

Per seed (``--seeds-none`` seeds for ``none``, the first ``--seeds`` of them for the drift
scenarios): the simulator's history (50,000 rows over 365 days) is split by time like the
data-engineering pipeline (train 60% < test 20% < reference 20% = 10,000 rows); a champion
(HistGradientBoosting, 200 iterations) and a challenger (shallower HistGradientBoosting) are
fitted on train, each with the F1-optimal threshold on test; the drift baseline is selected
from the three windows as the pipeline does (``drift_baseline.select_baseline``, default
``drift.baseline``: features on all history, performance on the out-of-sample test + reference
windows, or ``--features-baseline`` / ``--performance-baseline``), and fitted once
(``fit_reference``, default ``drift`` parameters plus every NannyML univariate method, or only
the default ones with ``--default-methods``). Fixed models per seed make CBPE and realised
performance real numbers.

Per scenario x magnitude x seed: 20,000 production rows over 90 days, drift from the middle
(onset 0.5 = 2025-02-14, inside the week 2025-02-10/16), scored by both models, 80% of rows
scored by the challenger (the rest shed / failed / sampled out), labels joined as the drift
pipeline would see them at the end of the window (30-day label delay: labels for events before
2025-03-01 only), then ``compute_drift`` with weekly chunks (13 chunks; ``--chunk-size N``:
chunks of N rows instead).

Measured per method (a row of the tables):

* ``decision``: the retraining decision with the default rules, and each default rule alone
  (``rule: psi`` ...), with the rules' consecutive-chunk logic;
* raw single-chunk alerts: PSI >= 0.25 on any feature, each NannyML univariate method on any
  feature, NannyML's multivariate, CBPE and realised ROC AUC alerts (NannyML thresholds).

Chunks are counted from the chunk that contains the onset (0 = onset chunk, partly drifted;
1 = the first full chunk after the onset). *Detected*: an alert in a complete chunk at or after
the onset chunk on a drifted feature (the manifest's drifted and derived features; for methods
that judge no single feature, the decision, multivariate, CBPE and realised performance: any
alert); *<= 1st full*: the first such alert in chunk 0 or 1; *delay*: median chunk of the first
such alert over detected runs; *false alarm*: share of runs with an alert in a chunk before the
onset chunk or, at any time, on a feature the scenario did not drift (concept drift drifts no
feature, so every feature-drift alert there is a false alarm). For ``none``: share of runs with
any alert in 13 chunks.

Thread pools are limited to one thread (2 shared cores). Prints markdown tables.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import defaultdict  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402

from shadowdrift import simulation as sim  # noqa: E402
from shadowdrift.drift_baseline import select_baseline  # noqa: E402
from shadowdrift.drift_monitor import DriftResults, compute_drift, fit_reference  # noqa: E402
from shadowdrift.drift_params import DriftParams  # noqa: E402
from shadowdrift.drift_report import build_figures, build_summary, render_html  # noqa: E402
from shadowdrift.schema import DataSchema, parse_schema  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HISTORY_ROWS, HISTORY_START, HISTORY_DAYS = 50_000, "2024-01-01", 365
PRODUCTION_ROWS, PRODUCTION_DAYS, LABEL_DELAY_DAYS = 20_000, 90, 30
MAGNITUDES = {
    "covariate_shift": (0.25, 0.5, 1.0),
    "gradual": (0.5, 1.0, 2.0),
    "new_category": (0.05, 0.1, 0.3),
    "concept_drift": (0.5, 1.0, 2.0),
    "missing_values": (0.05, 0.1, 0.3),
}
UNITS = {
    "covariate_shift": "std of monthly_charges",
    "gradual": "std of monthly_charges at the end of the window",
    "new_category": "share of payment_method values",
    "concept_drift": "logit strength of the new relation",
    "missing_values": "share of satisfaction_score values",
}
FEATURE = {
    "covariate_shift": "monthly_charges",
    "gradual": "monthly_charges",
    "new_category": "payment_method",
    "missing_values": "satisfaction_score",
}
ALL_METHODS = {
    "continuous_methods": ["kolmogorov_smirnov", "jensen_shannon", "wasserstein", "hellinger"],
    "categorical_methods": ["chi2", "jensen_shannon", "l_infinity", "hellinger"],
}


# --- data and models -----------------------------------------------------------------------------


def load_schema() -> DataSchema:
    params = yaml.safe_load((ROOT / "conf/base/parameters.yml").read_text(encoding="utf-8"))
    return parse_schema(params["schema"])


def _encode(frame: pd.DataFrame, schema: DataSchema) -> pd.DataFrame:
    """HGB input: numbers as floats, categories as schema codes (unseen and missing -> NaN)."""
    out = frame[schema.numeric_features].astype(float)
    for feature in schema.categorical:
        codes = pd.Categorical(frame[feature.name], categories=list(feature.values)).codes
        out[feature.name] = np.where(codes < 0, np.nan, codes)
    return out


@dataclass
class Models:
    schema: DataSchema
    champion: HistGradientBoostingClassifier
    challenger: HistGradientBoostingClassifier
    thresholds: dict[str, float]

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        x = _encode(frame, self.schema)
        out = frame.copy()
        for name, model in (("champion", self.champion), ("challenger", self.challenger)):
            p = model.predict_proba(x)[:, 1]
            out[f"{name}_probability"] = p
            out[f"{name}_label"] = (p >= self.thresholds[name]).astype(np.int64)
        return out


def _best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    grid = np.linspace(0.05, 0.95, 91)
    return float(grid[np.argmax([f1_score(y, p >= t) for t in grid])])


def fit_models(
    history: pd.DataFrame, schema: DataSchema, seed: int
) -> tuple[Models, dict[str, pd.DataFrame]]:
    """Champion and challenger on train (60%), thresholds on test (20%); and the three windows."""
    n = len(history)
    train, test = history.iloc[: int(0.6 * n)], history.iloc[int(0.6 * n) : int(0.8 * n)]
    reference = history.iloc[int(0.8 * n) :].reset_index(drop=True)
    windows = {"train": train, "test": test, "reference": reference}
    mask = [False] * len(schema.numeric) + [True] * len(schema.categorical)
    champion = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.1, categorical_features=mask, early_stopping=False,
        random_state=seed,
    ).fit(_encode(train, schema), train[schema.target])  # fmt: skip
    challenger = HistGradientBoostingClassifier(
        max_iter=150, max_depth=3, learning_rate=0.1, categorical_features=mask,
        early_stopping=False, random_state=seed,
    ).fit(_encode(train, schema), train[schema.target])  # fmt: skip
    x_test, y_test = _encode(test, schema), test[schema.target].to_numpy()
    thresholds = {
        name: _best_f1_threshold(y_test, model.predict_proba(x_test)[:, 1])
        for name, model in (("champion", champion), ("challenger", challenger))
    }
    return Models(schema, champion, challenger, thresholds), windows


def scored_baseline(
    models: Models, windows: dict[str, pd.DataFrame], schema: DataSchema, params: DriftParams
) -> pd.DataFrame:
    """The drift baseline (``params.baseline``) from the windows, as the pipeline selects it.

    Every row is scored; fit_reference reads the scores of the performance rows only.
    """
    baseline, _ = select_baseline(windows, schema, params.baseline)
    return models.score(baseline)


def production_log(
    models: Models, history: pd.DataFrame, seed: int, scenario: str, magnitude: float
) -> tuple[pd.DataFrame, sim.DriftManifest]:
    settings = {"covariate_shift": "monthly_charges", "gradual": "monthly_charges",
                "new_category": "payment_method", "missing_values": "satisfaction_score"}  # fmt: skip
    spec = sim.ScenarioSpec(
        name=scenario,
        onset=0.5,
        magnitude=magnitude,
        feature=settings.get(scenario),
        new_category_value="digital_wallet" if scenario == "new_category" else None,
    )
    start = str(pd.Timestamp(HISTORY_START) + pd.Timedelta(days=HISTORY_DAYS))
    records, truth, manifest = sim.simulate_production(
        PRODUCTION_ROWS, seed, start, PRODUCTION_DAYS, LABEL_DELAY_DAYS, spec,
        sim.feature_std(history), id_offset=len(history),
    )  # fmt: skip
    log = models.score(records)
    rng = np.random.default_rng([seed, 99])
    status = rng.choice(
        np.array(["ok", "shed", "failed", "sampled_out"], dtype=object),
        size=len(log),
        p=[0.8, 0.1, 0.05, 0.05],
    )
    log["challenger_status"] = status
    log["challenger_label"] = log["challenger_label"].astype("Int64")
    log.loc[status != "ok", "challenger_probability"] = np.nan
    log.loc[status != "ok", "challenger_label"] = pd.NA
    # What the drift pipeline sees at the end of the window: labels 30 days late.
    end = pd.Timestamp(manifest.production_end)
    log["churned"] = log["churned"].astype(float)
    log.loc[truth["label_available_at"].to_numpy() > np.datetime64(end), "churned"] = np.nan
    log["event_time"] = log["event_time"].dt.tz_localize("UTC")
    return log, manifest


# --- per-run outcomes ----------------------------------------------------------------------------


ANY = "*"  # the subject of a method that judges no single feature (multivariate, performance)


def _hits(
    frame: pd.DataFrame, complete: set[str], subject: str | None = "feature"
) -> dict[str, set[str]]:
    """{chunk: subjects alerting} over complete chunks, from a table with ``alert``."""
    out: dict[str, set[str]] = defaultdict(set)
    for row in frame.loc[frame["alert"].astype(bool)].itertuples(index=False):
        if row.chunk in complete:
            out[row.chunk].add(getattr(row, subject) if subject else ANY)
    return out


def _alerts(results: DriftResults) -> dict[str, dict[str, set[str]]]:
    """Per method / rule: {complete chunk: features (or ANY) alerting in it}."""
    chunks = results.chunks
    complete = set(chunks.loc[chunks["complete"], "chunk"])
    order = chunks["chunk"].tolist()
    out: dict[str, dict[str, set[str]]] = {}

    by_rule: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for reason in results.decision["reasons"]:
        if reason["detected_at"] is None:
            continue
        # A rule alerts from the chunk where its run reached the required length.
        at = order.index(reason["detected_at"])
        for chunk in reason["chunks"]:
            if order.index(chunk) >= at:
                by_rule[reason["rule"]][chunk].add(reason["feature"] or ANY)
    decision: dict[str, set[str]] = defaultdict(set)
    for hits in by_rule.values():
        for chunk in hits:
            decision[chunk].add(ANY)
    out["decision (default rules)"] = decision
    for rule in ("psi", "multivariate", "estimated_performance", "realised_performance",
                 "unseen_categories", "missing_values", "out_of_range"):  # fmt: skip
        out[f"rule: {rule}"] = by_rule.get(rule, {})

    features = set(results.schema.features)
    psi = results.psi.loc[results.psi["feature"].isin(features)]
    out["PSI >= 0.25 (1 chunk)"] = _hits(psi, complete)
    for method, group in results.nannyml.univariate.groupby("method", sort=False):
        out[f"NannyML {method} (1 chunk)"] = _hits(group, complete)
    out["NannyML multivariate PCA (1 chunk)"] = _hits(results.nannyml.multivariate, complete, None)
    est = results.nannyml.estimated_performance.query("model == 'champion' and metric == 'roc_auc'")
    out["NannyML CBPE roc_auc (1 chunk)"] = _hits(est, complete, None)
    real = results.nannyml.realised_performance.query(
        "model == 'champion' and metric == 'roc_auc' and n_rows >= 300"
    )
    out["NannyML realised roc_auc (1 chunk)"] = _hits(real, complete, None)
    return out


@dataclass
class RunOutcome:
    scenario: str
    magnitude: float
    seed: int
    decision: str
    first_delay: dict[str, int | None] = field(default_factory=dict)  # chunks after onset chunk
    false_alarm: dict[str, bool] = field(default_factory=dict)
    alert_chunks: dict[str, int] = field(default_factory=dict)
    n_chunks: int = 0
    names_feature: bool | None = None
    seconds: float = 0.0


def evaluate(results: DriftResults, manifest: sim.DriftManifest, seed: int) -> RunOutcome:
    """Detection on the drifted features (ANY for methods without a feature), false alarms."""
    chunks = results.chunks
    onset = pd.Timestamp(manifest.onset_time)
    order = chunks["chunk"].tolist()
    # The chunk holding the onset: the last one starting at or before it (period or size chunks).
    onset_pos = max(
        int(np.searchsorted(chunks["start"].to_numpy(), onset.to_datetime64(), "right")) - 1, 0
    )
    drifted = {*manifest.drifted_features, *manifest.derived_features_affected, ANY}
    if manifest.scenario == "none":
        drifted = set()
    outcome = RunOutcome(
        manifest.scenario, manifest.magnitude, seed, results.decision["decision"],
        n_chunks=int(chunks["complete"].sum()), seconds=results.seconds.get("analysis_total", 0.0),
    )  # fmt: skip
    for method, hits in _alerts(results).items():
        true_hits = sorted(
            order.index(c) - onset_pos
            for c, subjects in hits.items()
            if order.index(c) >= onset_pos and subjects & drifted
        )
        outcome.first_delay[method] = true_hits[0] if true_hits else None
        outcome.false_alarm[method] = any(
            order.index(c) < onset_pos or bool(subjects - drifted) for c, subjects in hits.items()
        )
        outcome.alert_chunks[method] = len(hits)
    if manifest.scenario in FEATURE:
        named = {FEATURE[manifest.scenario], *manifest.derived_features_affected}
        outcome.names_feature = any(r.get("feature") in named for r in results.decision["reasons"])
    return outcome


# --- tables --------------------------------------------------------------------------------------


def _pct(values: list[bool]) -> str:
    return f"{100 * sum(values) / len(values):.0f}%" if values else "-"


def drift_table(outcomes: list[RunOutcome], scenario: str) -> str:
    runs = [o for o in outcomes if o.scenario == scenario]
    magnitudes = sorted({o.magnitude for o in runs})
    methods = list(runs[0].first_delay)
    header = ["method"]
    for m in magnitudes:
        header += [f"{m:g}: detected", f"{m:g}: <= 1st full", f"{m:g}: delay"]
    header.append("false alarm")
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for method in methods:
        cells = [method]
        for m in magnitudes:
            group = [o for o in runs if o.magnitude == m]
            delays = [o.first_delay[method] for o in group]
            detected = [d is not None for d in delays]
            within = [d is not None and d <= 1 for d in delays]
            found = [d for d in delays if d is not None]
            cells += [
                _pct(detected),
                _pct(within),
                f"{statistics.median(found):g}" if found else "-",
            ]
        cells.append(_pct([o.false_alarm[method] for o in runs]))
        lines.append("| " + " | ".join(cells) + " |")
    if scenario in FEATURE:
        names = []
        for m in magnitudes:
            group = [o for o in runs if o.magnitude == m and o.decision == "retrain"]
            names.append(f"{m:g}: {_pct([bool(o.names_feature) for o in group])}")
        lines.append("")
        lines.append(
            f"A retraining reason names {FEATURE[scenario]} (or a feature derived from it) in "
            + ", ".join(names)
            + " of the retrain decisions."
        )
    return "\n".join(lines)


def none_table(outcomes: list[RunOutcome]) -> str:
    runs = [o for o in outcomes if o.scenario == "none"]
    header = ["method", "runs with an alert", "alerting chunks / complete chunks"]
    lines = ["| " + " | ".join(header) + " |", "|---|---:|---:|"]
    for method in runs[0].false_alarm:
        flags = [o.false_alarm[method] for o in runs]
        hits = sum(o.alert_chunks[method] for o in runs)
        total = sum(o.n_chunks for o in runs)
        lines.append(f"| {method} | {_pct(flags)} ({sum(flags)}/{len(flags)}) | {hits}/{total} |")
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


TIMED_BASELINES = {
    "default": {},
    "out_of_sample": {"features": "out_of_sample", "performance": "out_of_sample"},
    "reference window": {"features": "reference", "performance": "reference"},
}


def time_default_parameters(schema: DataSchema, repeats: int = 3) -> int:
    """The drift pipeline's own work at the demo sizes, default ``drift`` parameters, beside
    smaller baselines (``TIMED_BASELINES``; interleaved, ``repeats`` times each)."""
    history, _ = sim.simulate_history(
        HISTORY_ROWS, 0, HISTORY_START, HISTORY_DAYS, LABEL_DELAY_DAYS
    )
    params = {name: DriftParams.from_params({"baseline": b}) for name, b in TIMED_BASELINES.items()}
    models, windows = fit_models(history, schema, 0)
    baselines = {name: scored_baseline(models, windows, schema, p) for name, p in params.items()}
    log, _ = production_log(models, history, 0, "covariate_shift", 0.5)
    rows: dict[tuple[str, str], list[float]] = defaultdict(list)
    sizes = {}
    for _ in range(repeats):
        for name, drift in params.items():
            tick = time.perf_counter()
            fitted = fit_reference(baselines[name], schema, models.thresholds["champion"], drift)
            rows[name, "fit_reference"].append(time.perf_counter() - tick)
            tick = time.perf_counter()
            results = compute_drift(log, fitted)
            rows[name, "compute_drift"].append(time.perf_counter() - tick)
            rows[name, "  of which NannyML"].append(results.seconds["nannyml"])
            rows[name, "  of which PSI"].append(results.seconds["psi"])
            rows[name, "  of which data quality + agreement"].append(
                results.seconds["data_quality_and_agreement"]
            )
            tick = time.perf_counter()
            render_html(build_summary(results), build_figures(results))
            rows[name, "summary + figures + HTML"].append(time.perf_counter() - tick)
            rows[name, "total"].append(
                rows[name, "fit_reference"][-1]
                + rows[name, "compute_drift"][-1]
                + rows[name, "summary + figures + HTML"][-1]
            )
            sizes[name] = fitted.info["baseline"]
    for name, info in sizes.items():
        print(f"{name}: features baseline {info['features']['n_rows']:,} rows "
              f"({info['features']['complete_chunks']} weeks), performance baseline "
              f"{info['performance']['n_rows']:,} rows ({info['performance']['complete_chunks']} "
              "weeks)")  # fmt: skip
    print(f"\nAnalysis {len(log):,} rows, {len(schema.features)} features; {_cpu_name()}, "
          f"{repeats} repeats, interleaved\n")  # fmt: skip
    names = list(params)
    print("| step | " + " | ".join(f"{n}: median s | {n}: max s" for n in names) + " |")
    print("|---|" + "---:|---:|" * len(names))
    for step in dict.fromkeys(step for _, step in rows):
        cells = [
            f"{statistics.median(rows[n, step]):.2f} | {max(rows[n, step]):.2f}" for n in names
        ]
        print(f"| {step} | " + " | ".join(cells) + " |")
    return 0


def _params(args: argparse.Namespace) -> dict:
    """The ``drift`` parameters of the grid: defaults, plus what the options change."""
    params: dict = {} if args.default_methods else {"nannyml": dict(ALL_METHODS)}
    baseline = {
        key: value
        for key, value in (
            ("features", args.features_baseline),
            ("performance", args.performance_baseline),
            ("min_chunks", args.min_chunks),
        )
        if value is not None
    }
    if baseline:
        params["baseline"] = baseline
    if args.chunk_size:
        params["chunking"] = {
            "by": "size", "size": args.chunk_size, "min_rows": min(500, args.chunk_size)
        }  # fmt: skip
    return params


def _baseline_line(fitted_info: dict) -> str:
    parts = []
    for role in ("features", "performance"):
        info = fitted_info["baseline"][role]
        parts.append(
            f"{role} baseline {info['source']} ({info['n_rows']:,} rows, "
            f"{info['complete_chunks']} complete chunks)"
        )
    return "; ".join(parts)


# --- main ----------------------------------------------------------------------------------------


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # 10 seeds took 12 min on the shared 2-core machine (docs/drift_quality.md); 8 keep the
    # default grid near 10 min.
    parser.add_argument("--seeds", type=int, default=8, help="seeds per drift scenario x magnitude")
    parser.add_argument("--seeds-none", type=int, default=20, help="seeds for the none scenario")
    parser.add_argument("--quick", action="store_true", help="2 seeds, middle magnitude only")
    parser.add_argument("--scenarios", nargs="*", default=list(MAGNITUDES))
    parser.add_argument(
        "--timing",
        action="store_true",
        help="only time the default drift parameters end to end (3 repeats), no grid",
    )
    parser.add_argument("--features-baseline", help="drift.baseline.features (default: default)")
    parser.add_argument(
        "--performance-baseline", help="drift.baseline.performance (default: default)"
    )
    parser.add_argument("--min-chunks", type=int, help="drift.baseline.min_chunks")
    parser.add_argument("--chunk-size", type=int, help="chunks of this many rows, not weeks")
    parser.add_argument(
        "--default-methods",
        action="store_true",
        help="only the default NannyML univariate methods (faster), not all eight",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if args.quick:
        args.seeds, args.seeds_none = 2, 2
    logging.basicConfig(level=logging.WARNING)
    # NannyML warns once per categorical feature that it caps chi2's threshold at 1.0.
    logging.getLogger("nannyml").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    schema = load_schema()
    if args.timing:
        return time_default_parameters(schema)
    params = DriftParams.from_params(_params(args))
    grid = {s: MAGNITUDES[s][1:2] if args.quick else MAGNITUDES[s] for s in args.scenarios}

    started = time.perf_counter()
    outcomes: list[RunOutcome] = []
    fit_times, model_times, report_times = [], [], []
    for seed in range(args.seeds_none):
        tick = time.perf_counter()
        history, _ = sim.simulate_history(
            HISTORY_ROWS, seed, HISTORY_START, HISTORY_DAYS, LABEL_DELAY_DAYS
        )
        models, windows = fit_models(history, schema, seed)
        reference = scored_baseline(models, windows, schema, params)
        model_times.append(time.perf_counter() - tick)
        fitted = fit_reference(reference, schema, models.thresholds["champion"], params)
        fit_times.append(fitted.fit_seconds)
        baseline_line = _baseline_line(fitted.info)
        jobs: list[tuple[str, float]] = [("none", 0.0)]
        if seed < args.seeds:
            jobs += [(s, m) for s, mags in grid.items() for m in mags]
        for scenario, magnitude in jobs:
            log, manifest = production_log(models, history, seed, scenario, magnitude)
            results = compute_drift(log, fitted)
            outcomes.append(evaluate(results, manifest, seed))
            if seed == 0 and scenario == "covariate_shift" and magnitude == 0.5:
                tick = time.perf_counter()
                render_html(build_summary(results), build_figures(results))
                report_times.append(time.perf_counter() - tick)
        print(
            f"seed {seed}: {len(jobs)} runs, {time.perf_counter() - started:.0f} s so far",
            file=sys.stderr,
        )
    elapsed = time.perf_counter() - started

    analysis_times = [o.seconds for o in outcomes]
    print("# Drift detection quality\n")
    command = " ".join(
        ["benchmarks/bench_drift_quality.py", *(argv if argv is not None else sys.argv[1:])]
    )
    print(
        f"Command: `.venv/bin/python {command}` ({args.seeds_none} seeds for none, {args.seeds} per "
        f"drift scenario x magnitude, {len(outcomes)} runs, {elapsed / 60:.1f} min).\n"
    )
    print(f"Machine: {_cpu_name()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, one thread per pool.\n")  # fmt: skip
    print(f"Baselines (last seed): {baseline_line}; chunks: {params.chunking.describe()}.\n")
    print("## Timings (default sizes: analysis 20,000 rows, 17 features)\n")
    print("| step | median s | max s |\n|---|---:|---:|")
    for name, values in (
        ("fit champion + challenger (benchmark only)", model_times),
        ("fit_reference (PSI bins, NannyML fits)", fit_times),
        ("compute_drift on 20,000 rows (PSI, data quality, NannyML, decision)", analysis_times),
        ("summary + figures + HTML report", report_times),
    ):
        if values:
            print(f"| {name} | {statistics.median(values):.2f} | {max(values):.2f} |")
    print(f"\n## none: false alarms over chunks of {params.chunking.describe()}\n")
    print(none_table(outcomes))
    for scenario in grid:
        print(f"\n## {scenario} (magnitude in {UNITS[scenario]})\n")
        print(drift_table(outcomes, scenario))
    return 0


if __name__ == "__main__":
    sys.exit(main())
