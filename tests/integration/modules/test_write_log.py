"""pg_write_log and pg_jsonb_integrity's untouched-rows proof against the real PostgreSQL of scripts/stack.

An application writes (inserts, updates, deletes, rollbacks, rolled-back savepoints) on its own long-lived
connections while the real Alembic revision converts ``ml_features.tokens`` to jsonb and back. Every proof
must hold, a content change made without the log must be caught, and no application write may fail.
Modules run as Ansible runs them. Each test gets a fresh demo database ``lm_test_wl_<pid>`` from
scripts/reset_demo_db.py (revision 20251109_add_user_name_picture, ``tokens text[]``).
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from stackdb import drop_database, reachable_server_url, with_db

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
SCRATCH_DB = f'lm_test_wl_{os.getpid()}'
SEED_ROWS = 3000
RUN = 'run-live-1'
HS = 'ledgermind_migrations'
HEAD, BASE = '502d44cd70ab', '20251109_add_user_name_picture'
# Whatever the column's type: the JSON array becomes text[] or jsonb through the table's own row type.
VALUE = "(jsonb_populate_record(NULL::ml_features, jsonb_build_object('tokens', %s::jsonb))).tokens"


def value_of(json_text: str) -> str:
    """VALUE with a JSON literal in place of the parameter."""
    return VALUE.replace('%s', "'" + json_text.replace("'", "''") + "'")


SHARED_KEYS = range(1, 401)      # every writer updates these (row locks, waits, chains of writes)
UNTOUCHED_KEY = 2500             # no writer ever touches it


# --- fixtures and helpers ----------------------------------------------------------------------

@pytest.fixture(scope='module')
def server_url() -> Iterator[str]:
    url = reachable_server_url()
    yield url
    drop_database(url, SCRATCH_DB)


@pytest.fixture
def db_url(server_url: str) -> str:
    proc = subprocess.run([sys.executable, REPO / 'scripts' / 'reset_demo_db.py', '--rows', str(SEED_ROWS),
                           '--db', SCRATCH_DB], env={**os.environ, 'DATABASE_URL': server_url},
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return with_db(server_url, SCRATCH_DB)


def sql(url: str, statement: str, params: Any = None, log: bool = True) -> list[tuple]:
    """One statement on its own autocommit connection; ``log=False`` is a session the write log skips."""
    conn = psycopg2.connect(url, application_name='lm_test_probe')
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            if not log:
                cur.execute("SET ledgermind.write_log = 'off'")
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(('PG', 'ANSIBLE_'))}
    env.update(ANSIBLE_CONFIG=str(REPO / 'ansible.cfg'), ANSIBLE_LOAD_CALLBACK_PLUGINS='1',
               ANSIBLE_STDOUT_CALLBACK='json', ANSIBLE_DEPRECATION_WARNINGS='0', ANSIBLE_NOCOLOR='1',
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return env


def run(module: str, args: dict[str, Any], *, check: bool = False) -> dict[str, Any]:
    """``ansible localhost -m ledgermind.migrations.<module> -a <json>``: the host's result."""
    cmd = [str(BIN / 'ansible'), 'localhost', '-i', 'localhost,', '-c', 'local', '-e',
           f'ansible_python_interpreter={sys.executable}', '-m', f'ledgermind.migrations.{module}',
           '-a', json.dumps(args)] + (['--check'] if check else [])
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=180)
    assert proc.stdout.strip(), proc.stderr
    doc = json.loads(proc.stdout[proc.stdout.index('{'):])
    result = doc['plays'][0]['tasks'][0]['hosts']['localhost']
    assert 'Traceback' not in proc.stdout + proc.stderr
    assert (proc.returncode != 0) == bool(result.get('failed')), (proc.returncode, result)
    return result


def write_log(url: str, check: bool = False, **args: Any) -> dict[str, Any]:
    return run('pg_write_log', {'database_url': url, 'table': 'ml_features', 'column': 'tokens', 'run_id': RUN,
                                **args}, check=check)


