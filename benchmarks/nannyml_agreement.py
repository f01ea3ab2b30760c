"""The project's drift monitors against a direct NannyML 0.13.1 run, chunk by chunk: the tables.

Usage::

    .venv/bin/python benchmarks/nannyml_agreement.py           # about 2 minutes
    .venv/bin/python benchmarks/nannyml_agreement.py --all     # every feature x method table

Runs ``shadowdrift.nannyml_agreement`` (the same code as tests/test_nannyml_agreement.py, on
the full data sets) and prints markdown for docs/drift_quality.md: per data set and chunking,
a summary of every monitor (rows compared, alerts on each side, mismatches, the largest
absolute difference of values, thresholds and sampling errors), then per-chunk side-by-side
tables: multivariate reconstruction error, CBPE and realised ROC AUC, and a few univariate
feature x method pairs (all of them with ``--all``). "ours" is ``drift_monitor.run_drift`` on
the data as the prediction log holds it; "NannyML" is NannyML's calculators called directly
with ``chunk_size`` / ``chunk_period`` on NannyML's own frames.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from typing import Any  # noqa: E402

import pandas as pd  # noqa: E402

from shadowdrift.nannyml_agreement import (  # noqa: E402
    MONITORS,
    Case,
    incomplete_size_chunk_dropped,
    run_nannyml_directly,
    run_ours,
    side_by_side,
    synthetic_case,
    tables_equal,
    titanic_case,
)

# (data set, chunking, univariate pairs shown per chunk)
SYNTHETIC_PAIRS = [
    ("distance_from_office", "kolmogorov_smirnov"),
    ("public_transportation_cost", "jensen_shannon"),
    ("wfh_prev_workday", "chi2"),
    ("salary_range", "jensen_shannon"),
]
TITANIC_PAIRS = [("Age", "kolmogorov_smirnov"), ("Fare", "jensen_shannon"), ("Embarked", "chi2")]


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.6f}"


def _flag(value: Any) -> str:
    return "alert" if bool(value) and not pd.isna(value) else ""


def _same(a: Any, b: Any) -> bool:
    return (pd.isna(a) and pd.isna(b)) or a == b


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def summary_table(summary: dict[str, dict[str, Any]]) -> str:
    header = ["monitor", "rows", "alerts ours / NannyML", "alert mismatches", "unmatched",
              "max abs diff value", "threshold", "sampling error"]  # fmt: skip
    rows = []
    for monitor, found in summary.items():
        threshold = max(
            found.get("lower_threshold_max_abs_diff", 0.0),
            found.get("upper_threshold_max_abs_diff", 0.0),
        )
        sampling = found.get("sampling_error_max_abs_diff")
        rows.append([
            monitor, str(found["rows"]), f"{found['alerts_ours']} / {found['alerts_nannyml']}",
            str(found["alert_mismatches"]), str(found["unmatched"]),
            f"{found['value_max_abs_diff']:g}", f"{threshold:g}",
            "-" if sampling is None else f"{sampling:g}",
        ])  # fmt: skip
    return _markdown(header, rows)


def chunk_table(table: pd.DataFrame, threshold: str) -> str:
    """Per chunk: value, ``threshold`` (lower or upper) and alert, ours beside NannyML's."""
    header = ["chunk", "value ours", "value NannyML", f"{threshold} ours", f"{threshold} NannyML",
              "alert ours", "alert NannyML", "identical"]  # fmt: skip
    rows = []
    for row in table.itertuples(index=False):
        values = [getattr(row, f"{c}_{side}") for c in ("value", threshold, "alert")
                  for side in ("ours", "nannyml")]  # fmt: skip
        identical = all(_same(values[i], values[i + 1]) for i in (0, 2, 4))
        rows.append([
            str(row.chunk), _number(values[0]), _number(values[1]), _number(values[2]),
            _number(values[3]), _flag(values[4]), _flag(values[5]), "yes" if identical else "NO",
        ])  # fmt: skip
    return _markdown(header, rows)


def report(
    case: Case,
    chunking: dict[str, Any],
    pairs: list[tuple[str, str]],
    *,
    note: str = "",
    show_all: bool = False,
    **direct: Any,
) -> None:
    tick = time.perf_counter()
    ours = run_ours(case, chunking).nannyml
    theirs = run_nannyml_directly(case, chunking, **direct).results
    seconds = time.perf_counter() - tick
    print(f"### {case.name}: {chunking}\n")
    if note:
        print(note + "\n")
    print(summary_table(tables_equal(ours, theirs)))
    print(f"\n({seconds:.0f} s for both sides.)\n")
    multi = side_by_side(ours, theirs, "multivariate")
    print("Multivariate (PCA reconstruction error):\n")
    print(chunk_table(multi, "upper_threshold") + "\n")
    for monitor, label in (("estimated_performance", "CBPE"), ("realised_performance", "realised")):
        table = side_by_side(ours, theirs, monitor)
        print(f"{label} ROC AUC:\n")
        print(chunk_table(table.loc[table["metric"] == "roc_auc"], "lower_threshold") + "\n")
    uni = side_by_side(ours, theirs, "univariate")
    if show_all:
        pairs = list(
            uni[["feature", "method"]].drop_duplicates().itertuples(index=False, name=None)
        )
    for feature, method in pairs:
        table = uni.loc[(uni["feature"] == feature) & (uni["method"] == method)]
        threshold = "upper_threshold"
        print(f"Univariate {method} on {feature}:\n")
        print(chunk_table(table, threshold) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--all", action="store_true", help="every feature x method table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("nannyml").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    print("## Agreement with NannyML: the tables\n")
    print("Command: `.venv/bin/python benchmarks/nannyml_agreement.py`; monitors compared: "
          f"{', '.join(MONITORS)}.\n")  # fmt: skip
    synthetic = synthetic_case()
    report(synthetic, {"by": "size", "size": 5000, "min_rows": 500}, SYNTHETIC_PAIRS,
           show_all=args.all)  # fmt: skip
    report(
        synthetic, {"by": "period", "period": "Q", "min_rows": 500}, SYNTHETIC_PAIRS[:1],
        note="Quarters: the first (2014Q2) and last (2017Q3) reference quarters are partial but "
        "have more than min_rows rows, so they count, as in NannyML.", show_all=args.all,
    )  # fmt: skip
    titanic = titanic_case()
    report(
        titanic, {"by": "size", "size": 100, "min_rows": 50}, TITANIC_PAIRS,
        note="No timestamps: size chunks in row order. The last reference chunk (91 rows) has "
        "more than min_rows rows and counts, as in NannyML.", show_all=args.all,
    )  # fmt: skip
    report(
        titanic, {"by": "size", "size": 100, "min_rows": 95}, [],
        note="min_rows 95: the last reference chunk (91 rows) is incomplete and left out of the "
        "thresholds. NannyML side: fitted with SizeBasedChunker(100, incomplete='drop'), the "
        "analysis chunked with incomplete='keep'.",
        **incomplete_size_chunk_dropped(titanic, 100),
    )  # fmt: skip
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
