"""Project commands for the Kedro CLI: ``kedro replay``, ``kedro loop``, ``kedro rollback``.

Kedro loads this module for every ``kedro`` command inside the project, so the heavy imports
happen inside the commands.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

ENV_HELP = "Kedro environment (conf/<env>), as in `kedro run --env`."
URL_HELP = "The service, loopback by default (http://127.0.0.1:3000)."


@click.group(name="shadowdrift")
def cli() -> None:
    """shadowdrift's project commands."""


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc)) from exc


@cli.command()
@click.option("--url", default="http://127.0.0.1:3000", show_default=True, help=URL_HELP)
@click.option("--env", "-e", default=None, help=ENV_HELP)
@click.option(
    "--dataset", default="raw_production", show_default=True, help="Catalog entry to replay."
)
@click.option("--rate", default=200.0, show_default=True, help="Records per second.")
@click.option("--batch-size", default=1, show_default=True, help="Records per request.")
@click.option("--max-records", type=int, default=None, help="Stop after this many records.")
@click.option(
    "--max-seconds", type=float, default=60.0, show_default=True, help="Stop after this long."
)
@click.option(
    "--feedback-delay",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds after each answer before its ground truth is posted to /feedback.",
)
@click.option("--no-feedback", is_flag=True, help="Post no ground truth.")
@click.option("--allow-remote", is_flag=True, help="Allow a target that is not loopback.")
@click.option(
    "--report", type=click.Path(dir_okay=False), default=None, help="Write the report JSON here."
)
def replay(
    url,
    env,
    dataset,
    rate,
    batch_size,
    max_records,
    max_seconds,
    feedback_delay,
    no_feedback,
    allow_remote,
    report,
) -> None:
    """Send DATASET's records to a running service at a bounded rate, then their ground truth."""
    from shadowdrift.frames import is_dask_frame
    from shadowdrift.loop import LoopOptions, project_context
    from shadowdrift.replay import ReplayError, ReplayPlan
    from shadowdrift.replay import replay as send
    from shadowdrift.schema import parse_schema

    _logging()
    try:
        plan = ReplayPlan(
            url=url.rstrip("/"),
            rate=rate,
            batch_size=batch_size,
            max_records=max_records,
            max_seconds=max_seconds,
            feedback_delay_s=None if no_feedback else feedback_delay,
            allow_remote=allow_remote,
        )
        with project_context(LoopOptions(project_path=Path.cwd(), env=env)) as context:
            schema = parse_schema(context.params["schema"])
            records = context.catalog.load(dataset)
        if is_dask_frame(records):
            records = records.compute()
        fields = [
            c for c in (schema.id, schema.timestamp, *schema.features) if c in records.columns
        ]
        result = send(
            records, plan, fields=fields, timestamp=schema.timestamp, target=schema.target
        )
    except ReplayError as exc:
        _fail(exc)
    summary = result.to_dict()
    click.echo(json.dumps(summary, indent=2))
    if report:
        Path(report).write_text(json.dumps(summary, indent=2))
    if result.records_answered == 0:
        raise click.ClickException("the service answered no record; see errors above")


def _loop_options(env, params, url, reload_token, allow_remote, **extra):
    from shadowdrift.loop import LoopOptions

    return LoopOptions(
        project_path=Path.cwd(),
        env=env,
        params=tuple(p for p in (params or "").split(",") if p),
        service_url=url.rstrip("/") if url else None,
        reload_token=reload_token,
        allow_remote=allow_remote,
        **extra,
    )


def _service_options(command):
    for decorator in reversed(
        [
            click.option("--env", "-e", default=None, help=ENV_HELP),
            click.option("--params", default="", help="Extra `kedro run --params` for every step."),
            click.option("--url", default=None, help=f"{URL_HELP} Reloaded after a new champion."),
            click.option(
                "--reload-token",
                default=None,
                help="The service's reload token (default: $SHADOWDRIFT_RELOAD_TOKEN).",
            ),
            click.option(
                "--allow-remote", is_flag=True, help="Allow a service that is not loopback."
            ),
        ]
    ):
        command = decorator(command)
    return command


@cli.command()
@_service_options
@click.option("--with-inference", is_flag=True, help="Batch-score raw_production first.")
def loop(env, params, url, reload_token, allow_remote, with_inference) -> None:
    """Drift -> decision -> if retrain: retraining (train, evaluate, gate, package) -> reload."""
    from shadowdrift.loop import LoopError, run_loop

    _logging()
    try:
        outcome = run_loop(
            _loop_options(
                env, params, url, reload_token, allow_remote, with_inference=with_inference
            )
        )
    except LoopError as exc:
        _fail(exc)
    click.echo(json.dumps(outcome, indent=2, default=str))


@cli.command()
@_service_options
@click.option(
    "--to-version", default=None, help="Registry version to restore (default: previous_champion)."
)
def rollback(env, params, url, reload_token, allow_remote, to_version) -> None:
    """Put the previous champion back (registry alias), package it, reload the service."""
    from shadowdrift.loop import LoopError
    from shadowdrift.loop import rollback as restore

    _logging()
    try:
        outcome = restore(_loop_options(env, params, url, reload_token, allow_remote), to_version)
    except LoopError as exc:
        _fail(exc)
    click.echo(json.dumps(outcome, indent=2, default=str))
