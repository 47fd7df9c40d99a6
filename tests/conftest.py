import os
import tempfile
import warnings

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# A test that loses its fixture's $MOTIONLIB_HOME (e.g. monkeypatch.undo()) lands here, never in the user's catalogue.
os.environ["MOTIONLIB_HOME"] = tempfile.mkdtemp(prefix="motionlib-tests-home-")
os.environ.pop("MOTIONLIB_DB_URL", None)
warnings.filterwarnings("ignore", message=".*kept in float32.*")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny5b():
    from motionlib.models import load_model

    return load_model("tiny-5b", device="cpu")


@pytest.fixture(scope="session")
def tiny2b():
    from motionlib.models import load_model

    return load_model("tiny-2b", device="cpu")


@pytest.fixture(params=["tiny-5b", "tiny-2b"], scope="session")
def tiny(request, tiny5b, tiny2b):
    return tiny5b if request.param == "tiny-5b" else tiny2b


@pytest.fixture(scope="module")
def random_shapes():
    """The shapes demo model with seeded random weights (one per module: tests may change it)."""
    from motionlib.demo.model import shapes_model

    return shapes_model(pretrained=False)


@pytest.fixture(scope="session")
def learnt(tmp_path_factory):
    """One learnt motion file (tiny-5b), imported into each test's library (learning once keeps the suite fast)."""
    from helpers import learn_exported

    return learn_exported(tmp_path_factory.mktemp("learnt"))


@pytest.fixture
def cli_home(tmp_path, monkeypatch):
    """A fresh SQLite library for CLI tests: $MOTIONLIB_HOME under tmp_path, tiny-5b the default model,
    and tmp_path the working folder."""
    monkeypatch.setenv("MOTIONLIB_HOME", str(tmp_path / "lib"))
    monkeypatch.setenv("MOTIONLIB_MODEL", "tiny-5b")
    monkeypatch.delenv("MOTIONLIB_DB_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- catalogue backends: SQLite, and a throwaway PostgreSQL server ------------------------------
@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the whole session (initdb in a temp folder, 127.0.0.1, a free port).

    Skips with the reason when none can be started here; under CI (CI=true) that is a failure."""
    from motionlib.store.throwaway import PostgresUnavailable, ThrowawayPostgres

    try:
        pg = ThrowawayPostgres().__enter__()
    except PostgresUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the PostgreSQL cases, but no server could be started: {exc}")
        pytest.skip(f"PostgreSQL cases skipped: {exc}")
    yield pg
    pg.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def catalogue_db(request, monkeypatch):
    """The catalogue backend under test: sets (postgres: a fresh database) or clears $MOTIONLIB_DB_URL
    and returns the URL (None for SQLite in the library home). Store and CLI tests use only this."""
    if request.param == "sqlite":
        monkeypatch.delenv("MOTIONLIB_DB_URL", raising=False)
        return None
    url = request.getfixturevalue("postgres_server").create_database()
    monkeypatch.setenv("MOTIONLIB_DB_URL", url)
    return url


@pytest.fixture
def home(tmp_path, monkeypatch, catalogue_db):
    """A fresh library home for the CLI; its catalogue on SQLite or PostgreSQL (``catalogue_db``)."""
    h = tmp_path / "lib"
    monkeypatch.setenv("MOTIONLIB_HOME", str(h))
    monkeypatch.setenv("MOTIONLIB_MODEL", "tiny-5b")
    monkeypatch.chdir(tmp_path)
    return h