def integrity(url: str, baseline: dict[str, Any] | None = None, **args: Any) -> dict[str, Any]:
    more: dict[str, Any] = {}
    if baseline is not None:
        more = dict(baseline=dict(baseline['fingerprint_sums'], snapshot=baseline['snapshot']), write_log_run_id=RUN)
    return run('pg_jsonb_integrity', {'database_url': url, 'table': 'ml_features', 'column': 'tokens',
                                      'sample_rows': 0, **more, **args})


def alembic(url: str, *args: str) -> None:
    proc = subprocess.run([sys.executable, '-m', 'alembic', '-c', str(REPO / 'examples' / 'backend' / 'alembic.ini'),
                           *args], cwd='/', env={**os.environ, 'DATABASE_URL': url}, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, f'alembic {args} failed:\n{proc.stdout}\n{proc.stderr}'


def column_type(url: str) -> str:
    return sql(url, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                    "WHERE attrelid = 'ml_features'::regclass AND attname = 'tokens'")[0][0]


def log_rows(url: str, run_id: str = RUN) -> int:
    return sql(url, f'SELECT count(*) FROM {HS}.write_log WHERE run_id = %s', (run_id,))[0][0]


def triggers(url: str) -> int:
    return sql(url, "SELECT count(*) FROM pg_trigger WHERE tgname = 'ledgermind_write_log'")[0][0]


def expected_line_hash(url: str, key: int) -> int:
    """hashtextextended of the integrity scan's line for the row as it is now, first seed."""
    return sql(url, "SELECT hashtextextended(txn_id::text || ':' || coalesce(to_jsonb(tokens)::text, 'NULL'), "
                    "x'502D44CD70AB'::bigint) FROM ml_features WHERE txn_id = %s", (key,))[0][0]


# --- the application ---------------------------------------------------------------------------

@dataclass
class Committed:
    started: float
    before_commit: float
    after_commit: float
    keys: set[int]


@dataclass(eq=False)  # threads are hashed by identity
class Writer(threading.Thread):
    """One application connection, kept for the whole test, writing in short READ COMMITTED transactions."""
    url: str
    index: int
    stop: threading.Event
    committed: list[Committed] = field(default_factory=list)
    aborted: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)
        self.rng = random.Random(self.index)
        self.conn = psycopg2.connect(self.url, application_name=f'lm_test_app_{self.index}')
        self.fresh = iter(range(10_000_000 + 1_000_000 * self.index, 10_000_000 + 1_000_000 * (self.index + 1)))
        self.mine = list(range(1001 + 150 * self.index, 1001 + 150 * (self.index + 1)))  # its own deletable keys
        self.deleted: list[int] = []

    def value(self) -> str | None:
        return self.rng.choice([None, json.dumps([]), json.dumps([f'w{self.index}', str(self.rng.random())]),
                                json.dumps(['x', None])])

    def one_transaction(self, cur: Any) -> set[int]:
        keys: set[int] = set()
        shared = sorted(self.rng.sample(SHARED_KEYS, self.rng.randint(0, 3)))  # ordered: no deadlocks
        for key in shared:
            cur.execute(f'UPDATE ml_features SET tokens = {VALUE} WHERE txn_id = %s', (self.value(), key))
            keys.add(key)
        pick = self.rng.random()
        if pick < 0.3:
            key = next(self.fresh)
            cur.execute(f'INSERT INTO ml_features (txn_id, tokens) VALUES (%s, {VALUE})', (key, self.value()))
            keys.add(key)
        elif pick < 0.5 and self.mine:
            key = self.mine.pop(self.rng.randrange(len(self.mine)))
            cur.execute('DELETE FROM ml_features WHERE txn_id = %s', (key,))
            self.deleted.append(key)
            keys.add(key)
        elif pick < 0.6 and self.deleted:
            key = self.deleted.pop()
            cur.execute(f'INSERT INTO ml_features (txn_id, tokens) VALUES (%s, {VALUE})', (key, self.value()))
            self.mine.append(key)
            keys.add(key)
        elif pick < 0.7:
            cur.execute('SAVEPOINT s')
            cur.execute(f'UPDATE ml_features SET tokens = {VALUE} WHERE txn_id = %s',
                        (self.value(), self.rng.choice(SHARED_KEYS)))
            cur.execute('ROLLBACK TO SAVEPOINT s')
        return keys

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            mine, deleted = list(self.mine), list(self.deleted)
            try:
                with self.conn.cursor() as cur:
                    keys = self.one_transaction(cur)
                if self.rng.random() < 0.15:
                    self.conn.rollback()
                    self.aborted += 1
                    self.mine, self.deleted = mine, deleted
                else:
                    before = time.monotonic()
                    self.conn.commit()
                    self.committed.append(Committed(started, before, time.monotonic(), keys))
            except psycopg2.Error as e:
                self.errors.append(' '.join(str(e).split()))
                self.conn.rollback()
                self.mine, self.deleted = mine, deleted
            time.sleep(0.003)

    def commits_after(self, moment: float) -> int:
        return sum(1 for c in self.committed if c.started > moment)


