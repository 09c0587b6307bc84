"""The fault suite prints each scenario's figures at the end of the run."""

from __future__ import annotations

import pytest

from tests.support.faults import REPORTED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTED:
        terminalreporter.section("fault suite: samples produced / stored / lost")
        for figures in REPORTED:
            terminalreporter.write_line(figures.line())
