"""A per-test time limit for pytest, for machines without pytest-timeout (load it with
``-p pytest_time_limit`` with this folder on PYTHONPATH, then pass ``--per-test-limit SECONDS``).

Two limits, both counted from the start of the test's setup:

- soft, at SECONDS: SIGALRM interrupts the Python code of the test's setup, call or teardown, and that
  phase fails with "per-test time limit of S s exceeded"; the run goes on with the next test;
- hard, at SECONDS + GRACE (``--per-test-grace``, default 30): for a test stuck where Python never
  gets control back (a C call that does not return, a GPU synchronisation that never ends, a
  blocked signal), faulthandler prints every thread's stack and ends the process with status 1.
  The junit XML of that run is then not written; ``--per-test-state FILE`` keeps the id of the
  test being run in FILE (emptied after each test), so a caller can name the test that was stuck.

Linux and macOS only (SIGALRM); elsewhere the plugin does nothing.
"""
import contextlib
import faulthandler
import os
import signal
import time

import pytest

_HAS_ALARM = hasattr(signal, "SIGALRM") and hasattr(signal, "setitimer")

# The real stderr, taken when the plugin is loaded (-p loads it before pytest captures output): the
# hard stop's stacks must reach the terminal, not a capture file that is never shown.
try:
    _STDERR_FD = os.dup(2)
except OSError:
    _STDERR_FD = None


class TimeLimitExceeded(Exception):
    """Raised inside a test when its time limit passes."""


def pytest_addoption(parser):
    group = parser.getgroup("time limit")
    group.addoption("--per-test-limit", type=float, default=None, metavar="SECONDS",
                    help="fail a test still running after SECONDS (setup, call and teardown together)")
    group.addoption("--per-test-grace", type=float, default=30.0, metavar="SECONDS",
                    help="after the limit, wait this long more, then dump every stack and end the run "
                         "(a test stuck outside Python; default 30)")
    group.addoption("--per-test-state", default=None, metavar="FILE",
                    help="write the id of the running test to FILE (emptied when it ends)")


def pytest_configure(config):
    limit = config.getoption("--per-test-limit")
    if limit is not None and limit > 0 and _HAS_ALARM:
        config.pluginmanager.register(
            _TimeLimit(limit, config.getoption("--per-test-grace"), config.getoption("--per-test-state")), "time-limit")


def pytest_report_header(config):
    limit = config.getoption("--per-test-limit")
    if limit is None or limit <= 0:
        return None
    if not _HAS_ALARM:
        return "per-test time limit: not available here (no SIGALRM)"
    grace = config.getoption("--per-test-grace")
    return f"per-test time limit: {limit:g} s (then {grace:g} s more before the run is ended)"


class _TimeLimit:
    def __init__(self, limit, grace, state=None):
        self.limit = float(limit)
        self.grace = max(0.0, float(grace))
        self.state = state
        self.started = None
        self.nodeid = None

    def _on_alarm(self, signum, frame):
        elapsed = time.monotonic() - self.started
        raise TimeLimitExceeded(f"per-test time limit of {self.limit:g} s exceeded ({elapsed:.1f} s) in {self.nodeid}")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        self.started = time.monotonic()
        self.nodeid = item.nodeid
        self._write_state(item.nodeid)
        if _STDERR_FD is not None:
            faulthandler.dump_traceback_later(self.limit + self.grace, exit=True, file=_STDERR_FD)
        else:
            faulthandler.dump_traceback_later(self.limit + self.grace, exit=True)
        old = signal.signal(signal.SIGALRM, self._on_alarm)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
            faulthandler.cancel_dump_traceback_later()
            self.started = None
            self._write_state("")

    def _write_state(self, text):
        if self.state:
            with open(self.state, "w") as f:
                f.write(text)

    def _phase(self):
        """Arm the alarm for what is left of this test's time; a phase that starts late fails at once."""
        left = self.limit - (time.monotonic() - self.started)
        signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3))

    @contextlib.contextmanager
    def _armed(self):
        self._phase()
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item):
        with self._armed():
            yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        with self._armed():
            yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_teardown(self, item, nextitem):
        with self._armed():
            yield
