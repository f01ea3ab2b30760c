"""A vectorised customer-churn simulator with known ground truth and named drift scenarios.

Every row is a customer snapshot at ``event_time`` and ``churned`` says whether that customer
left within the following label window. Labels are Bernoulli draws from a known probability
(``true_churn_probability``), a nonlinear function of the features with interactions, so the
simulator can report the Bayes-optimal score for every row.

Production records follow one drift scenario (see ``SCENARIOS``); ``DriftManifest`` records
what was drifted, from when and by how much, so drift detection can be scored against it.

This module is plain numpy/pandas and does not import Kedro.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

ID_COLUMN = "customer_id"
TIMESTAMP_COLUMN = "event_time"
TARGET_COLUMN = "churned"
TRUE_PROBABILITY_COLUMN = "true_churn_probability"
LABEL_AVAILABLE_COLUMN = "label_available_at"

CONTRACT_TYPES = ("month_to_month", "one_year", "two_year")
PAYMENT_METHODS = ("electronic_check", "mailed_check", "bank_transfer", "credit_card")
INTERNET_SERVICES = ("dsl", "fiber_optic", "none")
REGIONS = ("north", "south", "east", "west")
YES_NO = ("yes", "no")

NUMERIC_FEATURES = (
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "num_support_tickets",
    "late_payments_12m",
    "age",
    "num_services",
    "num_dependents",
    "avg_monthly_gb",
    "days_since_last_login",
    "satisfaction_score",
)
CATEGORICAL_FEATURES = (
    "contract_type",
    "payment_method",
    "internet_service",
    "region",
    "paperless_billing",
    "tech_support",
)
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES

SCENARIOS = (
    "none",
    "covariate_shift",
    "new_category",
    "concept_drift",
    "gradual",
    "missing_values",
)

# Intercept tuned so that about a quarter of customers churn (see tests/test_simulation.py).
_INTERCEPT = -2.5
# Logit effect of a payment method that did not exist in the history (new_category scenario).
_NEW_CATEGORY_EFFECT = 0.8


class SimulationConfigError(ValueError):
    """The simulation parameters are inconsistent; the message names the parameter."""


@dataclass(frozen=True)
class ScenarioSpec:
    """One drift scenario applied to the production records."""

    name: str = "none"
    onset: float = 0.5
    magnitude: float = 0.0
    feature: str | None = None
    new_category_value: str | None = None


@dataclass
class DriftManifest:
    """Ground truth about the drift in ``raw_production``: what, where, from when, how much."""

    scenario: str
    seed: int
    onset_fraction: float
    onset_time: str
    production_start: str
    production_end: str
    n_production: int
    n_rows_affected: int
    magnitude: float
    magnitude_unit: str
    drifted_features: list[str] = field(default_factory=list)
    derived_features_affected: list[str] = field(default_factory=list)
    concept_changed: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _pick(rng: np.random.Generator, values: tuple[str, ...], probs: np.ndarray, n: int):
    """Draw categories as an object array whose elements share one string object per value."""
    codes = rng.choice(len(values), size=n, p=probs)
    return np.asarray(values, dtype=object)[codes]


def _row_probs(rng: np.random.Generator, n: int, base: list[float]) -> np.ndarray:
    return np.tile(np.asarray(base) / np.sum(base), (n, 1))


def _choice_per_row(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """Vectorised categorical draw with a different probability vector per row."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None]
    return np.minimum((u > cum).sum(axis=1), probs.shape[1] - 1)


