"""Fault injection (issue #9): each fault against the real app, then one invariant check."""

import pytest

# The invariant check and the harness assert outside test modules: let pytest explain
# their failures too.
pytest.register_assert_rewrite("tests.faults.invariants", "tests.faults.harness")
