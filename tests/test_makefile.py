"""`make run` installs only what running needs; `make test` adds the dev extra."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def planned(target: str, venv: Path) -> list[str]:
    """The commands `make` would run for the target in a fresh checkout (`make -n`)."""
    done = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target, f"VENV={venv}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.splitlines()


def test_make_run_installs_without_the_dev_extra_and_make_test_with_it(tmp_path: Path) -> None:
    run = [line for line in planned("run", tmp_path / "venv") if "pip install" in line]
    assert run, "make run installs the service"
    assert not any("[dev]" in line for line in run)
    assert any(line.endswith("install --quiet -e .") for line in run)
    for target in ("test", "check"):
        assert any("-e '.[dev]'" in line for line in planned(target, tmp_path / "venv"))