def generate_features(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Draw ``n`` customers' features with realistic dependencies between them."""
    contract = _pick(rng, CONTRACT_TYPES, np.array([0.52, 0.24, 0.24]), n)
    is_m2m = contract == "month_to_month"
    is_two_year = contract == "two_year"

    internet = _pick(rng, INTERNET_SERVICES, np.array([0.35, 0.45, 0.20]), n)
    is_fiber = internet == "fiber_optic"
    no_internet = internet == "none"

    # Long contracts go with long tenure.
    tenure_scale = np.where(is_m2m, 14.0, np.where(is_two_year, 40.0, 28.0))
    tenure = np.minimum(np.floor(rng.gamma(1.4, tenure_scale / 1.4)), 72).astype(np.int64)

    num_services = rng.binomial(8, np.where(no_internet, 0.15, 0.45)).astype(np.int64)
    base_charge = np.where(no_internet, 20.0, np.where(is_fiber, 75.0, 48.0))
    monthly = base_charge + 4.5 * num_services + rng.normal(0.0, 6.0, n)
    monthly = np.round(np.clip(monthly, 18.0, 150.0), 2)
    # Total charges accumulate the monthly bill over the tenure, with price changes on the way.
    total = np.round(
        monthly * np.maximum(tenure, 0) * rng.uniform(0.9, 1.05, n)
        + monthly * rng.uniform(0, 1, n),
        2,
    )

    # Electronic cheques are more common on monthly contracts.
    pay_probs = np.where(
        is_m2m[:, None],
        np.array([0.45, 0.20, 0.17, 0.18])[None, :],
        np.array([0.18, 0.22, 0.30, 0.30])[None, :],
    )
    payment = np.asarray(PAYMENT_METHODS, dtype=object)[_choice_per_row(rng, pay_probs)]
    is_echeck = payment == "electronic_check"

    tickets = rng.poisson(0.7 + 0.6 * is_fiber + 0.4 * is_m2m).astype(np.int64)
    late = rng.poisson(0.25 + 0.8 * is_echeck).astype(np.int64)
    age = np.clip(np.round(rng.normal(46.0, 15.0, n)), 18, 90).astype(np.int64)
    dependents = np.minimum(rng.poisson(0.8, n), 6).astype(np.int64)
    gb = np.where(no_internet, 0.0, np.round(rng.lognormal(np.where(is_fiber, 4.6, 3.9), 0.6), 1))
    last_login = np.round(rng.exponential(9.0 + 10.0 * is_m2m), 1)
    satisfaction = np.round(
        np.clip(rng.normal(3.7 - 0.35 * np.minimum(tickets, 5), 0.75), 1.0, 5.0), 1
    )

    region = _pick(rng, REGIONS, np.array([0.25, 0.3, 0.25, 0.2]), n)
    paperless = _pick(rng, YES_NO, np.array([0.6, 0.4]), n)
    tech_yes = rng.random(n) < np.where(no_internet, 0.05, np.where(is_two_year, 0.55, 0.3))
    tech_support = np.where(tech_yes, "yes", "no").astype(object)

    return pd.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": total,
            "num_support_tickets": tickets,
            "late_payments_12m": late,
            "age": age,
            "num_services": num_services,
            "num_dependents": dependents,
            "avg_monthly_gb": gb,
            "days_since_last_login": last_login,
            "satisfaction_score": satisfaction,
            "contract_type": contract,
            "payment_method": payment,
            "internet_service": internet,
            "region": region,
            "paperless_billing": paperless,
            "tech_support": tech_support,
        }
    )


