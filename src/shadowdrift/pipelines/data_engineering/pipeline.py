from kedro.pipeline import Pipeline, node

from .nodes import split_events_by_time, validate_and_clean_events


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                validate_and_clean_events,
                inputs=["raw_events", "params:schema"],
                outputs="intermediate_events",
                name="validate_and_clean_events",
                tags=["data_engineering"],
            ),
            node(
                split_events_by_time,
                inputs=["intermediate_events", "params:schema", "params:data_engineering"],
                outputs=[
                    "model_input_train",
                    "model_input_test",
                    "model_input_reference",
                    "reporting_split_summary",
                ],
                name="split_events_by_time",
                tags=["data_engineering"],
            ),
        ]
    )
