"""The ``drift`` parameters (``conf/base/parameters_drift.yml``), checked.

Every key is optional; a missing key takes the default shown. Unknown keys and bad values fail
with ``DriftConfigError`` naming the key (``drift.rules.psi.consecutive_chunks``, ...)::

    drift:
      analysis_start: after_reference  # judge logged records newer than the labelled history; "all"
      baseline:                 # what production is compared with (see ``drift_baseline``)
        features: all_history   # PSI, NannyML univariate and multivariate, data quality:
                                #   out_of_sample, reference, all_history, date_range, raw_reference
        performance: out_of_sample  # CBPE and realised performance, prediction PSI: scores the
                                #   models never trained on: out_of_sample, reference, date_range,
                                #   raw_reference (never the training window)
        start: null             # date_range: first instant of the baseline (ISO date or time)
        end: null               # date_range: first instant after it (exclusive); null: open
        min_chunks: 6           # fewer complete baseline chunks: warned, reported, and rules that
                                #   use NannyML's baseline spread do not trigger a retrain
      chunking:
        by: period              # "period": calendar periods of event_time; "size": rows per chunk
        period: W               # by=period: pandas alias, D, W, W-MON, M, Q, or a fixed multiple
                                #   such as 7D or 12h (multiples are aligned to 1970-01-01 UTC)
        size: 2000              # by=size: rows per chunk, in event-time order
        min_rows: 500           # chunks with fewer rows are reported but marked incomplete: no alarms
      psi:
        n_bins: 10              # quantile bins per numeric feature (learnt on the reference)
        warn: 0.1               # PSI >= warn is "warn"
        alert: 0.25             # PSI >= alert is "alert" (the psi rule's threshold)
        eps: 0.0001             # floor on bin shares before the log (see shadowdrift.psi)
        monitor_predictions: true  # also PSI of champion_probability (reported, never a rule)
      nannyml:
        continuous_methods: [kolmogorov_smirnov, jensen_shannon]  # also wasserstein, hellinger
        categorical_methods: [chi2, jensen_shannon]               # also l_infinity, hellinger
        multivariate: true      # PCA data-reconstruction error (DataReconstructionDriftCalculator)
        pca_components: 0.65    # PCA n_components: variance share (0, 1) or a number of components
        performance_metrics: [roc_auc, f1, precision, recall]  # CBPE estimate and realised
        challenger: true        # estimate / realise the challenger's metrics beside the champion's
      rules:
        min_complete_chunks: 2  # fewer complete analysis chunks -> decision "insufficient_data"
        psi:                    # a feature's PSI >= psi.alert ...
          enabled: true
          consecutive_chunks: 1 # ... in this many consecutive complete chunks
        estimated_performance:  # the champion's CBPE estimate ...
          enabled: true
          metric: roc_auc
          max_drop: 0.05        # ... more than this below the reference's realised value, or
          floor: null           # ... below this absolute value (null: no floor)
          consecutive_chunks: 2
        realised_performance:   # the champion's realised metric where labels arrived ...
          enabled: true
          metric: roc_auc
          max_drop: 0.05        # ... more than this below the reference's realised value
          min_labelled_rows: 300  # chunks with fewer labelled rows are not judged
          consecutive_chunks: 1
        multivariate:           # reconstruction error outside NannyML's thresholds ...
          enabled: true
          consecutive_chunks: 2
        univariate:             # NannyML univariate alerts on one feature (off: 3-sigma alerts
          enabled: false        #   over many features x chunks x methods raise false alarms)
          methods: [kolmogorov_smirnov, chi2]
          consecutive_chunks: 3
        unseen_categories:      # share of a chunk's rows with a value the schema does not allow
          enabled: true
          max_share: 0.01
          consecutive_chunks: 1
        missing_values:         # a feature's missing share above its reference share by more than
          enabled: true
          max_increase: 0.05
          consecutive_chunks: 1
        out_of_range:           # share of a chunk's rows outside the schema's min/max
          enabled: true
          max_share: 0.01
          consecutive_chunks: 1

"Consecutive" counts adjacent chunks among the chunks a rule can judge: incomplete chunks (and,
for realised performance, chunks without enough labels) are skipped, they neither break nor
extend a run.

Plain Python; does not import Kedro.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd
from pandas.tseries.frequencies import to_offset

CHUNK_BY = ("period", "size")
FEATURE_BASELINES = ("out_of_sample", "reference", "all_history", "date_range", "raw_reference")
PERFORMANCE_BASELINES = ("out_of_sample", "reference", "date_range", "raw_reference")
CONTINUOUS_METHODS = ("kolmogorov_smirnov", "jensen_shannon", "wasserstein", "hellinger")
CATEGORICAL_METHODS = ("chi2", "jensen_shannon", "l_infinity", "hellinger")
ANALYSIS_STARTS = ("after_reference", "all")
UNIVARIATE_METHODS = tuple(dict.fromkeys(CONTINUOUS_METHODS + CATEGORICAL_METHODS))
PERFORMANCE_METRICS = (
    "roc_auc",
    "f1",
    "precision",
    "recall",
    "specificity",
    "accuracy",
    "average_precision",
)


class DriftConfigError(ValueError):
    """The ``drift`` parameters are malformed; the message names the key."""


# --- checked fields ------------------------------------------------------------------------------


def _spec(default: Any, check: Callable[[Any, str], Any]) -> Any:
    """A dataclass field whose YAML value is checked (and normalised) by ``check``."""
    return field(default=default, metadata={"check": check})


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise DriftConfigError(f"{key} must be true or false, got {value!r}")
    return value


def _int_at_least(low: int) -> Callable[[Any, str], int]:
    def check(value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise DriftConfigError(f"{key} must be an integer of at least {low}, got {value!r}")
        return value

    return check


def _number(low: float, high: float, *, optional: bool = False) -> Callable[[Any, str], Any]:
    def check(value: Any, key: str) -> float | None:
        if value is None and optional:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not low <= value <= high
        ):
            allowed = " or null" if optional else ""
            raise DriftConfigError(
                f"{key} must be a number in [{low}, {high}]{allowed}, got {value!r}"
            )
        return float(value)

    return check


def _choice(choices: tuple[str, ...]) -> Callable[[Any, str], str]:
    def check(value: Any, key: str) -> str:
        if value not in choices:
            raise DriftConfigError(f"{key} must be one of {', '.join(choices)}; got {value!r}")
        return value

    return check


def _names(choices: tuple[str, ...], *, allow_empty: bool = False) -> Callable[[Any, str], Any]:
    def check(value: Any, key: str) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or (not value and not allow_empty):
            raise DriftConfigError(f"{key} must be a list of names from {', '.join(choices)}")
        bad = [v for v in value if v not in choices]
        if bad:
            raise DriftConfigError(
                f"{key}: unknown name(s) {', '.join(map(repr, bad))}; allowed: {', '.join(choices)}"
            )
        return tuple(dict.fromkeys(value))

    return check


def _period(value: Any, key: str) -> str:
    """A pandas frequency that makes non-overlapping chunks (see ``drift_chunks``)."""
    if not isinstance(value, str) or not value:
        raise DriftConfigError(
            f"{key} must be a pandas period alias such as W or 7D, got {value!r}"
        )
    with warnings.catch_warnings():
        # pandas 2.x deprecates "M" as an offset alias, but it is the right *period* alias.
        warnings.simplefilter("ignore", FutureWarning)
        try:
            offset = to_offset(value)
        except ValueError as exc:
            raise DriftConfigError(f"{key}: {value!r} is not a pandas frequency ({exc})") from None
        if isinstance(offset, pd.offsets.Tick):
            return value
        if offset.n != 1:
            # pandas' Period with a multiple of a calendar unit ("2W") still groups per week.
            raise DriftConfigError(
                f"{key}: {value!r} is a multiple of a calendar period, which pandas periods "
                "cannot chunk by; use a fixed length such as 14D, or the single period (W, M)"
            )
        try:
            pd.Series([pd.Timestamp(0)]).dt.to_period(value)
        except (ValueError, TypeError) as exc:
            raise DriftConfigError(
                f"{key}: {value!r} is not a pandas period alias ({exc}); try W, M, Q or 7D"
            ) from None
    return value


def _instant(value: Any, key: str) -> str | None:
    """An ISO date or time (naive means UTC), kept as ISO text; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | dt.date | pd.Timestamp):
        raise DriftConfigError(f"{key} must be an ISO date such as 2025-01-01, got {value!r}")
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise DriftConfigError(f"{key}: {value!r} is not a date or time ({exc})") from None
    if pd.isna(stamp):
        raise DriftConfigError(f"{key} must be an ISO date such as 2025-01-01, got {value!r}")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.isoformat()


