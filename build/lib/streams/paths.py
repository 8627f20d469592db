"""Where loopline's files outside the Python packages live: schemas/ and ops/ of the checkout."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMAS_DIR = REPO_ROOT / "schemas"
OPS_DIR = REPO_ROOT / "ops"
