from kedro.pipeline import Pipeline, node

from .nodes import evaluate_candidates, promote_candidates, score_test_window

CANDIDATES = ("models_gbm", "models_mlp")


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                score_test_window,
                inputs=["model_input_test", "raw_events_truth", "params:schema", *CANDIDATES],
                outputs="model_output_test_predictions",
                name="score_test_window",
                tags=["evaluation"],
            ),
            node(
                evaluate_candidates,
                inputs=[
                    "model_output_test_predictions",
                    "model_input_test",
                    "params:evaluation",
                    "params:schema",
                    *CANDIDATES,
                ],
                outputs=[
                    "reporting_evaluation",
                    "reporting_evaluation_metrics",
                    "reporting_roc_curve",
                    "reporting_calibration_curve",
                    "reporting_segment_roc_auc",
                ],
                name="evaluate_candidates",
                tags=["evaluation"],
            ),
            node(
                promote_candidates,
                inputs=[
                    "models_training_summary",
                    "model_input_test",
                    "params:evaluation",
                    "params:schema",
                    "params:model_registry",
                    *CANDIDATES,
                ],
                outputs=["reporting_promotion_decision", "models_registry_aliases"],
                name="gate_and_move_registry_aliases",
                tags=["evaluation", "registry"],
            ),
        ]
    )
