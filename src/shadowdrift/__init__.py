"""shadowdrift: a tabular model kept honest in production (Kedro, MLflow, BentoML, NannyML)."""

import os

__version__ = "0.1.0"

# Offline and quiet by default: nothing here phones home. setdefault leaves a user's own
# choice alone. Kedro's telemetry is also refused by the `.telemetry` file in the project root,
# which its CLI reads before this package is imported.
for _name, _value in {
    "KEDRO_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "NML_DISABLE_USAGE_LOGGING": "1",
    "BENTOML_DO_NOT_TRACK": "True",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}.items():
    os.environ.setdefault(_name, _value)

# Known, harmless noise from pinned dependencies that would otherwise fill every `kedro run`:
# kedro 1.7 and kedro-mlflow 2.0.3 call omegaconf's deprecated resolver API.
import warnings  # noqa: E402

warnings.filterwarnings(
    "ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning
)
