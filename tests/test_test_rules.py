"""The suite's own rule: a piece that CI installs is never skipped for want of it there."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ALLOW_MISSING_ENV, missing, require

ROOT = Path(__file__).resolve().parents[1]
ABSENT = "ralif_test_no_such_module"


@pytest.fixture()
def env(monkeypatch):
    monkeypatch.delenv(ALLOW_MISSING_ENV, raising=False)
    monkeypatch.delenv("CI", raising=False)
    return monkeypatch


def test_a_missing_module_fails_the_test(env):
    with pytest.raises(ImportError, match=ABSENT):
        require(ABSENT)


def test_a_missing_module_is_a_skip_naming_it_where_allowed_locally(env):
    env.setenv(ALLOW_MISSING_ENV, "1")
    with pytest.raises(pytest.skip.Exception, match=ABSENT):
        require(ABSENT)


def test_ci_fails_for_a_missing_module_even_where_skipping_is_allowed(env):
    env.setenv(ALLOW_MISSING_ENV, "1")
    env.setenv("CI", "true")
    with pytest.raises(ImportError, match=ABSENT):
        require(ABSENT)


def test_a_missing_program_fails_the_test(env):
    with pytest.raises(pytest.fail.Exception, match="chromedriver"):
        missing("chromedriver is not installed")


def test_a_missing_program_is_a_skip_naming_it_where_allowed_locally(env):
    env.setenv(ALLOW_MISSING_ENV, "1")
    with pytest.raises(pytest.skip.Exception, match="chromedriver"):
        missing("chromedriver is not installed")


def test_ci_fails_for_a_missing_program_even_where_skipping_is_allowed(env):
    env.setenv(ALLOW_MISSING_ENV, "1")
    env.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="chromedriver"):
        missing("chromedriver is not installed")


def test_the_session_store_tests_run_without_flask_and_waitress():
    # The store is plain SQLite; only the page's server needs flask and waitress.
    blocker = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("flask", "waitress"):
                    raise ImportError(f"{name} blocked")
        sys.meta_path.insert(0, Block())
        import pytest
        sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "tests/test_session.py",
                              "-k", "last_write_wins or import_is_all_or_nothing"]))
        """
    )
    env_vars = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run(
        [sys.executable, "-c", blocker],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env_vars,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 passed" in r.stdout and "skipped" not in r.stdout
