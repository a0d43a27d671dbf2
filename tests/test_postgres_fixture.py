"""The throwaway PostgreSQL of tests/postgres.py, and what the cluster setup relies on.

- The fixture's URLs are plain `postgresql://` URLs that SQLAlchemy opens with
  the project's driver (psycopg 3, SQLAlchemy 2.1's default for that scheme).
- Optuna's RDBStorage and MLflow's tracking store both work on it.
- MLflow and Optuna cannot share one database schema: both keep their Alembic
  revision in a table named `alembic_version`, so whichever comes second fails.
  They work side by side in two databases of one server (what docs/cluster.md
  prescribes), or in one database with the study in its own schema.
"""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

import tests.postgres as pg

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def tables(url: str, schema: str | None = None) -> set[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names(schema=schema))
    finally:
        engine.dispose()


def optuna_round_trip(url: str, name: str = "study") -> float:
    """Create a study, ask and tell one trial, read it back through a new storage object."""
    import optuna  # noqa: PLC0415

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    trial = study.ask()
    x = trial.suggest_float("x", 0.0, 1.0)
    study.tell(trial, 1.0 - (x - 0.5) ** 2)
    storage.engine.dispose()

    fresh = optuna.storages.RDBStorage(url)
    try:
        loaded = optuna.load_study(study_name=name, storage=fresh)
        assert [t.params["x"] for t in loaded.trials] == [x]
        assert loaded.trials[0].state == optuna.trial.TrialState.COMPLETE
        return loaded.best_value
    finally:
        fresh.engine.dispose()


def mlflow_round_trip(url: str) -> None:
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    client = MlflowClient(url)  # migrates the schema on first use (a few seconds)
    experiment_id = client.create_experiment("pg-check", artifact_location="file:///tmp/unused-artifacts")
    run = client.create_run(experiment_id, tags={"hypercl.kind": "trial"})
    client.log_param(run.info.run_id, "lr", "0.001")
    for step, value in enumerate([0.5, 0.8, 0.9]):
        client.log_metric(run.info.run_id, "final_acc", value, step=step)
    client.set_terminated(run.info.run_id)

    again = MlflowClient(url)
    got = again.get_run(run.info.run_id)
    assert got.data.params == {"lr": "0.001"}
    assert got.data.metrics["final_acc"] == 0.9
    assert [m.value for m in again.get_metric_history(run.info.run_id, "final_acc")] == [0.5, 0.8, 0.9]
    assert again.get_experiment_by_name("pg-check").experiment_id == experiment_id
    assert [r.info.run_id for r in again.search_runs([experiment_id])] == [run.info.run_id]


# ----------------------------------------------------------------- the fixture


def test_urls_are_fresh_working_databases(postgres_server):
    first, second = postgres_server.url(), postgres_server.url()
    assert first != second
    for url in (first, second):
        assert url.startswith(f"postgresql://hypercl@127.0.0.1:{postgres_server.port}/")
        engine = sa.create_engine(url)
        assert engine.dialect.name == "postgresql"
        with engine.connect() as conn:
            db, user = conn.execute(sa.text("select current_database(), current_user")).one()
        engine.dispose()
        assert (db, user) == (url.rsplit("/", 1)[1], "hypercl")

    named = postgres_server.url("named_db")
    assert named.endswith("/named_db")
    engine = sa.create_engine(named)
    with engine.begin() as conn:
        conn.execute(sa.text("create table leftover (x int)"))
    engine.dispose()
    assert tables(named) == {"leftover"}
    assert postgres_server.url("named_db") == named
    assert tables(named) == set(), "an explicit name is dropped and created again"

    with pytest.raises(ValueError):
        postgres_server.url("bad-name; drop")


def test_server_listens_on_loopback_only(postgres_server):
    with postgres_server.connect() as conn:
        settings = dict(conn.execute("select name, setting from pg_settings where name in "
                                     "('listen_addresses', 'fsync', 'unix_socket_directories')").fetchall())
    assert settings["listen_addresses"] == "127.0.0.1"
    assert settings["fsync"] == "off"
    assert settings["unix_socket_directories"] == str(postgres_server.root)


def test_missing_postgres_skips_locally_and_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql"):
        pg._unavailable(f"PostgreSQL server binaries (initdb, pg_ctl) not found; install them: {pg.INSTALL_HINT}")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        pg._unavailable("no PostgreSQL")


def test_bindir_is_found_off_the_path(monkeypatch):
    found = pg.find_pg_bindir()
    if found is None:
        pytest.skip(f"no PostgreSQL here; {pg.INSTALL_HINT}")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("HYPERCL_PG_BINDIR", str(found))
    assert pg.find_pg_bindir() == found


# ------------------------------------------------------- the libraries on it


def test_optuna_rdb_storage(postgres_url):
    assert 0.75 <= optuna_round_trip(postgres_url) <= 1.0


def test_mlflow_tracking_store(postgres_url, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is relative to the working folder
    mlflow_round_trip(postgres_url)
    assert {"experiments", "runs", "metrics", "params", "alembic_version"} <= tables(postgres_url)


# ------------------------------------------- sharing one server, not one schema


def test_mlflow_and_optuna_clash_in_one_schema(postgres_server, monkeypatch, tmp_path):
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    import optuna  # noqa: PLC0415

    monkeypatch.chdir(tmp_path)
    mlflow_first = postgres_server.url()
    MlflowClient(mlflow_first).create_experiment("first")
    with pytest.raises(RuntimeError, match="no longer compatible with the table schema"):
        optuna.storages.RDBStorage(mlflow_first)  # it reads MLflow's revision from alembic_version
    assert "studies" in tables(mlflow_first), "the failed attempt leaves Optuna's empty tables behind"
    assert MlflowClient(mlflow_first).get_experiment_by_name("first") is not None, "MLflow's data is untouched"

    optuna_first = postgres_server.url()
    optuna.storages.RDBStorage(optuna_first).engine.dispose()
    with pytest.raises(Exception, match="Can't locate revision"):
        MlflowClient(optuna_first).create_experiment("second")


def test_mlflow_and_optuna_side_by_side(postgres_server, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    # Two databases on one server: the layout docs/cluster.md uses.
    mlflow_db, study_db = postgres_server.url("mlflow"), postgres_server.url("optuna")
    mlflow_round_trip(mlflow_db)
    optuna_round_trip(study_db)
    assert tables(mlflow_db) & tables(study_db) == {"alembic_version"}, "the one table name both use"

    # Or one database, the study in its own schema (libpq's search_path option).
    shared = postgres_server.url("shared")
    with postgres_server.connect("shared", autocommit=True) as conn:
        conn.execute("create schema optuna")
    mlflow_round_trip(shared)
    optuna_round_trip(shared + "?options=-csearch_path%3Doptuna")
    assert "studies" in tables(shared, schema="optuna") and "studies" not in tables(shared)
