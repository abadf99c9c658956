"""Names of environment variables, as reviewed files give them for secrets and DSNs.

A policy or the severity matrix names the variable, never the secret itself, so nothing secret
is written in git; and never a REMEDIATOR_* variable, which are the service's own settings.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator


def _env_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"expected the name of an environment variable, got {name!r}")
    if name.startswith("REMEDIATOR_"):
        raise ValueError(
            f"{name}: REMEDIATOR_* variables are the service's own settings; name it otherwise"
        )
    return name


EnvName = Annotated[str, AfterValidator(_env_name)]