def wait_for_commits(writers: list[Writer], after: float, each: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while any(w.commits_after(after) < each for w in writers):
        assert time.monotonic() < deadline, [(w.index, w.commits_after(after), w.errors[-3:]) for w in writers]
        assert all(w.is_alive() for w in writers), [w.errors for w in writers]
        time.sleep(0.05)


def written_bounds(writers: list[Writer], base: tuple[float, float], scan: tuple[float, float]) -> tuple[int, int]:
    """How many keys the proof must count as written: at least those of transactions that began after the
    baseline scan ended and committed before the later scan began; at most those of transactions that
    committed after the baseline scan began and before the later scan ended."""
    surely, possibly = set(), set()
    for c in (c for w in writers for c in w.committed):
        if c.started > base[1] and c.after_commit < scan[0]:
            surely |= c.keys
        if c.after_commit > base[0] and c.before_commit < scan[1]:
            possibly |= c.keys
    return len(surely), len(possibly)


def timed(function: Any, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], tuple[float, float]]:
    started = time.monotonic()
    result = function(*args, **kwargs)
    return result, (started, time.monotonic())


# --- tests -------------------------------------------------------------------------------------

def test_proof_holds_while_the_application_writes_through_migration_and_rollback(db_url: str) -> None:
    installed = write_log(db_url)
    assert not installed.get('failed') and installed['changed'] is True, installed
    stop = threading.Event()
    writers = [Writer(db_url, i, stop) for i in range(3)]
    for w in writers:
        w.start()
    try:
        wait_for_commits(writers, 0, 5)
        baseline, base_t = timed(integrity, db_url)
        assert not baseline.get('failed') and baseline['column_type'] == 'text[]', baseline

        # (a) The real upgrade, text[] -> jsonb, the application writing before, during and after it.
        alembic_started = time.monotonic()
        alembic(db_url, 'upgrade', HEAD)
        upgraded = time.monotonic()
        assert all(w.commits_after(0) and w.committed[0].started < alembic_started for w in writers)
        wait_for_commits(writers, upgraded, 10)
        migrated, migrated_t = timed(integrity, db_url, baseline, fail_on_violation=True)
        assert not migrated.get('failed') and migrated['column_type'] == 'jsonb', migrated
        proof = migrated['proof']
        # What issue 9 saw: the whole fingerprint and the row count no longer match the pre-flight's.
        assert migrated['fingerprint'] != baseline['fingerprint']
        assert (proof['method'], proof['matches'], proof['write_log_active']) == ('untouched_rows', True, True), proof
        low, high = written_bounds(writers, base_t, migrated_t)
        assert 0 < low <= proof['rows_written'] <= high, (low, proof['rows_written'], high)
        assert proof['rows_compared'] >= SEED_ROWS - 400 - 450
        assert proof['fingerprint_untouched_before'] == proof['fingerprint_untouched_after']

        # (b) The real downgrade, jsonb -> text[] (pg_temp function), proven against the same pre-flight baseline.
        alembic(db_url, 'downgrade', BASE)
        downgraded = time.monotonic()
        wait_for_commits(writers, downgraded, 10)
        rolled_back, rolled_t = timed(integrity, db_url, baseline)
        assert not rolled_back.get('failed') and rolled_back['column_type'] == 'text[]', rolled_back
        proof = rolled_back['proof']
        assert (proof['method'], proof['matches']) == ('untouched_rows', True), proof
        low, high = written_bounds(writers, base_t, rolled_t)
        assert 0 < low <= proof['rows_written'] <= high, (low, proof['rows_written'], high)
    finally:
        stop.set()
        for w in writers:
            w.join(timeout=30)
            w.conn.close()
    # The application never failed, wrote on the same connections across both conversions, and aborted some.
    assert [w.errors for w in writers] == [[], [], []]
    assert all(w.commits_after(upgraded) and w.commits_after(downgraded) for w in writers)
    assert sum(w.aborted for w in writers) > 0

    # A broken conversion of a row nobody wrote, by a session the log skips: caught.
    sql(db_url, "UPDATE ml_features SET tokens = array_append(tokens, 'broken') WHERE txn_id = %s",
        (UNTOUCHED_KEY,), log=False)
    broken = integrity(db_url, baseline)
    assert broken['proof']['matches'] is False
    assert broken['proof']['rows_written'] == integrity(db_url, baseline)['proof']['rows_written']
    assert broken['proof']['fingerprint_untouched_before'] != broken['proof']['fingerprint_untouched_after']


