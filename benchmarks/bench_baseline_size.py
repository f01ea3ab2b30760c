"""How the size of the drift baseline changes the alerts: 2, 3 and 10 baseline chunks, chunk by chunk.

Usage::

    .venv/bin/python benchmarks/bench_baseline_size.py          # about 1 minute

NannyML's synthetic binary classification data (bundled with NannyML, nothing downloaded):
50,000 reference rows (10 chunks of 5,000) and 50,000 analysis rows whose second half drifts
(the model's realised ROC AUC falls from about 0.97 to about 0.91 from chunk [25000:29999]). The
project's drift path (``drift_monitor.run_drift``, data as the prediction log holds it) runs
three times, with the newest 2, 3 or all 10 reference chunks as the baseline of every monitor
and ``drift.baseline.min_chunks`` at its default (6). Per analysis chunk it prints the
multivariate reconstruction error against its threshold, the number of univariate alerts of the
spread-based methods (Kolmogorov-Smirnov, Jensen-Shannon: mean + 3 standard deviations of the
baseline chunks) and of chi2 (p < 0.05), and the CBPE estimate of ROC AUC against its lower
threshold beside the realised value; then the retraining decision with the default rules.
Prints markdown (docs/drift_quality.md, "The baseline").
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import pandas as pd  # noqa: E402

from shadowdrift.drift_monitor import DriftResults, run_drift  # noqa: E402
from shadowdrift.nannyml_agreement import THRESHOLD, synthetic_case  # noqa: E402

CHUNK_ROWS = 5000
SPREAD_METHODS = ("kolmogorov_smirnov", "jensen_shannon")


def _run(case, n_chunks: int) -> DriftResults:
    reference = case.reference.iloc[-n_chunks * CHUNK_ROWS :].reset_index(drop=True)
    params = {
        "chunking": {"by": "size", "size": CHUNK_ROWS, "min_rows": 500},
        "nannyml": {"challenger": False},
    }
    return run_drift(reference, case.analysis, case.schema, THRESHOLD, params)


def chunk_table(results: DriftResults) -> pd.DataFrame:
    """Per analysis chunk: multivariate, univariate alert counts, CBPE vs realised ROC AUC."""
    nml = results.nannyml
    multi = nml.multivariate.set_index("chunk")
    uni = nml.univariate
    spread = uni.loc[uni["method"].isin(SPREAD_METHODS)].groupby("chunk")["alert"].sum()
    chi2 = uni.loc[uni["method"] == "chi2"].groupby("chunk")["alert"].sum()
    n_spread = uni.loc[uni["method"].isin(SPREAD_METHODS)].groupby("chunk").size()
    n_chi2 = uni.loc[uni["method"] == "chi2"].groupby("chunk").size()
    est = nml.estimated_performance.query("metric == 'roc_auc'").set_index("chunk")
    real = nml.realised_performance.query("metric == 'roc_auc'").set_index("chunk")
    rows = []
    for chunk in results.chunks["chunk"]:
        rows.append(
            {
                "chunk": chunk,
                "multivariate error / upper": f"{multi.at[chunk, 'value']:.3f} / "
                f"{multi.at[chunk, 'upper_threshold']:.3f}",
                "multivariate alert": "ALERT" if multi.at[chunk, "alert"] else "",
                "KS + JS alerts": f"{int(spread.get(chunk, 0))} of {int(n_spread.get(chunk, 0))}",
                "chi2 alerts": f"{int(chi2.get(chunk, 0))} of {int(n_chi2.get(chunk, 0))}",
                "CBPE ROC AUC / lower": f"{est.at[chunk, 'value']:.3f} / "
                f"{est.at[chunk, 'lower_threshold']:.3f}",
                "CBPE alert": "ALERT" if est.at[chunk, "alert"] else "",
                "realised ROC AUC": f"{real.at[chunk, 'value']:.3f}" if chunk in real.index else "",
            }
        )
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|---|" + "---:|" * (len(frame.columns) - 1)
    lines = [header, rule]
    lines += [
        "| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, nargs="*", default=[2, 3, 10])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    warnings.filterwarnings("ignore")
    case = synthetic_case()  # every analysis label is known: realised ROC AUC in every chunk
    started = time.perf_counter()
    print("# Baseline size: alerts per chunk\n")
    print("Command: `.venv/bin/python benchmarks/bench_baseline_size.py`\n")
    for n_chunks in args.chunks:
        results = _run(case, n_chunks)
        info = results.reference["baseline"]["features"]
        print(
            f"## Baseline: the newest {n_chunks} reference chunks ({info['n_rows']:,} rows, "
            f"{info['start'][:10]} to {info['end'][:10]})\n"
        )
        for warning in results.reference.get("warnings", []):
            print(f"Warning: {warning}\n")
        print(_markdown(chunk_table(results)))
        decision = results.decision
        print(f"\nDecision: **{decision['decision']}**: {decision['summary']}.")
        for reason in decision["reasons"]:
            print(f"- acted on: {reason['rule']}: {reason['message']}")
        for reason in decision.get("reasons_not_acted_on", []):
            print(f"- not acted on: {reason['rule']}: {reason['message']}")
        print()
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
