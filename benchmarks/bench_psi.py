"""Benchmark shadowdrift.psi against a plain np.histogram loop and NannyML, on one core.

Usage: ``.venv/bin/python benchmarks/bench_psi.py [--rows 1000000] [--chunks 10]``

One run, one data set: an analysis frame of ``--rows`` rows x 20 features (18 numeric, 2
categorical, synthetic, seeded, with a mild shift and a few missing values) against a
100k-row reference. Timed:

(a) ours: ``binning.count`` + ``psi`` on the whole frame, and ``count_by_chunk`` +
    ``psi_by_chunk`` with the same positional chunks NannyML uses (``chunk_number``);
(b) a per-feature ``np.histogram`` loop on the same reference-quantile edges (``value_counts``
    for the two categoricals), whole frame and per chunk; it must give the same PSI as ours;
(c) NannyML 0.13.1 ``UnivariateDriftCalculator`` with Jensen-Shannon for both feature types
    (its own Doane histogram bins), ``fit`` on the reference and ``calculate`` on the analysis.

Thread pools are limited to one thread before numpy is imported and the process is pinned to
one CPU. Ours and numpy are timed ``--repeats`` times (median and best reported), NannyML once.
Exit status 1 if our whole-frame PSI misses the 1 s target.
"""

from __future__ import annotations

import os

# Before numpy is imported: one thread everywhere, so the figures are single-core figures.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from shadowdrift.psi import (  # noqa: E402
    DEFAULT_EPS,
    CategoricalBins,
    NumericBins,
    PSIBinning,
    psi,
    psi_by_chunk,
    psi_from_counts,
)

TARGET_SECONDS = 1.0
N_NUMERIC = 18
SMALL_CATEGORIES = ("month_to_month", "one_year", "two_year", "other")
LARGE_CATEGORIES = tuple(f"plan_{i:02d}" for i in range(30))


def make_frame(n: int, rng: np.random.Generator, shifted: bool) -> pd.DataFrame:
    """18 numeric (floats, skewed, tied ints, a score) and 2 categorical (object) features."""
    s = 1.0 if shifted else 0.0
    cols: dict[str, Any] = {}
    for i in range(6):
        cols[f"normal_{i}"] = rng.normal(10.0 * i + 0.1 * s * (i % 3), 1.0 + i, n)
    for i in range(3):
        cols[f"lognormal_{i}"] = rng.lognormal(1.0 + 0.05 * s * i, 0.6, n)
    for i in range(3):
        cols[f"uniform_{i}"] = rng.uniform(0.0, 100.0 + 3.0 * s * i, n)
    for i in range(3):
        cols[f"count_{i}"] = rng.poisson(0.7 + i * (1.0 + 0.05 * s), n).astype(np.int64)
    for i in range(2):
        cols[f"binomial_{i}"] = rng.binomial(5 + 3 * i, 0.4 + 0.02 * s * i, n).astype(np.int64)
    cols["score"] = rng.beta(2.0 + 0.2 * s, 5.0, n)
    # A broken feed now and then: a few missing values.
    for name in ("normal_1", "lognormal_0"):
        cols[name][rng.random(n) < 0.002 + 0.003 * s] = np.nan
    small_p = np.array([0.5, 0.25, 0.2, 0.05]) + s * np.array([-0.03, 0.0, 0.02, 0.01])
    cols["cat_small"] = np.asarray(SMALL_CATEGORIES, dtype=object)[
        rng.choice(len(SMALL_CATEGORIES), n, p=small_p)
    ]
    large_w = np.linspace(1.0, 3.0, len(LARGE_CATEGORIES)) ** (2.0 + 0.1 * s)
    cols["cat_large"] = np.asarray(LARGE_CATEGORIES, dtype=object)[
        rng.choice(len(LARGE_CATEGORIES), n, p=large_w / large_w.sum())
    ]
    frame = pd.DataFrame(cols)
    assert frame.shape[1] == N_NUMERIC + 2
    return frame


def timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Wall times of ``repeats`` calls after one warm-up call, and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def once(fn: Callable[[], Any]) -> tuple[list[float], Any]:
    start = time.perf_counter()
    result = fn()
    return [time.perf_counter() - start], result


# --- (b) the plain loop --------------------------------------------------------------------------


