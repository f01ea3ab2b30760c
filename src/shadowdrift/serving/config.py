"""The service's configuration: ``serving`` and ``schema`` parameters, read with Kedro's loader.

The service reads the same configuration as ``kedro run``: ``conf/base/parameters*.yml`` merged
with the run environment (``conf/local`` by default, ``KEDRO_ENV`` to choose another), through
Kedro's ``OmegaConfigLoader``. Nothing about the data schema is repeated in code.

Where the configuration is found: ``SHADOWDRIFT_PROJECT_PATH`` if set, else the working
directory (``bentoml serve`` runs from the project root, or from the ``src`` folder of a built
Bento, which carries ``conf/base``). Relative data paths (the prediction log, the ground-truth
log) are anchored at ``SHADOWDRIFT_DATA_ROOT`` if set, else at that project path.

Light on purpose: BentoML's arbiter process imports the service module, which reads the worker
count and timeouts from here, so this module imports neither pandas nor scikit-learn (Kedro's config loader only).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from shadowdrift.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS

logger = logging.getLogger(__name__)

PROJECT_PATH_ENV = "SHADOWDRIFT_PROJECT_PATH"
DATA_ROOT_ENV = "SHADOWDRIFT_DATA_ROOT"
KEDRO_ENV = "KEDRO_ENV"

ACCEPT = "accept"
REJECT = "reject"
IGNORE = "ignore"
SHADOW_MODES = ("process", "thread", "service")
RATE_LIMIT_PEER = "peer"
RATE_LIMIT_HEADER_PREFIX = "header:"
RELOAD_SOURCES = ("store", "registry")
# serving.log.durability (the names are prediction_wal.DURABILITY_MODES; this module stays light)
BUFFERED = "buffered"
ACKNOWLEDGED = "acknowledged"

# Buckets of the request-latency histograms (ours and BentoML's, service.py): the 200 ms latency
# SLO (serving.canary.rollback.max_p95_latency_s, monitoring/rules) is a bucket boundary, so a
# p95 around it is not interpolated over 100-250 ms.
REQUEST_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class ServingConfigError(ValueError):
    """The serving configuration is malformed; the message names the key."""


@dataclass(frozen=True)
class RequestPolicy:
    """What ``POST /predict`` accepts (see docs/serving.md, "Validation")."""

    max_records: int = 5_000
    max_body_bytes: int = 20_000_000
    unseen_categories: str = ACCEPT
    missing_values: str = ACCEPT
    unknown_fields: str = REJECT
    # characters in a string value (categorical feature); longer -> 422 naming the field
    max_string_length: int = 256


@dataclass(frozen=True)
class CircuitBreakerSettings:
    """When the challenger is skipped after failing (docs/serving.md, "Circuit breaker")."""

    failures: int = 5
    cool_down_s: float = 30.0


@dataclass(frozen=True)
class ShadowSettings:
    """How the challenger runs beside the champion."""

    enabled: bool = True
    mode: str = "process"
    sample_rate: float = 1.0
    queue_records: int = 10_000
    max_batch_records: int = 2_000
    max_delay_s: float = 10.0
    batch_wait_s: float = 0.05
    shutdown_grace_s: float = 5.0
    service_max_in_flight: int = 64
    # a challenger call that takes longer counts as a failure (mode process: the child is
    # stopped and started again)
    call_timeout_s: float = 5.0
    # mode process: the child's scheduling priority (nice 0-19): under CPU contention the
    # champion comes first, the challenger gets what is left
    process_nice: int = 10
    # mode process: how long the child may take to start and load the challenger
    process_start_timeout_s: float = 120.0
    circuit_breaker: CircuitBreakerSettings = field(default_factory=CircuitBreakerSettings)


@dataclass(frozen=True)
class AdmissionSettings:
    """How much work a worker takes on at once (docs/serving.md, "Overload")."""

    # POST requests being handled at once per worker; beyond -> 503 with Retry-After at once
    max_in_flight: int = 8
    retry_after_s: int = 1


@dataclass(frozen=True)
class RateLimitSettings:
    """An optional token bucket per client and worker: 429 with Retry-After beyond it."""

    enabled: bool = False
    # "peer" (the client's address) or "header:<Name>" (e.g. header:X-Client-ID)
    key: str = RATE_LIMIT_PEER
    requests_per_s: float = 50.0
    burst: int = 100
    # buckets kept per worker; the least recently seen client is forgotten first
    max_clients: int = 10_000

    @property
    def header(self) -> str | None:
        """The header naming the client (lower case), or None when keyed on the peer."""
        if self.key.startswith(RATE_LIMIT_HEADER_PREFIX):
            return self.key[len(RATE_LIMIT_HEADER_PREFIX) :].strip().lower()
        return None


@dataclass(frozen=True)
class CanaryRollbackSettings:
    """When the watcher sets the canary's share to 0 (docs/serving.md, "Canary")."""

    enabled: bool = True
    # the figures are computed over the canary requests of the last window_s seconds ...
    window_s: float = 60.0
    # ... and a breach must be seen at every check for for_s seconds before the rollback
    for_s: float = 30.0
    check_interval_s: float = 1.0
    # fewer canary records in the window: not judged (and a breach streak starts over)
    min_records: int = 20
    max_p95_latency_s: float = 0.2
    max_error_rate: float = 0.01
    max_disagreement: float = 0.2


