from kedro.pipeline import Pipeline, node

from ..evaluation.pipeline import create_pipeline as evaluation_pipeline
from ..packaging.pipeline import create_pipeline as packaging_pipeline
from ..training.pipeline import create_pipeline as training_pipeline
from .nodes import build_retraining_events, split_retraining_events


def create_pipeline(**kwargs) -> Pipeline:
    """The rolled training set, then the training, evaluation (gate, aliases) and packaging nodes.

    It writes the model-input windows that data_engineering writes (new versions), so it is not
    part of ``__default__``: run it alone, or let ``kedro loop`` run it when drift says retrain.
    """
    rolled_set = Pipeline(
        [
            node(
                build_retraining_events,
                inputs=[
                    "intermediate_events",
                    "model_output_drift_analysis",
                    "reporting_retraining_decision",
                    "params:schema",
                    "params:retraining",
                ],
                outputs=["intermediate_retraining_events", "reporting_retraining_window"],
                name="roll_training_window_forward",
                tags=["retraining"],
            ),
            node(
                split_retraining_events,
                inputs=["intermediate_retraining_events", "params:schema", "params:retraining"],
                outputs=[
                    "model_input_train",
                    "model_input_test",
                    "model_input_reference",
                    "reporting_retraining_split",
                ],
                name="split_retraining_events_by_time",
                tags=["retraining"],
            ),
        ]
    )
    return rolled_set + training_pipeline() + evaluation_pipeline() + packaging_pipeline()