def churn_logit(features: pd.DataFrame, concept_strength: np.ndarray | float = 0.0) -> np.ndarray:
    """The true log-odds of churn: nonlinear, with interactions.

    ``concept_strength`` (0 = the history's relation) blends in a changed relation for the
    concept-drift scenario: price sensitivity rises and long tenure stops protecting.
    """
    f = features
    contract = f["contract_type"].to_numpy()
    is_m2m = contract == "month_to_month"
    is_two_year = contract == "two_year"
    is_fiber = f["internet_service"].to_numpy() == "fiber_optic"
    payment = f["payment_method"].to_numpy()
    no_tech = f["tech_support"].to_numpy() == "no"

    tenure = f["tenure_months"].to_numpy(dtype=float)
    monthly = f["monthly_charges"].to_numpy(dtype=float)
    tickets = f["num_support_tickets"].to_numpy(dtype=float)
    late = f["late_payments_12m"].to_numpy(dtype=float)
    age = f["age"].to_numpy(dtype=float)
    services = f["num_services"].to_numpy(dtype=float)
    dependents = f["num_dependents"].to_numpy(dtype=float)
    last_login = f["days_since_last_login"].to_numpy(dtype=float)
    satisfaction = f["satisfaction_score"].to_numpy(dtype=float)

    z = np.full(len(f), _INTERCEPT)
    z += np.where(is_m2m, 1.1, np.where(is_two_year, -1.4, -0.3))
    z += -0.55 * np.log1p(tenure)
    # Fiber customers on expensive plans are the price-sensitive ones.
    z += 2.0 * is_fiber * _sigmoid((monthly - 90.0) / 4.0)
    # Support tickets hurt gradually, then sharply from the third one, more so without tech support.
    z += 0.1 * tickets + 1.3 * (tickets >= 3) + 0.3 * tickets * no_tech
    z += 0.45 * (payment == "electronic_check")
    z += _NEW_CATEGORY_EFFECT * (payment == "digital_wallet")
    z += 0.5 * late * is_m2m
    z += 1.6 * _sigmoid((2.6 - satisfaction) * 3.0)
    z += 1.5 * _sigmoid((last_login - 28.0) / 3.0)
    # New customers on expensive plans leave quickly; the effect fades with tenure.
    z += 1.2 * _sigmoid((monthly - 80.0) / 8.0) * np.exp(-tenure / 6.0)
    z += 0.6 * ((age - 45.0) / 18.0) ** 2
    z += -0.12 * services - 0.18 * np.minimum(dependents, 3)
    z += 0.15 * (f["paperless_billing"].to_numpy() == "yes")
    z += 0.15 * (f["region"].to_numpy() == "south")

    strength = np.asarray(concept_strength, dtype=float)
    if np.any(strength != 0):
        changed = (
            1.2 * (monthly - 65.0) / 20.0  # price now matters for everyone
            + 0.55 * np.log1p(tenure)  # loyalty no longer protects
            - 1.0 * is_m2m  # monthly contracts stop being the risk marker
            + 0.6 * is_two_year
        )
        z = z + strength * changed
    return z


def draw_timestamps(
    rng: np.random.Generator, n: int, start: pd.Timestamp, days: float
) -> np.ndarray:
    """Uniform event times in ``[start, start + days)``, sorted, at second resolution."""
    offsets = np.sort(rng.integers(0, int(days * 86400), size=n))
    return (np.datetime64(start.to_datetime64(), "s") + offsets.astype("timedelta64[s]")).astype(
        "datetime64[ns]"
    )


def _onset_mask(times: np.ndarray, onset_time: np.datetime64) -> np.ndarray:
    return times >= onset_time


def _ramp(times: np.ndarray, onset_time: np.datetime64, end_time: np.datetime64) -> np.ndarray:
    """0 before the onset, rising linearly to 1 at the end of the window."""
    span = (end_time - onset_time).astype("timedelta64[s]").astype(float)
    elapsed = (times - onset_time).astype("timedelta64[s]").astype(float)
    return np.clip(elapsed / max(span, 1.0), 0.0, 1.0)


def _validate_scenario(spec: ScenarioSpec) -> None:
    if spec.name not in SCENARIOS:
        raise SimulationConfigError(
            f"simulation.scenario: unknown scenario {spec.name!r}; choose one of {', '.join(SCENARIOS)}"
        )
    if not 0.0 <= spec.onset <= 1.0:
        raise SimulationConfigError(
            f"simulation.onset must be a fraction of the production window in [0, 1], got {spec.onset}"
        )
    if spec.name in ("covariate_shift", "gradual"):
        if spec.feature not in NUMERIC_FEATURES:
            raise SimulationConfigError(
                f"simulation.scenarios.{spec.name}.feature must be a numeric feature "
                f"({', '.join(NUMERIC_FEATURES)}), got {spec.feature!r}"
            )
    if spec.name == "missing_values" and spec.feature not in FEATURES:
        raise SimulationConfigError(
            f"simulation.scenarios.missing_values.feature must be a feature, got {spec.feature!r}"
        )
    if spec.name in ("new_category", "missing_values") and not 0.0 < spec.magnitude <= 1.0:
        raise SimulationConfigError(
            f"simulation.scenarios.{spec.name}.magnitude is a fraction of rows in (0, 1], "
            f"got {spec.magnitude}"
        )
    if spec.name == "new_category":
        if spec.feature not in CATEGORICAL_FEATURES:
            raise SimulationConfigError(
                f"simulation.scenarios.new_category.feature must be a categorical feature "
                f"({', '.join(CATEGORICAL_FEATURES)}), got {spec.feature!r}"
            )
        if not spec.new_category_value:
            raise SimulationConfigError("simulation.scenarios.new_category.value must be set")