@dataclass(frozen=True)
class CanarySettings:
    """A share of records answered by the challenger, chosen by the record's id."""

    fraction: float = 0.0
    # a canary call slower than this is answered by the champion (and counts as an error)
    timeout_s: float = 1.0
    # the rollback, shared by every worker (and kept across restarts for that challenger)
    state_file: Path = Path("data/07_model_output/canary_rollback.json")
    rollback: CanaryRollbackSettings = field(default_factory=CanaryRollbackSettings)


@dataclass(frozen=True)
class LogSettings:
    """Where a durable log lives and how often its writer flushes."""

    path: Path
    flush_interval_s: float = 1.0


@dataclass(frozen=True)
class DurabilitySettings:
    """When an answer is given relative to its records reaching the disk (docs/operations.md,
    "Durability of the logs"): ``buffered`` answers at once and flushes about every
    ``flush_interval_s``; ``acknowledged`` answers once the records are in a write-ahead log."""

    mode: str = BUFFERED
    # a write-ahead segment is closed at this size or age; closed segments are deleted once
    # the writer has flushed their records into part files
    segment_max_bytes: int = 64 << 20
    segment_max_age_s: float = 1.0

    @property
    def acknowledged(self) -> bool:
        return self.mode == ACKNOWLEDGED


@dataclass(frozen=True)
class ServingSettings:
    """Everything the service needs from configuration, already checked."""

    project_path: Path
    schema: Mapping[str, Any]
    models: Mapping[str, str | None]
    registered_model_name: str
    bento_model_prefix: str
    # where `bentoml serve` listens unless --host (or BENTOML_HOST) says otherwise
    host: str = "127.0.0.1"
    workers: int = 1
    threads: int = 1
    model_threads: int = 1
    gil_switch_interval_s: float = 0.0005
    timeout_s: float = 30.0
    access_log: bool = False
    single_record_fast_path: bool = True
    # requests of at least this many records are scored on one of `batch_threads` threads, so
    # that the event loop parses the next request meanwhile (0: always on the event loop)
    batch_thread_min_records: int = 64
    batch_threads: int = 2
    request: RequestPolicy = field(default_factory=RequestPolicy)
    shadow: ShadowSettings = field(default_factory=ShadowSettings)
    canary: CanarySettings = field(default_factory=CanarySettings)
    admission: AdmissionSettings = field(default_factory=AdmissionSettings)
    rate_limit: RateLimitSettings = field(default_factory=RateLimitSettings)
    # after SIGTERM: new requests are answered 503 + Connection: close this long, then the
    # worker stops (requests in flight are answered and logged either way)
    shutdown_drain_s: float = 2.0
    prediction_log: LogSettings = field(
        default_factory=lambda: LogSettings(Path("data/07_model_output/prediction_log"))
    )
    ground_truth: LogSettings = field(
        default_factory=lambda: LogSettings(Path("data/07_model_output/ground_truth"))
    )
    feedback_max_items: int = 10_000
    log_durability: DurabilitySettings = field(default_factory=DurabilitySettings)
    reload_token_env: str = "SHADOWDRIFT_RELOAD_TOKEN"
    reload_token: str | None = None
    # every worker checks the model store this often and reloads when `:latest` moved (0: off)
    reload_watch_interval_s: float = 0.0

    def reload_token_value(self) -> str | None:
        """The configured reload token: the environment variable wins over the parameter."""
        token = os.environ.get(self.reload_token_env) or self.reload_token
        return token or None


