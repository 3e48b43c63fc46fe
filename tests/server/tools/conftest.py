"""The report tests' shared backtest (and their helper module on the import path)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)

from backtest_support import Backtest, run_backtest  # noqa: E402 (needs the path above)


@pytest.fixture(scope="session")
def backtest(tmp_path_factory: pytest.TempPathFactory) -> Backtest:
    return run_backtest(tmp_path_factory.mktemp("backtest"))