def test_first_write_by_a_transaction_open_at_the_baseline_and_aborted_ones(db_url: str) -> None:
    assert write_log(db_url)['changed'] is True
    sql(db_url, "UPDATE ml_features SET tokens = '{before}' WHERE txn_id = 50")  # visible in the baseline
    open_at_baseline = psycopg2.connect(db_url)
    with open_at_baseline.cursor() as cur:
        cur.execute("UPDATE ml_features SET tokens = '{open}' WHERE txn_id = 10")
        cur.execute("INSERT INTO ml_features (txn_id, tokens) VALUES (9000001, '{new}')")
    baseline = integrity(db_url)
    open_at_baseline.commit()
    open_at_baseline.close()

    aborted = psycopg2.connect(db_url)
    with aborted.cursor() as cur:
        cur.execute("UPDATE ml_features SET tokens = '{aborted}' WHERE txn_id = 11")
        cur.execute("DELETE FROM ml_features WHERE txn_id = 17")
    aborted.rollback()
    aborted.close()
    savepoints = psycopg2.connect(db_url)
    with savepoints.cursor() as cur:
        cur.execute('SAVEPOINT s')
        cur.execute("UPDATE ml_features SET tokens = '{gone}' WHERE txn_id = 12")
        cur.execute('ROLLBACK TO SAVEPOINT s')
        cur.execute("UPDATE ml_features SET tokens = NULL WHERE txn_id = 13")
        cur.execute('DELETE FROM ml_features WHERE txn_id = 14')
    savepoints.commit()
    savepoints.close()
    alembic(db_url, 'upgrade', HEAD)
    sql(db_url, 'UPDATE ml_features SET tokens = \'["twice"]\' WHERE txn_id = 10')  # K's first entry is the open one's
    sql(db_url, 'UPDATE ml_features SET tokens = tokens WHERE txn_id = 15')
    sql(db_url, 'UPDATE ml_features SET txn_id = 9000002 WHERE txn_id = 16')
    sql(db_url, 'UPDATE ml_features SET tokens = \'"a JSON string"\' WHERE txn_id = 18')
    sql(db_url, "UPDATE ml_features SET tokens = 'null' WHERE txn_id = 19")

    proof = integrity(db_url, baseline, sample_keys=['16', '50', '10', '11', '9000002'])['proof']
    # K = 10 and 9000001 (the open transaction), 13, 14, 15, 16, 9000002, 18, 19; not 50, 11, 17, 12.
    assert (proof['rows_written'], proof['matches']) == (9, True), proof
    assert proof['written_sample_keys'] == ['16', '10', '9000002']
    # Now SEED_ROWS rows (9000001 in, 14 out); 7 of them have a key in K (10, 9000001, 13, 15, 9000002, 18, 19).
    assert proof['rows_compared'] == SEED_ROWS - 7

    # A row the conversion broke and the application wrote afterwards: the logged old row is the broken one.
    sql(db_url, "UPDATE ml_features SET tokens = '[\"broken\"]' WHERE txn_id = 20", log=False)
    sql(db_url, "UPDATE ml_features SET tokens = '[\"app\"]' WHERE txn_id = 20")
    proof = integrity(db_url, baseline)['proof']
    assert (proof['rows_written'], proof['matches']) == (10, False), proof


