"""Entry point of ``bentoml serve`` and ``bentoml build`` (bentofile.yaml: ``service: service:ChurnService``).

The service lives in ``shadowdrift.serving.service``; this file only makes the package importable
from a built Bento (which carries ``src/``) as well as from the project root.
"""

import sys
from pathlib import Path

_SRC = Path(__file__).resolve().parent / "src"
if (_SRC / "shadowdrift").is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

from shadowdrift.serving.service import ChurnService  # noqa: E402

__all__ = ["ChurnService"]