def find_project_path() -> Path:
    """``SHADOWDRIFT_PROJECT_PATH``, or the nearest directory from the cwd up holding ``conf/``."""
    explicit = os.environ.get(PROJECT_PATH_ENV)
    if explicit:
        path = Path(explicit).expanduser().resolve()
        if not (path / "conf").is_dir():
            raise ServingConfigError(f"{PROJECT_PATH_ENV}={explicit}: no conf/ directory there")
        return path
    cwd = Path.cwd().resolve()
    for candidate in (cwd, *cwd.parents):
        if (candidate / "conf" / "base").is_dir():
            return candidate
    raise ServingConfigError(
        f"no conf/base directory in {cwd} or its parents: start the service from the project "
        f"root or set {PROJECT_PATH_ENV}"
    )


def _config_loader(project_path: Path, env: str | None, **extra: Any) -> Any:
    """Kedro's loader with the project's own resolvers (``settings.CONFIG_LOADER_ARGS``)."""
    resolvers = {
        **CONFIG_LOADER_ARGS.get("custom_resolvers", {}),
        # the directory we were pointed at, not Kedro's guess from the working directory
        "project_path": lambda: str(project_path),
    }
    if "merge_strategy" in CONFIG_LOADER_ARGS:
        extra.setdefault("merge_strategy", CONFIG_LOADER_ARGS["merge_strategy"])
    base_env = CONFIG_LOADER_ARGS.get("base_env", "base")
    default_env = CONFIG_LOADER_ARGS.get("default_run_env", "local")
    if not (project_path / "conf" / default_env).is_dir():
        # a built Bento carries conf/base only (conf/local holds secrets); Kedro would refuse
        # the missing default environment, and reading base alone is what is meant
        default_env = base_env
    return CONFIG_LOADER_CLASS(
        conf_source=str(project_path / "conf"),
        base_env=base_env,
        default_run_env=default_env,
        env=env or os.environ.get(KEDRO_ENV) or None,
        custom_resolvers=resolvers,
        **extra,
    )


def load_parameters(project_path: Path, env: str | None = None) -> dict[str, Any]:
    """All parameters of ``conf/base`` merged with ``conf/<env>`` (``KEDRO_ENV``, else local)."""
    with warnings.catch_warnings():
        # kedro 1.7 calls omegaconf's deprecated resolver API on every loader
        warnings.simplefilter("ignore", UserWarning)
        return dict(_config_loader(project_path, env)["parameters"])


