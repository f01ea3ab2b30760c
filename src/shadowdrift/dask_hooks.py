"""A Kedro hook that runs a pipeline on a Dask cluster when the environment asks for one.

``DaskClientHooks`` does nothing unless the run's environment has a ``dask`` configuration
(``conf/<env>/dask.yml``, read through the ``dask`` config pattern; see docs/scale_out.md).
With one, ``before_pipeline_run`` starts a ``distributed.Client``:

* to a running scheduler, if ``address`` is set (``tcp://scheduler:8786``);
* to a cluster built from ``cluster_class`` and ``cluster_kwargs`` (``dask_jobqueue.SLURMCluster``,
  ``dask_kubernetes.operator.KubeCluster``, ``coiled.Cluster``, ...), then ``scale``/``adapt``;
* else to a ``LocalCluster`` on this machine, bound to 127.0.0.1, sized by ``local``.

The client becomes Dask's default scheduler, so every ``compute`` in the nodes and datasets
runs on it, and ``config`` is applied with ``dask.config.set`` for the run. The client (and a
cluster the hook started) is closed after the run and when the run fails.

The data pipelines (data_engineering, inference, drift) accept Dask tables; simulation,
training and evaluation take pandas tables, so a Dask run that includes them is refused
before anything runs, with the command to use instead.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dask
from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl
from kedro.pipeline import Pipeline

logger = logging.getLogger(__name__)

CONFIG_KEY = "dask"
# Node tags of pipelines whose nodes only take pandas tables.
PANDAS_ONLY_TAGS = ("simulation", "training", "evaluation")
_TOP_KEYS = {
    "address",
    "cluster_class",
    "cluster_kwargs",
    "scale",
    "adapt",
    "local",
    "client",
    "config",
}
_LOCAL_KEYS = {
    "n_workers",
    "threads_per_worker",
    "memory_limit",
    "processes",
    "dashboard",
    "dashboard_address",
}
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")


class DaskConfigError(ValueError):
    """The ``dask`` configuration is malformed, or the run cannot use Dask; names the key."""


@dataclass(frozen=True)
class LocalClusterSettings:
    """A LocalCluster on this machine; the defaults suit a 2-core laptop."""

    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str | int | None = "2GiB"
    processes: bool = True
    dashboard: bool = False
    dashboard_address: str = "127.0.0.1:8787"


@dataclass(frozen=True)
class DaskSettings:
    """The parsed ``dask`` configuration of an environment."""

    address: str | None = None
    cluster_class: str | None = None
    cluster_kwargs: dict[str, Any] = field(default_factory=dict)
    scale: dict[str, Any] | None = None
    adapt: dict[str, Any] | None = None
    local: LocalClusterSettings = field(default_factory=LocalClusterSettings)
    client: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DaskSettings:
        """Check and parse the ``dask`` mapping; errors name the key."""
        if not isinstance(config, Mapping):
            raise DaskConfigError(f"{CONFIG_KEY} must be a mapping, got {config!r}")
        _unknown(config, _TOP_KEYS, CONFIG_KEY)
        local = _mapping(config.get("local"), f"{CONFIG_KEY}.local")
        _unknown(local, _LOCAL_KEYS, f"{CONFIG_KEY}.local")
        settings = cls(
            address=_optional_str(config.get("address"), f"{CONFIG_KEY}.address"),
            cluster_class=_optional_str(config.get("cluster_class"), f"{CONFIG_KEY}.cluster_class"),
            cluster_kwargs=_mapping(config.get("cluster_kwargs"), f"{CONFIG_KEY}.cluster_kwargs"),
            scale=_mapping(config.get("scale"), f"{CONFIG_KEY}.scale") or None,
            adapt=_mapping(config.get("adapt"), f"{CONFIG_KEY}.adapt") or None,
            local=LocalClusterSettings(**local),
            client=_mapping(config.get("client"), f"{CONFIG_KEY}.client"),
            config=_mapping(config.get("config"), f"{CONFIG_KEY}.config"),
        )
        if settings.address and settings.cluster_class:
            raise DaskConfigError(
                f"{CONFIG_KEY}: set address (a running scheduler) or cluster_class (a cluster "
                "to start), not both"
            )
        for name in ("n_workers", "threads_per_worker"):
            value = getattr(settings.local, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DaskConfigError(
                    f"{CONFIG_KEY}.local.{name} must be an integer of at least 1, got {value!r}"
                )
        host = settings.local.dashboard_address.rsplit(":", 1)[0]
        if settings.local.dashboard and host not in _LOCAL_HOSTS:
            raise DaskConfigError(
                f"{CONFIG_KEY}.local.dashboard_address must listen on 127.0.0.1 (a local cluster "
                f"is not a server for others), got {settings.local.dashboard_address!r}"
            )
        return settings

    def describe(self) -> str:
        if self.address:
            return f"the scheduler at {self.address}"
        if self.cluster_class:
            return f"a {self.cluster_class}"
        local = self.local
        return (
            f"a LocalCluster of {local.n_workers} worker(s) x {local.threads_per_worker} "
            f"thread(s), {local.memory_limit} each, dashboard "
            + (f"on {local.dashboard_address}" if local.dashboard else "off")
        )


def _unknown(config: Mapping[str, Any], allowed: set[str], key: str) -> None:
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise DaskConfigError(
            f"{key}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
            f"{', '.join(sorted(allowed))}"
        )


def _mapping(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DaskConfigError(f"{key} must be a mapping, got {value!r}")
    return dict(value)


def _optional_str(value: Any, key: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise DaskConfigError(f"{key} must be a string, got {value!r}")
    return value


def _import(path: str) -> Any:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise DaskConfigError(
            f"{CONFIG_KEY}.cluster_class: cannot import {path!r} ({exc}); is its package "
            "installed (dask-jobqueue, dask-kubernetes, coiled)?"
        ) from exc


def _local_cluster(settings: LocalClusterSettings) -> Any:
    from distributed import LocalCluster  # noqa: PLC0415  (only runs that use Dask pay for it)

    return LocalCluster(
        n_workers=settings.n_workers,
        threads_per_worker=settings.threads_per_worker,
        memory_limit=settings.memory_limit,
        processes=settings.processes,
        # Scheduler and workers listen on the loopback interface only.
        host="127.0.0.1",
        dashboard_address=settings.dashboard_address if settings.dashboard else None,
        # Without a dashboard the scheduler still serves health routes: keep them on loopback,
        # on a free port rather than 8787, which another run may hold.
        scheduler_kwargs={} if settings.dashboard else {"dashboard_address": "127.0.0.1:0"},
    )


def start_client(settings: DaskSettings) -> tuple[Any, Any | None]:
    """A connected ``distributed.Client`` and the cluster it started (None for an address)."""
    from distributed import Client  # noqa: PLC0415  (only runs that use Dask pay for it)

    if settings.address:
        return Client(settings.address, **settings.client), None
    if settings.cluster_class:
        cluster = _import(settings.cluster_class)(**settings.cluster_kwargs)
    else:
        cluster = _local_cluster(settings.local)
    try:
        if settings.scale:
            cluster.scale(**settings.scale)
        if settings.adapt:
            cluster.adapt(**settings.adapt)
        return Client(cluster, **settings.client), cluster
    except BaseException:
        cluster.close()
        raise


class DaskClientHooks:
    """Start a Dask client for a run whose environment configures ``dask``; close it after."""

    def __init__(self) -> None:
        self._settings: DaskSettings | None = None
        self._env: str | None = None
        self._client: Any = None
        self._cluster: Any = None
        self._config: contextlib.ExitStack | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._env = getattr(context, "env", None)
        self._settings = None
        try:
            config = context.config_loader[CONFIG_KEY]
        except MissingConfigException:
            return  # this environment has no dask.yml: plain pandas run
        except KeyError:
            logger.debug("No %r config pattern in CONFIG_LOADER_ARGS: Dask hook idle", CONFIG_KEY)
            return
        if config and CONFIG_KEY in config:
            self._settings = DaskSettings.from_config(config[CONFIG_KEY] or {})

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline) -> None:
        if self._settings is None:
            return
        _refuse_pandas_only(pipeline, run_params.get("env") or self._env)
        self._close()  # a client left by an earlier run in this process
        self._config = contextlib.ExitStack()
        self._config.enter_context(dask.config.set(self._settings.config))
        try:
            self._client, self._cluster = start_client(self._settings)
        except BaseException:
            self._close()
            raise
        logger.info(
            "Dask: running on %s (scheduler %s)",
            self._settings.describe(),
            self._client.scheduler.address,
        )

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._close()

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._close()

    def _close(self) -> None:
        """Close the client, then the cluster this hook started; never mask a run's error."""
        client, cluster, config = self._client, self._cluster, self._config
        self._client = self._cluster = self._config = None
        for what, resource in (("client", client), ("cluster", cluster)):
            if resource is None:
                continue
            try:
                resource.close()
            except Exception:
                logger.warning("Dask: closing the %s failed", what, exc_info=True)
        if config is not None:
            config.close()
        if client is not None:
            logger.info("Dask: client closed")


def _refuse_pandas_only(pipeline: Pipeline, env: str | None) -> None:
    tags = {tag for node in pipeline.nodes for tag in node.tags}
    tagged = [tag for tag in PANDAS_ONLY_TAGS if tag in tags]
    if tagged:
        raise DaskConfigError(
            f"environment {env!r} runs pipelines on Dask, but this run includes "
            f"{', '.join(tagged)}, whose nodes take pandas tables. Run those in the default "
            f"environment (`kedro run --pipelines {','.join(tagged)}`) and the data pipelines "
            f"here (`kedro run --env {env} --pipelines data_engineering,inference,drift`)."
        )
