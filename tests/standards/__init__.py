"""Validators that read the standards' own published definitions (OCSF, ECS) and check vigil's renderings
against them, rather than against lists copied into vigil's tests. See ``tests/unit/test_siem_standards.py``."""

from __future__ import annotations

import os
from pathlib import Path

#: Where the official schema sources live (``ocsf/``, ``ecs/``): ``$VIGIL_SCHEMAS_DIR``, else
#: ``../shared/data/schemas`` beside the checkout.
SCHEMAS_DIR = Path(os.environ.get("VIGIL_SCHEMAS_DIR")
                   or Path(__file__).resolve().parents[3] / "shared" / "data" / "schemas")