def histogram_counts(binning: PSIBinning, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Counts per feature with one np.histogram / value_counts call per feature."""
    out = {}
    for name, spec in binning.specs.items():
        column = frame[name]
        if isinstance(spec, NumericBins):
            values = column.to_numpy(dtype=np.float64, na_value=np.nan)
            missing = np.isnan(values)
            edges = np.concatenate([[-np.inf], spec.edges, [np.inf]])
            hist = np.histogram(values[~missing], bins=edges)[0]
            out[name] = np.append(hist, missing.sum())
        else:
            assert isinstance(spec, CategoricalBins)
            freq = column.value_counts(dropna=True)
            known = freq.reindex(list(spec.categories), fill_value=0).to_numpy()
            unseen = freq.sum() - known.sum()
            out[name] = np.concatenate([known, [unseen, column.isna().sum()]])
    return out


def histogram_psi(binning: PSIBinning, ref: dict[str, np.ndarray], frame: pd.DataFrame):
    counts = histogram_counts(binning, frame)
    return {name: float(psi_from_counts(ref[name], counts[name], DEFAULT_EPS)) for name in counts}


def histogram_psi_by_chunk(
    binning: PSIBinning, ref: dict[str, np.ndarray], frame: pd.DataFrame, chunk_size: int
) -> list[dict[str, float]]:
    """Same positional chunks as NannyML's chunk_number (remainder in a last, smaller chunk)."""
    starts = range(0, len(frame), chunk_size)
    return [histogram_psi(binning, ref, frame.iloc[i : i + chunk_size]) for i in starts]


# --- (c) NannyML ---------------------------------------------------------------------------------


def nannyml_calculator(numeric: list[str], categorical: list[str], chunks: int):
    import nannyml as nml

    logging.getLogger("nannyml").setLevel(logging.ERROR)
    return nml.UnivariateDriftCalculator(
        column_names=numeric + categorical,
        treat_as_numerical=numeric,
        treat_as_categorical=categorical,
        continuous_methods=["jensen_shannon"],
        categorical_methods=["jensen_shannon"],
        chunk_number=chunks,
    )


# --- reporting -----------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def pin_to_one_cpu() -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return f"pinned to CPU {cpu}"


@dataclass
class Timing:
    """One line of the table; ``base`` names the line of ours it is compared with."""

    step: str
    what: str
    rows: int
    times: list[float]
    base: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.times)


@dataclass
class Bench:
    """The data and the fitted binning shared by all timed steps."""

    args: argparse.Namespace
    reference: pd.DataFrame
    analysis: pd.DataFrame
    numeric: list[str]
    categorical: list[str]
    chunk_size: int
    timings: dict[str, Timing] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, key: str, timing: Timing) -> None:
        self.timings[key] = timing


def run_ours(bench: Bench) -> tuple[PSIBinning, Any, dict[str, float], pd.DataFrame]:
    args = bench.args
    # NannyML's chunk_number: chunks of rows // chunk_number rows, remainder kept as a last chunk.
    chunk_key = np.arange(len(bench.analysis)) // bench.chunk_size

    def fit() -> tuple[PSIBinning, Any]:
        binning = PSIBinning.fit(
            bench.reference, numeric=bench.numeric, categorical=bench.categorical, n_bins=args.bins
        )
        return binning, binning.count(bench.reference)

    fit_times, (binning, ref_counts) = timed(fit, args.repeats)
    whole_times, whole = timed(lambda: psi(ref_counts, binning.count(bench.analysis)), args.repeats)
    chunk_times, chunked = timed(
        lambda: psi_by_chunk(ref_counts, binning.count_by_chunk(bench.analysis, chunk_key)),
        args.repeats,
    )
    rows = len(bench.analysis)
    bench.add(
        "fit",
        Timing("ours: fit", "quantile edges + reference counts", len(bench.reference), fit_times),
    )
    bench.add(
        "whole", Timing("(a) ours: PSI", "count + psi, whole frame", rows, whole_times, "whole")
    )
    bench.add(
        "chunks",
        Timing(
            "(a) ours: PSI per chunk",
            f"count_by_chunk + psi_by_chunk, {args.chunks} chunks",
            rows,
            chunk_times,
            "chunks",
        ),
    )
    return binning, ref_counts, whole, chunked


