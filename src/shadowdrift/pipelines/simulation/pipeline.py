from kedro.pipeline import Pipeline, node

from .nodes import simulate_events, simulate_production


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                simulate_events,
                inputs="params:simulation",
                outputs=["raw_events", "raw_events_truth"],
                name="simulate_customer_history",
                tags=["simulation"],
            ),
            node(
                simulate_production,
                inputs=["raw_events", "params:simulation"],
                outputs=["raw_production", "raw_production_truth", "raw_drift_manifest"],
                name="simulate_production_with_drift",
                tags=["simulation"],
            ),
        ]
    )