def test_logged_hashes_are_the_scan_lines_on_every_connection_across_alter_type(db_url: str) -> None:
    """A connection that wrote before each ALTER ... TYPE keeps writing after it, and logs the same lines."""
    assert write_log(db_url)['changed'] is True
    app = psycopg2.connect(db_url, application_name='lm_test_app_long_lived')
    app.autocommit = True
    expected: list[tuple[str, bool, int | None]] = []
    try:
        def write(statement: str, key: int, had_old: bool = True) -> None:
            expected.append((str(key), had_old, expected_line_hash(db_url, key) if had_old else None))
            with app.cursor() as cur:
                cur.execute(statement, (key,))

        for step in ('text[]', 'jsonb', 'text[] again'):
            write(f'UPDATE ml_features SET tokens = {value_of(json.dumps(["u", step]))} WHERE txn_id = %s',
                  30 + len(expected))
            write('UPDATE ml_features SET tokens = NULL WHERE txn_id = %s', 40 + len(expected))
            write('DELETE FROM ml_features WHERE txn_id = %s', 50 + len(expected))
            write(f'INSERT INTO ml_features (txn_id, tokens) VALUES (%s, {value_of(json.dumps(["i"]))})',
                  9_100_000 + len(expected), had_old=False)
            if step == 'text[]':
                alembic(db_url, 'upgrade', HEAD)
            elif step == 'jsonb':
                write("UPDATE ml_features SET tokens = 'null' WHERE txn_id = %s", 60)  # JSON null, not SQL NULL
                write("UPDATE ml_features SET tokens = '[\"after\"]' WHERE txn_id = %s", 60)
                alembic(db_url, 'downgrade', BASE)
        assert column_type(db_url) == 'text[]'
    finally:
        app.close()
    logged = sql(db_url, f'SELECT key, had_old, old_hash1 FROM {HS}.write_log WHERE run_id = %s ORDER BY seq', (RUN,))
    assert logged == expected
    assert ('60', True, expected_json_null_hash(db_url)) in logged


def expected_json_null_hash(url: str) -> int:
    return sql(url, "SELECT hashtextextended('60:null', x'502D44CD70AB'::bigint)")[0][0]


def test_a_plpgsql_trigger_reading_old_column_would_break_the_application(db_url: str) -> None:
    """The control for the test above: the obvious trigger fails the application's next write after the ALTER,
    on a connection that fired it before (its cached plan keeps text[])."""
    sql(db_url, """CREATE FUNCTION naive_log() RETURNS trigger LANGUAGE plpgsql AS $$
                   BEGIN PERFORM hashtextextended(coalesce(to_jsonb(OLD.tokens)::text, 'NULL'), 1); RETURN NULL; END $$;
                   CREATE TRIGGER naive AFTER UPDATE ON ml_features FOR EACH ROW EXECUTE FUNCTION naive_log()""")
    app = psycopg2.connect(db_url)
    app.autocommit = True
    try:
        with app.cursor() as cur:
            cur.execute('UPDATE ml_features SET tokens = tokens WHERE txn_id = 1')
            sql(db_url, 'ALTER TABLE ml_features ALTER COLUMN tokens TYPE jsonb USING to_jsonb(tokens)')
            with pytest.raises(psycopg2.Error, match='does not match that when preparing the plan'):
                cur.execute('UPDATE ml_features SET tokens = tokens WHERE txn_id = 1')
    finally:
        app.close()