def _recompute_total_charges(df: pd.DataFrame, mask: np.ndarray, old: pd.DataFrame) -> None:
    """Keep total charges consistent with a shifted monthly bill or tenure."""
    ratio = df.loc[mask, "monthly_charges"].to_numpy() / old.loc[mask, "monthly_charges"].to_numpy()
    df.loc[mask, "total_charges"] = np.round(old.loc[mask, "total_charges"].to_numpy() * ratio, 2)


@dataclass
class _ScenarioEffect:
    """What a scenario did: the true features (labels follow them), what records show, and why."""

    truth: pd.DataFrame
    observed: pd.DataFrame
    affected: np.ndarray
    concept_strength: np.ndarray | float = 0.0
    drifted: list[str] = field(default_factory=list)
    derived: list[str] = field(default_factory=list)
    unit: str = "none"
    details: dict[str, Any] = field(default_factory=dict)


def _shift_effect(spec, features, times, onset_time, end_time, reference_std) -> _ScenarioEffect:
    col = spec.feature
    std = float(reference_std[col])
    active = _onset_mask(times, onset_time)
    if spec.name == "covariate_shift":
        weight = active.astype(float)
    else:
        weight = _ramp(times, onset_time, end_time)
    before = features.copy()
    shifted = features[col].to_numpy(dtype=float) + spec.magnitude * std * weight
    if pd.api.types.is_integer_dtype(features[col]):
        shifted = np.maximum(np.round(shifted), 0).astype(np.int64)
    features[col] = shifted
    derived = []
    if col == "monthly_charges":
        _recompute_total_charges(features, active, before)
        derived.append("total_charges")
    details: dict[str, Any] = {
        "feature": col,
        "reference_std": std,
        "shift_at_full_strength": spec.magnitude * std,
    }
    if spec.name == "gradual":
        details["ramp"] = (
            "linear from 0 at the onset to the full magnitude at the end of the window"
        )
    return _ScenarioEffect(
        features,
        features,
        weight > 0,
        0.0,
        [col],
        derived,
        "reference standard deviations",
        details,
    )


def _apply_scenario(
    spec: ScenarioSpec,
    features: pd.DataFrame,
    times: np.ndarray,
    onset_time: np.datetime64,
    end_time: np.datetime64,
    reference_std: dict[str, float],
    drift_rng: np.random.Generator,
) -> _ScenarioEffect:
    n = len(features)
    active = _onset_mask(times, onset_time)
    share = "fraction of rows after the onset"
    if spec.name in ("covariate_shift", "gradual"):
        return _shift_effect(spec, features, times, onset_time, end_time, reference_std)
    if spec.name == "new_category":
        hit = active & (drift_rng.random(n) < spec.magnitude)
        features.loc[hit, spec.feature] = spec.new_category_value
        details = {"feature": spec.feature, "new_value": spec.new_category_value}
        return _ScenarioEffect(features, features, hit, 0.0, [spec.feature], [], share, details)
    if spec.name == "concept_drift":
        details = {
            "change": "price sensitivity for everyone, tenure no longer protects, "
            "contract type matters less; feature distributions unchanged"
        }
        unit = "strength of the changed feature-label relation (logit scale)"
        return _ScenarioEffect(
            features, features, active, spec.magnitude * active, [], [], unit, details
        )
    if spec.name == "missing_values":
        col = spec.feature
        hit = active & (drift_rng.random(n) < spec.magnitude)
        observed = features.copy()
        numeric = col in NUMERIC_FEATURES
        observed[col] = observed[col].astype(float if numeric else object)
        observed.loc[hit, col] = np.nan if numeric else None
        return _ScenarioEffect(features, observed, hit, 0.0, [col], [], share, {"feature": col})
    return _ScenarioEffect(features, features, np.zeros(n, dtype=bool))