def _performance_baseline(value: Any, key: str) -> str:
    if value == "all_history":
        raise DriftConfigError(
            f"{key} cannot be all_history: estimated and realised performance need scores the "
            "models never trained on, and all_history includes the training window; use "
            f"one of {', '.join(PERFORMANCE_BASELINES)}"
        )
    return _choice(PERFORMANCE_BASELINES)(value, key)


def _pca_components(value: Any, key: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DriftConfigError(f"{key} must be a share in (0, 1) or a whole number, got {value!r}")
    if isinstance(value, int) and value >= 1:
        return value
    if isinstance(value, float) and 0 < value < 1:
        return value
    raise DriftConfigError(f"{key} must be a share in (0, 1) or a whole number >= 1, got {value!r}")


def _parse(cls: type, raw: Any, key: str) -> Any:
    """Build dataclass ``cls`` from a mapping, checking every field and rejecting unknown keys."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise DriftConfigError(f"{key} must be a mapping, got {type(raw).__name__}: {raw!r}")
    allowed = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise DriftConfigError(
            f"{key}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}"
        )
    values = {}
    for name, value in raw.items():
        spec = allowed[name]
        if spec.metadata.get("nested"):
            values[name] = _parse(spec.default_factory, value, f"{key}.{name}")
        else:
            values[name] = spec.metadata["check"](value, f"{key}.{name}")
    return cls(**values)


_NESTED = {"nested": True}


# --- sections ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkingParams:
    """How analysis (and reference) rows are cut into chunks; see ``drift_chunks``."""

    by: str = _spec("period", _choice(CHUNK_BY))
    period: str = _spec("W", _period)
    size: int = _spec(2000, _int_at_least(1))
    min_rows: int = _spec(500, _int_at_least(1))

    def __post_init__(self) -> None:
        if self.by == "size" and self.min_rows > self.size:
            raise DriftConfigError(
                f"drift.chunking.min_rows ({self.min_rows}) is larger than drift.chunking.size "
                f"({self.size}): every chunk would be incomplete"
            )

    def describe(self) -> str:
        return f"{self.period} periods" if self.by == "period" else f"{self.size} rows"


@dataclass(frozen=True)
class BaselineParams:
    """What production is compared with; ``drift_baseline`` selects the rows.

    Two baselines: ``features`` for everything that looks at the features only (PSI of the
    features, NannyML univariate and multivariate drift, the data-quality reference shares), and
    ``performance`` for everything that uses the models' scores (CBPE, realised performance and
    its reference value, PSI of the champion's score), which must be scores the models never
    trained on.
    """

    features: str = _spec("all_history", _choice(FEATURE_BASELINES))
    performance: str = _spec("out_of_sample", _performance_baseline)
    start: str | None = _spec(None, _instant)
    end: str | None = _spec(None, _instant)
    min_chunks: int = _spec(6, _int_at_least(1))

    def __post_init__(self) -> None:
        for name in ("start", "end"):  # also when built directly, not from parameters
            object.__setattr__(self, name, _instant(getattr(self, name), f"drift.baseline.{name}"))
        uses_range = "date_range" in (self.features, self.performance)
        if uses_range and self.start is None and self.end is None:
            roles = [r for r in ("features", "performance") if getattr(self, r) == "date_range"]
            raise DriftConfigError(
                f"drift.baseline.{roles[0]} is date_range: set drift.baseline.start and/or "
                "drift.baseline.end"
            )
        if not uses_range and (self.start is not None or self.end is not None):
            raise DriftConfigError(
                "drift.baseline.start/end are set but neither drift.baseline.features nor "
                "drift.baseline.performance is date_range"
            )
        if self.start is not None and self.end is not None and self.start_time >= self.end_time:
            raise DriftConfigError(
                f"drift.baseline.start ({self.start}) must be before drift.baseline.end ({self.end})"
            )

    @property
    def start_time(self) -> pd.Timestamp | None:
        return None if self.start is None else pd.Timestamp(self.start)

    @property
    def end_time(self) -> pd.Timestamp | None:
        return None if self.end is None else pd.Timestamp(self.end)


@dataclass(frozen=True)
class PSIParams:
    n_bins: int = _spec(10, _int_at_least(2))
    warn: float = _spec(0.1, _number(0.0, 100.0))
    alert: float = _spec(0.25, _number(0.0, 100.0))
    eps: float = _spec(1e-4, _number(1e-12, 0.5))
    monitor_predictions: bool = _spec(True, _bool)

    def __post_init__(self) -> None:
        if self.warn > self.alert:
            raise DriftConfigError(
                f"drift.psi.warn ({self.warn}) must not exceed drift.psi.alert ({self.alert})"
            )


@dataclass(frozen=True)
class NannyMLParams:
    continuous_methods: tuple[str, ...] = _spec(
        ("kolmogorov_smirnov", "jensen_shannon"), _names(CONTINUOUS_METHODS, allow_empty=True)
    )
    categorical_methods: tuple[str, ...] = _spec(
        ("chi2", "jensen_shannon"), _names(CATEGORICAL_METHODS, allow_empty=True)
    )
    multivariate: bool = _spec(True, _bool)
    pca_components: float | int = _spec(0.65, _pca_components)
    performance_metrics: tuple[str, ...] = _spec(
        ("roc_auc", "f1", "precision", "recall"), _names(PERFORMANCE_METRICS, allow_empty=True)
    )
    challenger: bool = _spec(True, _bool)


@dataclass(frozen=True)
class PSIRule:
    enabled: bool = _spec(True, _bool)
    consecutive_chunks: int = _spec(1, _int_at_least(1))


@dataclass(frozen=True)
class EstimatedPerformanceRule:
    enabled: bool = _spec(True, _bool)
    metric: str = _spec("roc_auc", _choice(PERFORMANCE_METRICS))
    max_drop: float = _spec(0.05, _number(0.0, 1.0))
    floor: float | None = _spec(None, _number(0.0, 1.0, optional=True))
    consecutive_chunks: int = _spec(2, _int_at_least(1))


@dataclass(frozen=True)
class RealisedPerformanceRule:
    enabled: bool = _spec(True, _bool)
    metric: str = _spec("roc_auc", _choice(PERFORMANCE_METRICS))
    max_drop: float = _spec(0.05, _number(0.0, 1.0))
    min_labelled_rows: int = _spec(300, _int_at_least(1))
    consecutive_chunks: int = _spec(1, _int_at_least(1))


@dataclass(frozen=True)
class MultivariateRule:
    enabled: bool = _spec(True, _bool)
    consecutive_chunks: int = _spec(2, _int_at_least(1))


@dataclass(frozen=True)
class UnivariateRule:
    enabled: bool = _spec(False, _bool)
    methods: tuple[str, ...] = _spec(("kolmogorov_smirnov", "chi2"), _names(UNIVARIATE_METHODS))
    consecutive_chunks: int = _spec(3, _int_at_least(1))


@dataclass(frozen=True)
class ShareRule:
    """A share of rows per chunk and feature above ``max_share`` (unseen values, out of range)."""

    enabled: bool = _spec(True, _bool)
    max_share: float = _spec(0.01, _number(0.0, 1.0))
    consecutive_chunks: int = _spec(1, _int_at_least(1))


@dataclass(frozen=True)
class MissingValuesRule:
    enabled: bool = _spec(True, _bool)
    max_increase: float = _spec(0.05, _number(0.0, 1.0))
    consecutive_chunks: int = _spec(1, _int_at_least(1))


@dataclass(frozen=True)
class RuleParams:
    min_complete_chunks: int = _spec(2, _int_at_least(1))
    psi: PSIRule = field(default_factory=PSIRule, metadata=_NESTED)
    estimated_performance: EstimatedPerformanceRule = field(
        default_factory=EstimatedPerformanceRule, metadata=_NESTED
    )
    realised_performance: RealisedPerformanceRule = field(
        default_factory=RealisedPerformanceRule, metadata=_NESTED
    )
    multivariate: MultivariateRule = field(default_factory=MultivariateRule, metadata=_NESTED)
    univariate: UnivariateRule = field(default_factory=UnivariateRule, metadata=_NESTED)
    unseen_categories: ShareRule = field(default_factory=ShareRule, metadata=_NESTED)
    missing_values: MissingValuesRule = field(default_factory=MissingValuesRule, metadata=_NESTED)
    out_of_range: ShareRule = field(default_factory=ShareRule, metadata=_NESTED)


@dataclass(frozen=True)
class DriftParams:
    """The whole ``drift`` block. ``DriftParams()`` is the documented defaults."""

    # Which logged records are analysed: those after the labelled history (train, test and
    # reference windows; a model retrained on newer data does not re-judge the traffic it was
    # trained on), or all of them.
    analysis_start: str = _spec("after_reference", _choice(ANALYSIS_STARTS))
    baseline: BaselineParams = field(default_factory=BaselineParams, metadata=_NESTED)
    chunking: ChunkingParams = field(default_factory=ChunkingParams, metadata=_NESTED)
    psi: PSIParams = field(default_factory=PSIParams, metadata=_NESTED)
    nannyml: NannyMLParams = field(default_factory=NannyMLParams, metadata=_NESTED)
    rules: RuleParams = field(default_factory=RuleParams, metadata=_NESTED)

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> DriftParams:
        """From the ``drift`` parameters mapping (``None`` or ``{}`` gives the defaults)."""
        try:
            return _parse(cls, params, "drift")
        except DriftConfigError:
            raise
        except (TypeError, ValueError) as exc:  # a __post_init__ check of a nested section
            raise DriftConfigError(str(exc)) from exc

    def to_dict(self) -> dict[str, Any]:
        """The resolved parameters (defaults filled in), JSON-serialisable."""
        return _as_dict(self)


def _as_dict(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return {f.name: _as_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple):
        return list(obj)
    return obj