def test_check_mode_idempotence_other_runs_and_absent(db_url: str) -> None:
    dry = write_log(db_url, check=True)
    assert not dry.get('failed') and dry['changed'] is True and dry['key_column'] == 'txn_id'
    assert dry['actions'] == [f'create schema {HS}', f'create table {HS}.write_log',
                              f"create function {dry['function']}",
                              'create trigger ledgermind_write_log on public.ml_features']
    assert sql(db_url, 'SELECT to_regnamespace(%s), count(*) FROM pg_trigger WHERE tgname = %s GROUP BY 1',
               (HS, 'ledgermind_write_log')) == []

    made = write_log(db_url)
    assert made['changed'] is True and made['actions'] == dry['actions'] and made['trigger'] == 'ledgermind_write_log'
    assert sql(db_url, f"SELECT relpersistence FROM pg_class WHERE oid = '{HS}.write_log'::regclass") == [('u',)]
    function_name = made['function'].split('.')[1]
    assert sql(db_url, 'SELECT prosecdef FROM pg_proc WHERE proname = %s', (function_name,)) == [(True,)]
    again = write_log(db_url)
    assert again['changed'] is False and again['actions'] == []
    assert write_log(db_url, check=True)['changed'] is False

    # The run history (pg_run_record's) says RUN is at work: another run may not take its trigger.
    sql(db_url, f"CREATE TABLE {HS}.run_history (run_id text PRIMARY KEY, status text NOT NULL);"
                f"INSERT INTO {HS}.run_history VALUES ('{RUN}', 'running')")
    other = write_log(db_url, run_id='run-other')
    assert other['failed'] and other['other_run_id'] == RUN
    assert f'already has trigger ledgermind_write_log for run {RUN}' in other['msg']

    sql(db_url, "UPDATE ml_features SET tokens = '{x}' WHERE txn_id <= 5")
    sql(db_url, 'DELETE FROM ml_features WHERE txn_id = 6')
    sql(db_url, "UPDATE ml_features SET tokens = '{y}' WHERE txn_id = 7", log=False)  # our own sessions: skipped
    sql(db_url, f"INSERT INTO {HS}.write_log (run_id, key, had_old) VALUES ('run-other', '1', false)")
    assert log_rows(db_url) == 6

    dry_absent = write_log(db_url, check=True, state='absent')
    assert dry_absent['changed'] is True and dry_absent['rows_logged'] == 6
    assert dry_absent['actions'] == ['drop trigger ledgermind_write_log on public.ml_features',
                                     f'delete 6 entries of run {RUN} from {HS}.write_log']
    assert log_rows(db_url) == 6 and triggers(db_url) == 1

    removed = write_log(db_url, state='absent')
    assert removed['changed'] is True and removed['rows_logged'] == 6 and removed['actions'] == dry_absent['actions']
    assert triggers(db_url) == 0
    # The function stays: restoring an archive dumped with the trigger recreates the trigger, which needs it.
    assert sql(db_url, 'SELECT count(*) FROM pg_proc WHERE proname = %s', (function_name,)) == [(1,)]
    assert log_rows(db_url) == 0 and log_rows(db_url, 'run-other') == 1
    sql(db_url, "UPDATE ml_features SET tokens = '{z}' WHERE txn_id = 8")
    assert log_rows(db_url) == 0
    final = write_log(db_url, state='absent')
    assert (final['changed'], final['actions'], final['rows_logged']) == (False, [], 0)