def simulate_history(
    n: int, seed: int, start: str, days: float, label_delay_days: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Labelled history: (events with features and target, oracle with true probabilities)."""
    if n < 1:
        raise SimulationConfigError(f"simulation.n_events must be at least 1, got {n}")
    rng = np.random.default_rng([seed, 0])
    features = generate_features(rng, n)
    prob = _sigmoid(churn_logit(features))
    label = (rng.random(n) < prob).astype(np.int8)
    times = draw_timestamps(rng, n, pd.Timestamp(start), days)
    events = _assemble(np.arange(n, dtype=np.int64), times, features, label)
    oracle = _oracle(events, prob, label_delay_days)
    logger.info(
        "Simulated %d history rows from %s over %g days; churn rate %.3f",
        n,
        start,
        days,
        label.mean(),
    )
    return events, oracle


def simulate_production(
    n: int,
    seed: int,
    start: str,
    days: float,
    label_delay_days: float,
    spec: ScenarioSpec,
    reference_std: dict[str, float],
    id_offset: int,
) -> tuple[pd.DataFrame, pd.DataFrame, DriftManifest]:
    """Production records under one drift scenario: (records, oracle, manifest)."""
    _validate_scenario(spec)
    if n < 1:
        raise SimulationConfigError(f"simulation.n_production must be at least 1, got {n}")
    rng = np.random.default_rng([seed, 1])
    features = generate_features(rng, n)
    start_ts = pd.Timestamp(start)
    times = draw_timestamps(rng, n, start_ts, days)
    end_time = np.datetime64((start_ts + pd.Timedelta(days=days)).to_datetime64(), "ns")
    onset_time = np.datetime64(
        (start_ts + pd.Timedelta(days=days * spec.onset)).to_datetime64(), "ns"
    )
    drift_rng = np.random.default_rng([seed, 2])

    effect = _apply_scenario(spec, features, times, onset_time, end_time, reference_std, drift_rng)
    features, observed, affected = effect.truth, effect.observed, effect.affected

    # Labels follow the true, complete features: a broken feed hides values, not the outcome.
    prob = _sigmoid(churn_logit(features, effect.concept_strength))
    label = (rng.random(n) < prob).astype(np.int8)
    ids = np.arange(id_offset, id_offset + n, dtype=np.int64)
    records = _assemble(ids, times, observed, label)
    oracle = _oracle(records, prob, label_delay_days)
    manifest = DriftManifest(
        scenario=spec.name,
        seed=seed,
        onset_fraction=spec.onset,
        onset_time=str(pd.Timestamp(onset_time)),
        production_start=str(start_ts),
        production_end=str(pd.Timestamp(end_time)),
        n_production=n,
        n_rows_affected=int(affected.sum()),
        magnitude=float(spec.magnitude) if spec.name != "none" else 0.0,
        magnitude_unit=effect.unit,
        drifted_features=effect.drifted,
        derived_features_affected=effect.derived,
        concept_changed=spec.name == "concept_drift",
        details=effect.details,
    )
    logger.info(
        "Simulated %d production rows under scenario %r (%d rows affected from %s)",
        n,
        spec.name,
        manifest.n_rows_affected,
        manifest.onset_time,
    )
    return records, oracle, manifest


def _assemble(
    ids: np.ndarray, times: np.ndarray, features: pd.DataFrame, label: np.ndarray
) -> pd.DataFrame:
    out = pd.DataFrame({ID_COLUMN: ids, TIMESTAMP_COLUMN: times})
    out = pd.concat([out, features.reset_index(drop=True)], axis=1)
    out[TARGET_COLUMN] = label
    return out


def _oracle(records: pd.DataFrame, prob: np.ndarray, label_delay_days: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            ID_COLUMN: records[ID_COLUMN].to_numpy(),
            TRUE_PROBABILITY_COLUMN: prob,
            LABEL_AVAILABLE_COLUMN: records[TIMESTAMP_COLUMN].to_numpy()
            + np.timedelta64(int(label_delay_days * 86400), "s"),
        }
    )


def feature_std(events: pd.DataFrame) -> dict[str, float]:
    """Standard deviation of each numeric feature: the unit of covariate-shift magnitudes."""
    return {c: float(events[c].std()) for c in NUMERIC_FEATURES}


@dataclass(frozen=True)
class SimulationParams:
    """The ``simulation`` block of ``parameters_simulation.yml``, checked."""

    seed: int
    n_events: int
    n_production: int
    history_start: str
    history_days: float
    production_days: float
    label_delay_days: float
    scenario: ScenarioSpec

    @property
    def production_start(self) -> str:
        return str(pd.Timestamp(self.history_start) + pd.Timedelta(days=self.history_days))


_PARAM_KEYS = {
    "enabled",
    "seed",
    "n_events",
    "n_production",
    "history_start",
    "history_days",
    "production_days",
    "label_delay_days",
    "scenario",
    "onset",
    "scenarios",
}


def parse_simulation_params(params: dict[str, Any]) -> SimulationParams:
    """Check the simulation parameters and resolve the chosen scenario's settings."""
    missing = sorted(_PARAM_KEYS - {"enabled"} - set(params))
    if missing:
        raise SimulationConfigError(f"simulation: missing parameter(s) {', '.join(missing)}")
    unknown = sorted(set(params) - _PARAM_KEYS)
    if unknown:
        raise SimulationConfigError(f"simulation: unknown parameter(s) {', '.join(unknown)}")
    for key in ("seed", "n_events", "n_production"):
        if not isinstance(params[key], int) or isinstance(params[key], bool):
            raise SimulationConfigError(f"simulation.{key} must be an integer, got {params[key]!r}")
    for key in ("history_days", "production_days", "label_delay_days"):
        if not _positive_number(params[key], allow_zero=key == "label_delay_days"):
            raise SimulationConfigError(
                f"simulation.{key} must be a positive number, got {params[key]!r}"
            )
    try:
        pd.Timestamp(params["history_start"])
    except (ValueError, TypeError) as exc:
        raise SimulationConfigError(
            f"simulation.history_start must be a date, got {params['history_start']!r}"
        ) from exc
    name = params["scenario"]
    if name not in SCENARIOS:
        raise SimulationConfigError(
            f"simulation.scenario: unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}"
        )
    settings = dict((params.get("scenarios") or {}).get(name) or {})
    allowed = {"feature", "magnitude", "value"}
    if set(settings) - allowed:
        raise SimulationConfigError(
            f"simulation.scenarios.{name}: unknown key(s) {sorted(set(settings) - allowed)}; "
            f"allowed: {sorted(allowed)}"
        )
    if name != "none" and "magnitude" not in settings:
        raise SimulationConfigError(f"simulation.scenarios.{name}.magnitude is missing")
    magnitude = settings.get("magnitude", 0.0)
    if not _positive_number(magnitude, allow_zero=True):
        raise SimulationConfigError(
            f"simulation.scenarios.{name}.magnitude must be a non-negative number, got {magnitude!r}"
        )
    onset = params["onset"]
    if not _positive_number(onset, allow_zero=True):
        raise SimulationConfigError(f"simulation.onset must be a number in [0, 1], got {onset!r}")
    spec = ScenarioSpec(
        name=name,
        onset=float(onset),
        magnitude=float(magnitude),
        feature=settings.get("feature"),
        new_category_value=settings.get("value"),
    )
    _validate_scenario(spec)
    return SimulationParams(
        seed=params["seed"],
        n_events=params["n_events"],
        n_production=params["n_production"],
        history_start=str(params["history_start"]),
        history_days=float(params["history_days"]),
        production_days=float(params["production_days"]),
        label_delay_days=float(params["label_delay_days"]),
        scenario=spec,
    )


def _positive_number(value: Any, *, allow_zero: bool) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return value >= 0 if allow_zero else value > 0