def _section(params: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = params.get(key.rsplit(".", 1)[-1]) if "." in key else params.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ServingConfigError(f"{key} must be a mapping, got {type(value).__name__}")
    return value


def _positive_int(section: Mapping[str, Any], name: str, key: str, default: int) -> int:
    value = section.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ServingConfigError(f"{key}.{name} must be a positive integer, got {value!r}")
    return value


def _non_negative_int(section: Mapping[str, Any], name: str, key: str, default: int) -> int:
    value = section.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ServingConfigError(f"{key}.{name} must be an integer >= 0, got {value!r}")
    return value


def _positive_float(section: Mapping[str, Any], name: str, key: str, default: float) -> float:
    value = section.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ServingConfigError(f"{key}.{name} must be a positive number, got {value!r}")
    return float(value)


def _non_negative_float(section: Mapping[str, Any], name: str, key: str, default: float) -> float:
    value = section.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ServingConfigError(f"{key}.{name} must be a number >= 0, got {value!r}")
    return float(value)


def _choice(
    section: Mapping[str, Any], name: str, key: str, choices: tuple[str, ...], default: str
) -> str:
    value = section.get(name, default)
    if value not in choices:
        raise ServingConfigError(f"{key}.{name} must be one of {list(choices)}, got {value!r}")
    return value


def _boolean(section: Mapping[str, Any], name: str, key: str, default: bool) -> bool:
    value = section.get(name, default)
    if not isinstance(value, bool):
        raise ServingConfigError(f"{key}.{name} must be true or false, got {value!r}")
    return value


def _data_path(value: Any, key: str, project_path: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ServingConfigError(f"{key} must be a directory path, got {value!r}")
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    root = os.environ.get(DATA_ROOT_ENV)
    return (Path(root).expanduser() if root else project_path) / path


def _parse_request(section: Mapping[str, Any]) -> RequestPolicy:
    key = "serving.request"
    return RequestPolicy(
        max_records=_positive_int(section, "max_records", key, RequestPolicy.max_records),
        max_body_bytes=_positive_int(section, "max_body_bytes", key, RequestPolicy.max_body_bytes),
        unseen_categories=_choice(section, "unseen_categories", key, (ACCEPT, REJECT), ACCEPT),
        missing_values=_choice(section, "missing_values", key, (ACCEPT, REJECT), ACCEPT),
        unknown_fields=_choice(section, "unknown_fields", key, (REJECT, IGNORE), REJECT),
        max_string_length=_positive_int(
            section, "max_string_length", key, RequestPolicy.max_string_length
        ),
    )


def _parse_breaker(section: Mapping[str, Any]) -> CircuitBreakerSettings:
    key = "serving.shadow.circuit_breaker"
    defaults = CircuitBreakerSettings()
    return CircuitBreakerSettings(
        failures=_positive_int(section, "failures", key, defaults.failures),
        cool_down_s=_positive_float(section, "cool_down_s", key, defaults.cool_down_s),
    )


def _parse_admission(section: Mapping[str, Any]) -> AdmissionSettings:
    key = "serving.admission"
    defaults = AdmissionSettings()
    return AdmissionSettings(
        max_in_flight=_positive_int(section, "max_in_flight", key, defaults.max_in_flight),
        retry_after_s=_positive_int(section, "retry_after_s", key, defaults.retry_after_s),
    )


def _parse_rate_limit(section: Mapping[str, Any]) -> RateLimitSettings:
    key = "serving.rate_limit"
    defaults = RateLimitSettings()
    client_key = section.get("key", defaults.key)
    if not isinstance(client_key, str) or not (
        client_key == RATE_LIMIT_PEER
        or (
            client_key.startswith(RATE_LIMIT_HEADER_PREFIX)
            and client_key[len(RATE_LIMIT_HEADER_PREFIX) :].strip()
        )
    ):
        raise ServingConfigError(
            f"{key}.key must be 'peer' or 'header:<Name>' (e.g. header:X-Client-ID), "
            f"got {client_key!r}"
        )
    return RateLimitSettings(
        enabled=_boolean(section, "enabled", key, defaults.enabled),
        key=client_key,
        requests_per_s=_positive_float(section, "requests_per_s", key, defaults.requests_per_s),
        burst=_positive_int(section, "burst", key, defaults.burst),
        max_clients=_positive_int(section, "max_clients", key, defaults.max_clients),
    )


def _parse_host(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ServingConfigError(
            f"serving.host must be an IP address (127.0.0.1 for this machine only, 0.0.0.0 "
            f"for every interface), got {value!r}"
        ) from None


def _parse_shadow(section: Mapping[str, Any]) -> ShadowSettings:
    key = "serving.shadow"
    defaults = ShadowSettings()
    return ShadowSettings(
        enabled=_boolean(section, "enabled", key, defaults.enabled),
        mode=_choice(section, "mode", key, SHADOW_MODES, defaults.mode),
        sample_rate=_share(section, "sample_rate", key, defaults.sample_rate),
        queue_records=_positive_int(section, "queue_records", key, defaults.queue_records),
        max_batch_records=_positive_int(
            section, "max_batch_records", key, defaults.max_batch_records
        ),
        max_delay_s=_positive_float(section, "max_delay_s", key, defaults.max_delay_s),
        batch_wait_s=_non_negative_float(section, "batch_wait_s", key, defaults.batch_wait_s),
        shutdown_grace_s=_positive_float(
            section, "shutdown_grace_s", key, defaults.shutdown_grace_s
        ),
        service_max_in_flight=_positive_int(
            section, "service_max_in_flight", key, defaults.service_max_in_flight
        ),
        call_timeout_s=_positive_float(section, "call_timeout_s", key, defaults.call_timeout_s),
        process_nice=_nice(section.get("process_nice", defaults.process_nice), key),
        process_start_timeout_s=_positive_float(
            section, "process_start_timeout_s", key, defaults.process_start_timeout_s
        ),
        circuit_breaker=_parse_breaker(_section(section, "serving.shadow.circuit_breaker")),
    )


def _share(section: Mapping[str, Any], name: str, key: str, default: float) -> float:
    value = section.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ServingConfigError(f"{key}.{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _known_keys(section: Mapping[str, Any], key: str, names: tuple[str, ...]) -> None:
    unknown = sorted(set(section) - set(names))
    if unknown:
        raise ServingConfigError(f"{key} has unknown key(s) {unknown}; known: {', '.join(names)}")


def _parse_canary_rollback(section: Mapping[str, Any]) -> CanaryRollbackSettings:
    key = "serving.canary.rollback"
    defaults = CanaryRollbackSettings()
    _known_keys(section, key, tuple(f.name for f in fields(CanaryRollbackSettings)))
    return CanaryRollbackSettings(
        enabled=_boolean(section, "enabled", key, defaults.enabled),
        window_s=_positive_float(section, "window_s", key, defaults.window_s),
        for_s=_non_negative_float(section, "for_s", key, defaults.for_s),
        check_interval_s=_positive_float(
            section, "check_interval_s", key, defaults.check_interval_s
        ),
        min_records=_positive_int(section, "min_records", key, defaults.min_records),
        max_p95_latency_s=_positive_float(
            section, "max_p95_latency_s", key, defaults.max_p95_latency_s
        ),
        max_error_rate=_share(section, "max_error_rate", key, defaults.max_error_rate),
        max_disagreement=_share(section, "max_disagreement", key, defaults.max_disagreement),
    )


def _parse_canary(
    section: Mapping[str, Any],
    project_path: Path,
    shadow: ShadowSettings,
    models: Mapping[str, str | None],
) -> CanarySettings:
    key = "serving.canary"
    defaults = CanarySettings()
    _known_keys(section, key, tuple(f.name for f in fields(CanarySettings)))
    fraction = _share(section, "fraction", key, defaults.fraction)
    if fraction > 0 and models.get("challenger") is None:
        raise ServingConfigError(
            f"{key}.fraction is {fraction:g} but serving.models.challenger is false: the canary "
            "is answered by the challenger"
        )
    if fraction > 0 and shadow.mode == "service":
        raise ServingConfigError(
            f"{key}.fraction is {fraction:g} but serving.shadow.mode is service: the canary "
            "answers from the challenger loaded in the worker (mode process or thread)"
        )
    return CanarySettings(
        fraction=fraction,
        timeout_s=_positive_float(section, "timeout_s", key, defaults.timeout_s),
        state_file=_data_path(
            section.get("state_file", str(defaults.state_file)), f"{key}.state_file", project_path
        ),
        rollback=_parse_canary_rollback(_section(section, "serving.canary.rollback")),
    )


def _nice(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 19:
        raise ServingConfigError(f"{key}.process_nice must be an integer 0-19, got {value!r}")
    return value


def _parse_log(
    section: Mapping[str, Any], key: str, default: str, project_path: Path
) -> LogSettings:
    return LogSettings(
        path=_data_path(section.get("path", default), f"{key}.path", project_path),
        flush_interval_s=_positive_float(section, "flush_interval_s", key, 1.0),
    )


def _parse_durability(section: Mapping[str, Any]) -> DurabilitySettings:
    key = "serving.log"
    defaults = DurabilitySettings()
    known = ("durability", "segment_max_bytes", "segment_max_age_s")
    unknown = sorted(str(name) for name in section if name not in known)
    if unknown:
        # a misspelt `durability` must not leave an audit log in the buffered mode unnoticed
        raise ServingConfigError(
            f"{key} has unknown keys {unknown}; the keys are {', '.join(known)}"
        )
    return DurabilitySettings(
        mode=_choice(section, "durability", key, (BUFFERED, ACKNOWLEDGED), defaults.mode),
        segment_max_bytes=_positive_int(
            section, "segment_max_bytes", key, defaults.segment_max_bytes
        ),
        segment_max_age_s=_positive_float(
            section, "segment_max_age_s", key, defaults.segment_max_age_s
        ),
    )


def _parse_models(section: Mapping[str, Any], registered_model_name: str) -> dict[str, str | None]:
    """Store tags per role; null: the workspace's ``<model_registry.name>-<role>:latest``."""
    models: dict[str, str | None] = {}
    for role in ("champion", "challenger"):
        value = section.get(role)
        if value is None:
            value = f"{bento_model_name(registered_model_name)}-{role}:latest"
        models[role] = value
    if not isinstance(models["champion"], str) or not models["champion"]:
        raise ServingConfigError(
            "serving.models.champion must name a BentoML model tag, e.g. "
            f"shadowdrift-churn-champion:latest, or be null; got {models['champion']!r}"
        )
    if models["challenger"] is False:
        models["challenger"] = None  # no shadow model
    elif not isinstance(models["challenger"], str) or not models["challenger"]:
        raise ServingConfigError(
            "serving.models.challenger must be a BentoML model tag, null (the workspace's) or "
            f"false (no shadow model), got {models['challenger']!r}"
        )
    return models


def bento_model_name(registered_model_name: str) -> str:
    """The BentoML store's name prefix for a registered model (BentoML names are lowercase)."""
    return registered_model_name.lower()


def _registered_model_name(params: Mapping[str, Any]) -> str:
    name = _section(params, "model_registry").get("name")
    if not isinstance(name, str) or not name:
        raise ServingConfigError(
            f"model_registry.name must name the MLflow registered model, got {name!r}"
        )
    return name


def parse_serving_settings(params: Mapping[str, Any], project_path: Path) -> ServingSettings:
    """Check and convert the ``serving``, ``model_registry`` and ``schema`` parameters."""
    serving = _section(params, "serving")
    if not serving:
        raise ServingConfigError(
            "parameters have no `serving` section (conf/base/parameters_serving.yml)"
        )
    registered_model_name = _registered_model_name(params)
    schema = params.get("schema")
    if not isinstance(schema, Mapping):
        raise ServingConfigError("parameters have no `schema` section (conf/base/parameters.yml)")
    reload_cfg = _section(serving, "serving.reload")
    token = reload_cfg.get("token")
    if token is not None and (not isinstance(token, str) or not token):
        raise ServingConfigError("serving.reload.token must be a non-empty string or null")
    token_env = reload_cfg.get("token_env", ServingSettings.reload_token_env)
    if not isinstance(token_env, str) or not token_env:
        raise ServingConfigError(
            f"serving.reload.token_env must name a variable, got {token_env!r}"
        )
    feedback = _section(serving, "serving.ground_truth")
    models = _parse_models(_section(serving, "serving.models"), registered_model_name)
    shadow = _parse_shadow(_section(serving, "serving.shadow"))
    return ServingSettings(
        project_path=project_path,
        schema=schema,
        models=models,
        registered_model_name=registered_model_name,
        bento_model_prefix=bento_model_name(registered_model_name),
        host=_parse_host(serving.get("host", ServingSettings.host)),
        workers=_positive_int(serving, "workers", "serving", 1),
        threads=_positive_int(serving, "threads", "serving", 1),
        model_threads=_positive_int(serving, "model_threads", "serving", 1),
        gil_switch_interval_s=_positive_float(
            serving, "gil_switch_interval_s", "serving", ServingSettings.gil_switch_interval_s
        ),
        timeout_s=_positive_float(serving, "timeout_s", "serving", 30.0),
        access_log=_boolean(serving, "access_log", "serving", False),
        single_record_fast_path=_boolean(serving, "single_record_fast_path", "serving", True),
        batch_thread_min_records=_non_negative_int(
            serving, "batch_thread_min_records", "serving", 64
        ),
        batch_threads=_positive_int(serving, "batch_threads", "serving", 2),
        request=_parse_request(_section(serving, "serving.request")),
        shadow=shadow,
        canary=_parse_canary(_section(serving, "serving.canary"), project_path, shadow, models),
        admission=_parse_admission(_section(serving, "serving.admission")),
        rate_limit=_parse_rate_limit(_section(serving, "serving.rate_limit")),
        shutdown_drain_s=_non_negative_float(
            _section(serving, "serving.shutdown"), "drain_s", "serving.shutdown", 2.0
        ),
        prediction_log=_parse_log(
            _section(serving, "serving.prediction_log"),
            "serving.prediction_log",
            "data/07_model_output/prediction_log",
            project_path,
        ),
        ground_truth=_parse_log(
            feedback, "serving.ground_truth", "data/07_model_output/ground_truth", project_path
        ),
        feedback_max_items=_positive_int(feedback, "max_items", "serving.ground_truth", 10_000),
        log_durability=_parse_durability(_section(serving, "serving.log")),
        reload_token_env=token_env,
        reload_token=token,
        reload_watch_interval_s=_non_negative_float(
            reload_cfg, "watch_interval_s", "serving.reload", 0.0
        ),
    )


def load_serving_settings(
    project_path: Path | None = None, env: str | None = None
) -> ServingSettings:
    """Read and check the serving configuration of the project at ``project_path``."""
    path = project_path.resolve() if project_path is not None else find_project_path()
    return parse_serving_settings(load_parameters(path, env), path)


def mlflow_uris(project_path: Path, env: str | None = None) -> tuple[str, str]:
    """The MLflow tracking and registry URIs of ``conf/<env>/mlflow.yml`` (for a registry reload)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        loader = _config_loader(
            project_path, env, config_patterns={"mlflow": ["mlflow*", "mlflow*/**"]}
        )
        server = dict(loader["mlflow"].get("server", {}))
    tracking = server.get("mlflow_tracking_uri")
    if not tracking:
        raise ServingConfigError("conf/*/mlflow.yml has no server.mlflow_tracking_uri")
    return str(tracking), str(server.get("mlflow_registry_uri") or tracking)