def test_a_finished_runs_trigger_is_taken_over_and_removed(db_url: str) -> None:
    """A restore from backup brings back the trigger the archive was dumped with, under the run that took the
    backup and has long finished: the next run's present takes it over, absent removes it with its entries."""
    write_log(db_url)
    sql(db_url, f"CREATE TABLE {HS}.run_history (run_id text PRIMARY KEY, status text NOT NULL);"
                f"INSERT INTO {HS}.run_history VALUES ('{RUN}', 'passed')")
    sql(db_url, "UPDATE ml_features SET tokens = '{x}' WHERE txn_id <= 3")
    taken = write_log(db_url, run_id='run-next')
    assert not taken.get('failed') and taken['replaced_run_id'] == RUN, taken
    assert log_rows(db_url) == 0 and triggers(db_url) == 1
    write_log(db_url, run_id=RUN)  # not running: its trigger may be taken back too (a restore does just that)
    gone = write_log(db_url, run_id='run-next', state='absent')
    assert gone['other_run_id'] == RUN and triggers(db_url) == 0, gone


def test_refuses_tables_without_a_usable_key(db_url: str) -> None:
    sql(db_url, 'CREATE TABLE no_pk (id bigint, tokens text[])')
    r = run('pg_write_log', dict(database_url=db_url, table='no_pk', column='tokens', run_id=RUN))
    assert r['failed'] and r['msg'].startswith('Table public.no_pk has no primary key: the write log names rows')
    r = run('pg_write_log', dict(database_url=db_url, table='no_pk', column='tokens', run_id=RUN, key='id'))
    assert r['failed'] and r['msg'] == ('Key column public.no_pk.id is nullable and not alone in a valid unique '
                                        'index: the write log and the fingerprint name rows by it, so it must be '
                                        'NOT NULL and unique on its own.')
    sql(db_url, 'ALTER TABLE no_pk ALTER COLUMN id SET NOT NULL; CREATE UNIQUE INDEX ON no_pk (id)')
    r = run('pg_write_log', dict(database_url=db_url, table='no_pk', column='tokens', run_id=RUN, key='id'))
    assert not r.get('failed') and r['changed'] is True and r['key_column'] == 'id'
    r = run('pg_write_log', dict(database_url=db_url, table='ml_features', column='nope', run_id=RUN))
    assert r['failed'] and r['msg'] == 'Column public.ml_features.nope does not exist.'
    r = run('pg_write_log', dict(database_url=db_url, table='nope', column='tokens', run_id=RUN))
    assert r['failed'] and r['msg'].startswith('Table public.nope does not exist')


def test_gives_up_after_its_tries_naming_the_session_holding_the_table(db_url: str) -> None:
    """The trigger's DDL waits at most one try (lock_timeout_ms) for the table, a bounded number of times, and
    then names who held it; once that session is gone, it goes through."""
    blocker = psycopg2.connect(db_url, application_name='lm_test_write_log_blocker')
    try:
        with blocker.cursor() as cur:
            cur.execute('SELECT pg_backend_pid()')
            pid = cur.fetchone()[0]
            cur.execute('LOCK TABLE ml_features IN ROW EXCLUSIVE MODE')  # what a writing transaction holds
        budget = dict(lock_timeout_ms=100, retries=3, retry_delay=0.05, max_retry_delay=0.05)
        failed = write_log(db_url, **budget)
        assert failed['failed'] and failed['changed'] is False and failed['tries'] == 3, failed
        assert failed['msg'].startswith('public.ml_features stayed locked by another session while installing the '
                                        f'write log on it: pid {pid} '), failed['msg']
        assert 'RowExclusiveLock' in failed['msg'] and '3 tries, each waiting at most 100 ms' in failed['msg']
        assert triggers(db_url) == 0
        blocker.rollback()
        assert write_log(db_url, **budget)['changed'] is True and triggers(db_url) == 1
        with blocker.cursor() as cur:
            cur.execute('LOCK TABLE ml_features IN ACCESS SHARE MODE')  # a reader: DROP TRIGGER waits for it too
        gone = write_log(db_url, state='absent', **budget)
        assert gone['failed'] and 'while removing the write log from it: pid' in gone['msg'], gone
        assert 'AccessShareLock' in gone['msg'] and triggers(db_url) == 1
    finally:
        blocker.close()
    assert write_log(db_url, state='absent')['changed'] is True and triggers(db_url) == 0