def run_numpy(
    bench: Bench,
    binning: PSIBinning,
    ref_counts: Any,
    ours: dict[str, float],
    chunked: pd.DataFrame,
) -> None:
    args, rows = bench.args, len(bench.analysis)
    whole_times, hist = timed(
        lambda: histogram_psi(binning, ref_counts.counts, bench.analysis), args.repeats
    )
    chunk_times, hist_chunked = timed(
        lambda: histogram_psi_by_chunk(
            binning, ref_counts.counts, bench.analysis, bench.chunk_size
        ),
        args.repeats,
    )
    bench.add(
        "np",
        Timing("(b) np.histogram loop", "same edges, whole frame", rows, whole_times, "whole"),
    )
    bench.add(
        "np_chunks",
        Timing(
            "(b) np.histogram loop per chunk",
            f"same edges, {args.chunks} chunks",
            rows,
            chunk_times,
            "chunks",
        ),
    )
    whole_diff = max(abs(ours[f] - hist[f]) for f in ours)
    chunk_diff = max(
        abs(r.psi - hist_chunked[int(r.chunk)][r.feature]) for r in chunked.itertuples()
    )
    bench.notes.append(
        f"np.histogram loop agrees with ours: max |PSI difference| {whole_diff:.2e} whole, "
        f"{chunk_diff:.2e} per chunk"
    )


def run_nannyml(bench: Bench) -> str:
    import nannyml

    args = bench.args
    calc = nannyml_calculator(bench.numeric, bench.categorical, args.chunks)
    fit_times, _ = once(lambda: calc.fit(bench.reference))
    calc_times, result = once(lambda: calc.calculate(bench.analysis))
    bench.add(
        "nml_fit",
        Timing(
            "(c) NannyML fit",
            "UnivariateDriftCalculator JS, incl. its reference chunks",
            len(bench.reference),
            fit_times,
            "fit",
        ),
    )
    bench.add(
        "nml_calc",
        Timing(
            "(c) NannyML calculate",
            f"JS distance, chunk_number={args.chunks}",
            len(bench.analysis),
            calc_times,
            "chunks",
        ),
    )
    n_chunks = len(result.filter(period="analysis").to_df())
    return f"NannyML {nannyml.__version__}: {n_chunks} analysis chunks, run once on the full data"


def table(bench: Bench) -> list[str]:
    lines = [
        "| step | what | rows | median s | best s | vs ours |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for t in bench.timings.values():
        base = bench.timings[t.base].median if t.base else None
        ratio = f"{t.median / base:.1f}x" if base else "-"
        best = f"{min(t.times):.3f}" if len(t.times) > 1 else "(1 run)"
        lines.append(f"| {t.step} | {t.what} | {t.rows:,} | {t.median:.3f} | {best} | {ratio} |")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="analysis rows")
    parser.add_argument("--reference-rows", type=int, default=100_000)
    parser.add_argument("--chunks", type=int, default=10, help="NannyML chunk_number")
    parser.add_argument("--bins", type=int, default=10, help="quantile bins per numeric feature")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of ours and numpy")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip-nannyml", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pinning = pin_to_one_cpu()
    rng = np.random.default_rng(args.seed)
    print(f"Generating {args.reference_rows:,} reference and {args.rows:,} analysis rows ...")
    reference = make_frame(args.reference_rows, rng, shifted=False)
    analysis = make_frame(args.rows, rng, shifted=True)
    categorical = ["cat_small", "cat_large"]
    numeric = [c for c in analysis.columns if c not in categorical]
    bench = Bench(args, reference, analysis, numeric, categorical, args.rows // args.chunks)

    binning, ref_counts, ours, chunked = run_ours(bench)
    run_numpy(bench, binning, ref_counts, ours, chunked)
    nml_note = "NannyML skipped (--skip-nannyml)" if args.skip_nannyml else run_nannyml(bench)

    print()
    print(
        f"Machine: {cpu_model()}, {os.cpu_count()} logical cores, {pinning}; "
        f"Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}"
    )
    print(
        f"Data: reference {args.reference_rows:,} rows, analysis {args.rows:,} rows x "
        f"{len(numeric)} numeric + {len(categorical)} categorical features, "
        f"{sum(s.n_bins for s in binning.specs.values())} bins in all; "
        f"median and best of {args.repeats} runs after a warm-up; {nml_note}"
    )
    print()
    print("\n".join(table(bench)))
    print()
    print("\n".join(bench.notes))
    top = sorted(ours, key=ours.__getitem__, reverse=True)[:3]
    print("Largest PSI (whole frame): " + ", ".join(f"{f} {ours[f]:.4f}" for f in top))
    seconds = bench.timings["whole"].median
    passed = seconds <= TARGET_SECONDS
    print(
        f"Target: PSI on {args.rows:,} rows x {len(binning.features)} features in <= "
        f"{TARGET_SECONDS:.0f} s on one core, fit excluded: {seconds:.3f} s -> "
        f"{'PASS' if passed else 'FAIL'} (fit {bench.timings['fit'].median:.3f} s)"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
