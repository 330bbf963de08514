"""pg_online_convert against the real PostgreSQL of scripts/stack: ml_features.tokens text[] <-> jsonb online.

Every test gets a fresh demo database ``lm_test_oc_<pid>``: a copy of one seeded once by scripts/reset_demo_db.py
(revision 20251109_add_user_name_picture, ``tokens text[]``) plus rows with the awkward values. The module runs as
Ansible runs it: ansible-playbook, one task per phase (the role's order), results read through the json callback.
Application writers use their own long-lived connections.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras
import pytest
from stackdb import drop_database, query, reachable_server_url, scalar, with_db

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / '.build' / 'collections'))

from ansible_collections.ledgermind.migrations.plugins.module_utils._queries import COLUMN_CATALOG_SQL  # noqa: E402

BIN = Path(sys.executable).parent
SCRATCH_DB = f'lm_test_oc_{os.getpid()}'
TEMPLATE_DB = SCRATCH_DB + '_seed'
SEED_ROWS = 2500
HS = 'ledgermind_migrations'
HEAD, BASE = '502d44cd70ab', '20251109_add_user_name_picture'
INDEX = 'ix_ml_features_tokens_gin'
SHADOW = {'jsonb': 'tokens__ledgermind_jsonb', 'text[]': 'tokens__ledgermind_text'}
TRIGGER = 'zz_ledgermind_online_sync'
RUN = 'run-online-1'
PHASES = ('plan', 'expand', 'backfill', 'index', 'verify', 'swap')
MODULE = 'ledgermind.migrations.pg_online_convert'
# Whatever the column's type (text[] or jsonb): the JSON array becomes the column's value through the row type.
VALUE = "(jsonb_populate_record(NULL::ml_features, jsonb_build_object('tokens', %s::jsonb))).tokens"
# Rows whose values are the awkward ones, added to the seed (which has some of them at random).
EDGE_ROWS = {900001: None, 900002: [], 900003: [None], 900004: ['a', None, 'b'], 900005: ['', 'NULL', ' sp '],
             900006: ['café', 'zürich', '東京', '🙂', 'ß'], 900007: ['a,b', '{braces}', '"quoted"', 'back\\slash'],
             900008: ['dup', 'dup', 'b', 'a']}


# --- fixtures and helpers ----------------------------------------------------------------------

@pytest.fixture(scope='module')
def template_db() -> Iterator[tuple[str, str]]:
    """The server's URL and a demo database made once by scripts/reset_demo_db.py, with the edge rows: each test
    gets a copy of it (CREATE DATABASE ... TEMPLATE), fresh and quicker than seeding again."""
    server = reachable_server_url()
    proc = subprocess.run([sys.executable, REPO / 'scripts' / 'reset_demo_db.py', '--rows', str(SEED_ROWS),
                           '--db', TEMPLATE_DB], env={**os.environ, 'DATABASE_URL': server},
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    url = with_db(server, TEMPLATE_DB)
    for key, value in EDGE_ROWS.items():
        query(url, f'INSERT INTO ml_features (txn_id, tokens) VALUES (%s, {VALUE})', (key, as_json(value)))
    query(url, 'ANALYZE ml_features')
    yield server, TEMPLATE_DB
    for name in (TEMPLATE_DB, SCRATCH_DB, SCRATCH_DB + '_b'):
        drop_database(server, name)


@pytest.fixture
def fresh_db(template_db: tuple[str, str]) -> Callable[..., str]:
    """A function making a fresh copy of the demo database (``suffix`` for a second one); its URL."""
    server, template = template_db

    def make(suffix: str = '') -> str:
        drop_database(server, SCRATCH_DB + suffix)
        query(with_db(server, 'postgres'), f'CREATE DATABASE "{SCRATCH_DB + suffix}" TEMPLATE "{template}"')
        return with_db(server, SCRATCH_DB + suffix)
    return make


def as_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(('PG', 'ANSIBLE_'))}
    env.update(ANSIBLE_CONFIG=str(REPO / 'ansible.cfg'), ANSIBLE_LOAD_CALLBACK_PLUGINS='1',
               ANSIBLE_STDOUT_CALLBACK='json', ANSIBLE_DEPRECATION_WARNINGS='0', ANSIBLE_NOCOLOR='1',
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return env


def task(url: str, phase: str, target: str | None = 'jsonb', check: bool = False, **more: Any) -> dict[str, Any]:
    """One task of the module, with the role's arguments for ``target`` (jsonb: the migration; text[]: the
    rollback)."""
    args: dict[str, Any] = dict(database_url=url, phase=phase, table='ml_features', column='tokens', run_id=RUN)
    if target:
        args.update(target_type=target, index_name=INDEX, revision=HEAD if target == 'jsonb' else BASE,
                    allowed_revisions=[BASE if target == 'jsonb' else HEAD])
    args.update(more)
    return {'name': f"{phase} {target or ''}{' (check)' if check else ''}", MODULE: args, 'check_mode': check}


def full(url: str, target: str, **more: Any) -> list[dict[str, Any]]:
    return [task(url, phase, target, **more) for phase in PHASES]


def playbook(tmp_path: Path, tasks: list[dict[str, Any]]) -> list[str]:
    """Writes the playbook (JSON is YAML); the ansible-playbook command that runs it."""
    path = tmp_path / f'online_{time.monotonic_ns()}.yml'
    path.write_text(json.dumps([{'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}]))
    return [str(BIN / 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', '-e',
            f'ansible_python_interpreter={sys.executable}', str(path)]


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace('Z', '+00:00')).timestamp()


def play(tmp_path: Path, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs the tasks in one play; each task's host result, with ``_window`` (wall-clock start and end). A failed
    task ends the play: the list stops there."""
    proc = subprocess.run(playbook(tmp_path, tasks), cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.stdout.strip() and '{' in proc.stdout, proc.stderr
    doc = json.loads(proc.stdout[proc.stdout.index('{'):])
    results = []
    for entry in doc['plays'][0]['tasks']:
        result = entry['hosts']['localhost']
        duration = entry['task']['duration']
        result['_window'] = (_epoch(duration['start']), _epoch(duration['end']))
        results.append(result)
    assert 'Traceback' not in proc.stdout + proc.stderr, proc.stderr
    assert (proc.returncode != 0) == any(r.get('failed') for r in results), (proc.returncode, results)
    return results


def ok(results: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """All ``count`` tasks ran and none failed."""
    failed = [(r.get('msg'), r.get('state')) for r in results if r.get('failed')]
    assert not failed and len(results) == count, failed or len(results)
    return results


def assert_holds(holds: bool, what: str) -> None:
    assert holds, what


def column_type(url: str) -> str | None:
    return scalar(url, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                       "'ml_features'::regclass AND attname = 'tokens' AND NOT attisdropped")


def revision(url: str) -> list[str]:
    return [r[0] for r in query(url, 'SELECT version_num FROM alembic_version')]


def token_indexes(url: str) -> list[tuple[str, str, bool]]:
    return query(url, "SELECT c.relname::text, pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i "
                      "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'ml_features'::regclass "
                      "AND c.relname <> 'ml_features_pkey' ORDER BY 1")


def gin_opclass(url: str) -> str | None:
    return scalar(url, "SELECT string_agg(oc.opcname, ',') FROM pg_index i, unnest(i.indclass) k(opc) "
                       "JOIN pg_opclass oc ON oc.oid = k.opc WHERE i.indexrelid = to_regclass(%s)", (INDEX,))


def table_state(url: str) -> dict[str, Any]:
    """Everything a phase could change, data included (as one digest): equal before and after means nothing
    changed."""
    progress_present = scalar(url, 'SELECT to_regclass(%s) IS NOT NULL', (f'{HS}.online_conversion',))
    return dict(
        columns=query(url, "SELECT attnum, attname::text, format_type(atttypid, atttypmod), attnotnull, "
                           "col_description(attrelid, attnum) FROM pg_attribute WHERE attrelid = "
                           "'ml_features'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"),
        indexes=token_indexes(url),
        triggers=query(url, "SELECT tgname::text, tgenabled::text FROM pg_trigger WHERE tgrelid = "
                            "'ml_features'::regclass AND NOT tgisinternal ORDER BY 1"),
        views=query(url, "SELECT viewname::text, definition FROM pg_views WHERE schemaname = 'public' ORDER BY 1"),
        history=[name for (name,) in query(url, 'SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n '
                                                'ON n.oid = p.pronamespace WHERE n.nspname = %s ORDER BY 1', (HS,))],
        progress=query(url, f'SELECT to_jsonb(o)::text FROM {HS}.online_conversion o') if progress_present else None,
        revision=revision(url),
        data=scalar(url, "SELECT md5(string_agg(to_jsonb(f)::text || ctid::text, ',' ORDER BY txn_id)) "
                         "FROM ml_features f"),
    )


def tokens_digest(url: str) -> str:
    """A digest of the key, the column and the shadow columns present (the rest of the row left out)."""
    shadows = [name for (name,) in query(url, "SELECT attname::text FROM pg_attribute WHERE attrelid = "
                                              "'ml_features'::regclass AND attname LIKE 'tokens%' "
                                              'AND NOT attisdropped')]
    return scalar(url, "SELECT md5(string_agg(concat_ws('|', txn_id, {}), ',' ORDER BY txn_id)) FROM ml_features"
                  .format(', '.join(f'coalesce({c}::text, \'-\')' for c in sorted(shadows))))


def contents(url: str) -> dict[int, list[str | None] | None]:
    """txn_id -> tokens as a Python list (order kept, NULL elements None) or None for SQL NULL, whatever the type.
    A jsonb value must be an array or SQL NULL (a JSON null would read as None too: refused here)."""
    if column_type(url) == 'jsonb':
        rows = query(url, 'SELECT txn_id, tokens, jsonb_typeof(tokens) FROM ml_features')
        assert {kind for _, _, kind in rows} <= {'array', None}, {kind for _, _, kind in rows}
    else:
        rows = query(url, 'SELECT txn_id, tokens, array_ndims(tokens) FROM ml_features')
        assert {dims for _, value, dims in rows if value} == {1}
    return {key: value for key, value, _ in rows}


def text_contents(url: str) -> dict[int, str | None]:
    """txn_id -> tokens::text: the exact text[] (or jsonb) literal."""
    return dict(query(url, 'SELECT txn_id, tokens::text FROM ml_features'))


def assert_same(actual: dict[int, Any], expected: dict[int, Any]) -> None:
    diff = sorted(k for k in actual.keys() | expected.keys() if actual.get(k, 'absent') != expected.get(k, 'absent'))
    assert not diff, [(k, actual.get(k, 'absent'), expected.get(k, 'absent')) for k in diff[:8]] + [len(diff)]


def nothing_left(url: str) -> None:
    """No shadow column, no trigger, no function, no progress after a swap."""
    state = table_state(url)
    assert [c[1] for c in state['columns'] if c[1].startswith('tokens__')] == []
    assert state['triggers'] == []
    assert state['history'] == [], state['history']
    assert state['progress'] in (None, [])


def assert_jsonb_head(url: str) -> None:
    assert column_type(url) == 'jsonb'
    assert token_indexes(url) == [(INDEX, f'CREATE INDEX {INDEX} ON public.ml_features USING gin (tokens)', True)]
    assert gin_opclass(url) == 'jsonb_ops'
    assert revision(url) == [HEAD]
    nothing_left(url)


def assert_text_base(url: str) -> None:
    assert column_type(url) == 'text[]'
    assert token_indexes(url) == []
    assert revision(url) == [BASE]
    nothing_left(url)


def progress_row(url: str) -> dict[str, Any]:
    rows = query(url, f'SELECT to_jsonb(o) FROM {HS}.online_conversion o')
    assert len(rows) == 1, rows
    return rows[0][0]


def alembic(url: str, *args: str) -> None:
    proc = subprocess.run([sys.executable, '-m', 'alembic', '-c', str(REPO / 'examples' / 'backend' / 'alembic.ini'),
                           *args], cwd='/', env={**os.environ, 'DATABASE_URL': url}, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, f'alembic {args} failed:\n{proc.stdout}\n{proc.stderr}'


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.05)


# --- the application ---------------------------------------------------------------------------

DELETED = object()
VALUES: list[Any] = [None, [], [None], ['x', None, 'y'], ['café', 'zürich', '東京', '🙂', 'ß'],
                     ['a,b', '{braces}', '"quoted"', 'back\\slash', 'NULL', '', ' sp ']]


@dataclass(eq=False)  # threads are hashed by identity
class Writer(threading.Thread):
    """One application connection for the whole test, in short READ COMMITTED transactions (some rolled back, some
    with a rolled-back savepoint) over keys only it writes, so that its log of committed writes is the truth for
    them: key -> last committed value, or DELETED."""
    url: str
    index: int
    stop: threading.Event
    pause: threading.Event
    log: dict[int, Any] = field(default_factory=dict)
    commits: list[float] = field(default_factory=list)  # wall clock, after COMMIT returned
    aborted: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)
        self.idle = threading.Event()
        self.rng = random.Random(self.index)
        self.conn = psycopg2.connect(self.url, application_name=f'lm_test_app_{self.index}')
        self.fresh = iter(range(10_000_000 + 1_000_000 * self.index, 10_000_000 + 1_000_000 * (self.index + 1)))
        self.live = [k for k in range(1, 1201) if k % 3 == self.index]  # its own seed rows
        self.deleted: list[int] = []

    def value(self) -> Any:
        if self.rng.random() < 0.3:
            return [f'w{self.index}', str(self.rng.randrange(10**6))]
        return self.rng.choice(VALUES)

    def one_transaction(self, cur: Any) -> dict[int, Any]:
        pending: dict[int, Any] = {}
        for key in sorted(self.rng.sample(self.live, min(len(self.live), self.rng.randint(1, 3)))):
            value = self.value()
            cur.execute(f'UPDATE ml_features SET tokens = {VALUE} WHERE txn_id = %s', (as_json(value), key))
            pending[key] = value
        pick = self.rng.random()
        if pick < 0.3:
            key, value = next(self.fresh), self.value()
            cur.execute(f'INSERT INTO ml_features (txn_id, tokens) VALUES (%s, {VALUE})', (key, as_json(value)))
            self.live.append(key)
            pending[key] = value
        elif pick < 0.45 and len(self.live) > 50:
            key = self.live.pop(self.rng.randrange(len(self.live)))
            cur.execute('DELETE FROM ml_features WHERE txn_id = %s', (key,))
            self.deleted.append(key)
            pending[key] = DELETED
        elif pick < 0.55 and self.deleted:
            key, value = self.deleted.pop(), self.value()
            cur.execute(f'INSERT INTO ml_features (txn_id, tokens) VALUES (%s, {VALUE})', (key, as_json(value)))
            self.live.append(key)
            pending[key] = value
        elif pick < 0.65:
            cur.execute('SAVEPOINT s')
            cur.execute(f'UPDATE ml_features SET tokens = {VALUE} WHERE txn_id = %s',
                        (as_json(['rolled back']), self.rng.choice(self.live)))
            cur.execute('ROLLBACK TO SAVEPOINT s')
        elif pick < 0.75:  # an UPDATE that leaves tokens alone (the trigger fires all the same)
            cur.execute("UPDATE ml_features SET merchant = 'm' || txn_id WHERE txn_id = %s",
                        (self.rng.choice(self.live),))
        return pending

    def run(self) -> None:
        while not self.stop.is_set():
            if self.pause.is_set():
                self.idle.set()
                time.sleep(0.01)
                continue
            live, deleted = list(self.live), list(self.deleted)
            try:
                with self.conn.cursor() as cur:
                    pending = self.one_transaction(cur)
                if self.rng.random() < 0.15:
                    self.conn.rollback()
                    self.aborted += 1
                    self.live, self.deleted = live, deleted
                else:
                    self.conn.commit()
                    self.commits.append(time.time())
                    self.log.update(pending)
            except psycopg2.Error as e:
                self.errors.append(' '.join(str(e).split()))
                self.conn.rollback()
                self.live, self.deleted = live, deleted
            time.sleep(0.003)

    def commits_between(self, start: float, end: float = math.inf) -> int:
        return sum(1 for c in self.commits if start <= c <= end)


def wait_for_commits(writers: list[Writer], each: int, timeout: float = 30) -> None:
    since = time.time()
    wait_until(lambda: all(w.commits_between(since) >= each for w in writers) or
               not all(w.is_alive() for w in writers), timeout, 'commits')
    assert all(w.is_alive() for w in writers), [w.errors for w in writers]


def paused(writers: list[Writer]) -> None:
    for w in writers:
        w.pause.set()
    wait_until(lambda: all(w.idle.is_set() for w in writers), 30, 'the writers to pause')


def resume(writers: list[Writer]) -> None:
    for w in writers:
        w.idle.clear()
        w.pause.clear()


def expected_contents(before: dict[int, Any], writers: list[Writer]) -> dict[int, Any]:
    expected = dict(before)
    for w in writers:  # each writes only its own keys: its log is the last word on them
        for key, value in w.log.items():
            if value is DELETED:
                expected.pop(key, None)
            else:
                expected[key] = value
    return expected


@dataclass(eq=False)
class App(threading.Thread):
    """Reads and writes (not tokens) in autocommit statements, timing each: how long a query queued."""
    url: str
    stop: threading.Event
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (started, seconds)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)
        self.conn = psycopg2.connect(self.url, application_name='lm_test_app_latency')
        self.conn.autocommit = True

    def run(self) -> None:
        key = 100
        while not self.stop.is_set():
            key = key % 2000 + 2
            started = time.monotonic()
            try:
                with self.conn.cursor() as cur:
                    cur.execute('SELECT tokens FROM ml_features WHERE txn_id = %s', (key,))
                    cur.fetchall()
                    cur.execute("UPDATE ml_features SET merchant = 'app' WHERE txn_id = %s", (key + 1,))
            except psycopg2.Error as e:
                self.errors.append(' '.join(str(e).split()))
            self.latencies.append((started, time.monotonic() - started))
            time.sleep(0.01)

    def worst(self, start: float, end: float) -> float:
        return max((s for t, s in self.latencies if start <= t <= end), default=0.0)


# --- tests -------------------------------------------------------------------------------------

def test_writers_keep_every_committed_write_through_online_migration_and_rollback(
        fresh_db: Callable[..., str], tmp_path: Path) -> None:
    url = fresh_db()
    before = contents(url)
    stop, writers = threading.Event(), []
    try:
        writers = [Writer(url, i, stop, threading.Event()) for i in range(3)]
        for w in writers:
            w.start()
        wait_for_commits(writers, 5)

        # text[] -> jsonb, every phase, the writers writing before, during and after each.
        migrate = ok(play(tmp_path, full(url, 'jsonb', batch_size=150, batch_pause=0.05)), len(PHASES))
        by_phase = dict(zip(PHASES, migrate, strict=True))
        backfill = by_phase['backfill']
        assert backfill['changed'] and backfill['progress']['done'] is True, backfill
        assert backfill['progress']['rows_done'] >= SEED_ROWS, backfill['progress']
        assert by_phase['verify']['verify']['differing'] == 0 and by_phase['swap']['changed'], by_phase['swap']
        for phase in ('backfill', 'swap'):
            start, end = by_phase[phase]['_window']
            assert all(w.commits_between(start, end) for w in writers), (phase, [len(w.commits) for w in writers])
        wait_for_commits(writers, 10)  # now writing jsonb, on the same connections
        paused(writers)
        assert_jsonb_head(url)
        assert_same(contents(url), expected_contents(before, writers))
        resume(writers)
        wait_for_commits(writers, 10)

        # jsonb -> text[], the same way.
        rollback = ok(play(tmp_path, full(url, 'text[]', batch_size=150, batch_pause=0.05)), len(PHASES))
        by_phase = dict(zip(PHASES, rollback, strict=True))
        assert by_phase['backfill']['progress']['done'] is True and by_phase['swap']['changed'], by_phase['swap']
        start, end = by_phase['backfill']['_window']
        assert all(w.commits_between(start, end) for w in writers)
        wait_for_commits(writers, 10)
        paused(writers)
    finally:
        stop.set()
        for w in writers:
            w.join(timeout=30)
            w.conn.close()
    assert [w.errors for w in writers] == [[], [], []]
    assert sum(w.aborted for w in writers) > 0 and all(len(w.log) > 50 for w in writers)
    assert any(value is DELETED for w in writers for value in w.log.values())
    assert_text_base(url)
    assert_same(contents(url), expected_contents(before, writers))


def test_interrupted_backfill_resumes_from_the_recorded_key(fresh_db: Callable[..., str], tmp_path: Path) -> None:
    url = fresh_db()
    total = scalar(url, 'SELECT count(*) FROM ml_features')
    original = contents(url)
    ok(play(tmp_path, [task(url, 'expand')]), 1)

    # The playbook killed (SIGKILL, module process and all) in the middle of the backfill.
    proc = subprocess.Popen(playbook(tmp_path, [task(url, 'backfill', batch_size=40, batch_pause=0.05)]), cwd=REPO,
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: query(url, f'SELECT 1 FROM {HS}.online_conversion WHERE rows_done >= 400'), 60,
                   'the backfill to make progress')
    finally:
        # ansible's worker runs the module in a session of its own: the whole tree, as a cancelled job is.
        for pid in process_tree(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)
    # This database's sessions only: the server is shared with other suites running the collection's modules.
    wait_until(lambda: not query(url, "SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'ledgermind%' "
                                      'AND datname = current_database()'), 30, "the killed module's session to end")
    killed = progress_row(url)
    last_key, done = int(killed['last_key']), int(killed['rows_done'])
    assert 400 <= done < total and killed['backfilled_at'] is None, killed
    shadow = SHADOW['jsonb']
    differs = f'{shadow} IS DISTINCT FROM to_jsonb(tokens)'
    # What the record says is done is done, and nothing after it: the killed batch was rolled back whole.
    assert scalar(url, f'SELECT count(*) FROM ml_features WHERE txn_id <= %s AND {differs}', (last_key,)) == 0
    assert scalar(url, 'SELECT count(*) FROM ml_features WHERE txn_id <= %s', (last_key,)) == done
    assert scalar(url, f'SELECT count(*) FROM ml_features WHERE txn_id > %s AND {shadow} IS NOT NULL',
                  (last_key,)) == 0

    # Meanwhile the application writes after the recorded key (the trigger fills those shadows) and before it.
    query(url, "UPDATE ml_features SET tokens = '{late,write}' WHERE txn_id IN (%s, %s, 2000)",
          (last_key + 3, last_key + 4))
    query(url, 'DELETE FROM ml_features WHERE txn_id IN (%s, %s)', (last_key + 5, last_key + 6))
    query(url, "INSERT INTO ml_features (txn_id, tokens) VALUES (5000, '{new}')")
    query(url, "UPDATE ml_features SET tokens = '{early}' WHERE txn_id = 1")
    to_write = scalar(url, f'SELECT count(*) FROM ml_features WHERE {differs}')
    after = scalar(url, 'SELECT count(*) FROM ml_features WHERE txn_id > %s', (last_key,))
    assert 0 < to_write < after
    done_rows = dict(query(url, 'SELECT txn_id, ctid::text FROM ml_features WHERE txn_id <= %s', (last_key,)))

    resumed = ok(play(tmp_path, [task(url, 'status'),
                                 task(url, 'backfill', batch_size=100, max_seconds=0.001),
                                 task(url, 'backfill', batch_size=500),
                                 task(url, 'verify'), task(url, 'index'), task(url, 'swap')]), 6)
    status, first, rest = resumed[0], resumed[1]['progress'], resumed[2]['progress']
    assert status['state'] == 'in_progress' and status['progress']['rows_done'] == done, status
    assert status['progress']['done'] is False
    # A slice continues from the recorded key; the next one continues from the slice's.
    assert (first['done'], first['rows_read'], first['rows_done']) == (False, 100, done + 100), first
    assert (rest['done'], rest['rows_read'], rest['rows_done']) == (True, after - 100, done + after), rest
    # Only the rows whose shadow differed were written, once.
    assert first['rows_written'] + rest['rows_written'] == to_write, (first, rest, to_write)
    assert dict(query(url, 'SELECT txn_id, ctid::text FROM ml_features WHERE txn_id <= %s',
                      (last_key,))) == done_rows
    assert resumed[3]['verify']['differing'] == 0 and resumed[5]['changed'], resumed[5]
    assert_jsonb_head(url)
    original.update({last_key + 3: ['late', 'write'], last_key + 4: ['late', 'write'], 2000: ['late', 'write'],
                     5000: ['new'], 1: ['early']})
    del original[last_key + 5], original[last_key + 6]
    assert_same(contents(url), original)


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                stat = Path(f'/proc/{entry}/stat').read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(')', 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def swap_waiting(url: str) -> bool:
    return bool(query(url, "SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE NOT l.granted "
                           "AND a.application_name LIKE 'ledgermind.migrations%' "
                           "AND l.relation = 'ml_features'::regclass"))


def test_swap_meeting_a_long_transaction_fails_cleanly_then_succeeds_once_it_ends(
        fresh_db: Callable[..., str], tmp_path: Path) -> None:
    url = fresh_db()
    ok(play(tmp_path, [task(url, phase) for phase in ('expand', 'backfill', 'index', 'verify')]), 4)
    before, digest = table_state(url), tokens_digest(url)
    budget = dict(lock_timeout_ms=400, retry_delay=0.2, max_retry_delay=0.4)
    blocker = psycopg2.connect(url, application_name='lm_test_long_transaction')
    stop = threading.Event()
    app = App(url, stop)
    try:
        with blocker.cursor() as cur:
            cur.execute('SELECT pg_backend_pid()')
            blocker_pid = cur.fetchone()[0]
            cur.execute('SELECT txn_id FROM ml_features WHERE txn_id = 1 FOR UPDATE')  # open, holding RowShareLock
        app.start()
        wait_until(lambda: len(app.latencies) > 5, 10, 'the application')

        started = time.monotonic()
        [failed] = play(tmp_path, [task(url, 'swap', retries=3, **budget)])
        failed_window = (started, time.monotonic())
        assert failed.get('failed') and failed.get('changed') is False, failed
        message = failed['msg']
        assert f'pid {blocker_pid}' in message and 'RowShareLock' in message and 'FOR UPDATE' in message, message
        assert 'public.ml_features stayed locked by another session' in message, message
        assert '3 tries' in message and '400 ms' in message and 'Nothing was changed' in message, message
        after_failure = table_state(url)
        # Shadow, trigger, verified progress, text[] column, revision, converted values: as they were (the
        # application's merchant updates aside).
        assert {**after_failure, 'data': None} == {**before, 'data': None}
        assert tokens_digest(url) == digest
        assert column_type(url) == 'text[]' and revision(url) == [BASE]

        # Released in the middle of the retries: the swap succeeds on a later try.
        results: list[list[dict[str, Any]]] = []
        swapping = threading.Thread(target=lambda: results.append(
            play(tmp_path, [task(url, 'swap', retries=10, **budget)])), daemon=True)
        swapping.start()
        wait_until(lambda: swap_waiting(url), 30, 'the swap to wait for its lock')
        time.sleep(0.9)  # the first try has given up by now
        blocker.rollback()
        swapping.join(timeout=60)
        success_end = time.monotonic()
        [swapped] = ok(results[0], 1)
        assert swapped['changed'] and 2 <= swapped['swap']['tries'] < 10, swapped
        # The tries that gave way say what they waited for: the long transaction.
        waited = swapped['swap']['waited_for']
        assert waited and waited[0]['attempt'] == 1 and f'pid {blocker_pid}' in waited[0]['held_by'], swapped
    finally:
        stop.set()
        app.join(timeout=30)
        app.conn.close()
        blocker.close()
    assert app.errors == []
    assert_jsonb_head(url)
    # Queued behind the waiting swap for one try at most, never behind the long transaction.
    assert app.worst(*failed_window) < 0.4 + 1.0, app.worst(*failed_window)
    assert app.worst(failed_window[1], success_end) < 0.4 + 1.0
    assert sum(1 for t, _ in app.latencies if failed_window[0] <= t <= failed_window[1]) > 5


def column_catalog(url: str, column: str = 'tokens') -> dict[str, Any]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(COLUMN_CATALOG_SQL, dict(schema='public', table='ml_features', column=column))
            rows = [dict(r) for r in cur.fetchall()]
    finally:
        conn.close()
    assert len(rows) == 1, rows
    return rows[0]


def table_catalog(url: str) -> dict[str, Any]:
    return dict(
        columns={name: column_catalog(url, name) for (name,) in query(
            url, "SELECT attname::text FROM pg_attribute WHERE attrelid = 'ml_features'::regclass AND attnum > 0 "
                 'AND NOT attisdropped')},
        order=[name for (name,) in query(url, "SELECT attname::text FROM pg_attribute WHERE attrelid = "
                                              "'ml_features'::regclass AND attnum > 0 AND NOT attisdropped "
                                              "ORDER BY attnum")],
        indexes=query(url, "SELECT pg_get_indexdef(indexrelid), indisvalid FROM pg_index "
                           "WHERE indrelid = 'ml_features'::regclass ORDER BY 1"),
        constraints=query(url, "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint "
                               "WHERE conrelid = 'ml_features'::regclass ORDER BY 1"),
        triggers=query(url, "SELECT tgname::text FROM pg_trigger WHERE tgrelid = 'ml_features'::regclass"),
        comment=scalar(url, "SELECT obj_description('ml_features'::regclass, 'pg_class')"),
    )


def test_online_end_state_is_the_in_place_upgrades_catalog(fresh_db: Callable[..., str], tmp_path: Path) -> None:
    comment = "merchant tokens ('text' then JSON)"
    in_place, online = fresh_db(), fresh_db('_b')
    for url in (in_place, online):
        query(url, 'COMMENT ON COLUMN ml_features.tokens IS %s', (comment,))
        query(url, "UPDATE ml_features SET tokens = '{same,rows}' WHERE txn_id <= 3")  # content compared below
    original = text_contents(in_place)
    alembic(in_place, 'upgrade', HEAD)
    ok(play(tmp_path, full(online, 'jsonb')), len(PHASES))

    a, b = table_catalog(in_place), table_catalog(online)
    assert a['columns']['tokens'] == {
        'type': 'jsonb', 'not_null': False, 'default': None, 'collatable': False, 'comment': comment,
        'indexes': [f'CREATE INDEX {INDEX} ON public.ml_features USING gin (tokens)'], 'constraints': []}
    assert b['columns']['tokens'] == a['columns']['tokens']
    assert b['columns'] == a['columns'] and b['indexes'] == a['indexes'] and b['constraints'] == a['constraints']
    assert b['triggers'] == a['triggers'] == [] and b['comment'] == a['comment']
    assert gin_opclass(in_place) == gin_opclass(online) == 'jsonb_ops'
    # Column position: the one allowed difference (the online column comes last).
    assert a['order'] != b['order'] and b['order'][-1] == 'tokens'
    assert [c for c in a['order'] if c != 'tokens'] == [c for c in b['order'] if c != 'tokens']
    assert revision(in_place) == revision(online) == [HEAD]
    a_rows = text_contents(in_place)
    assert text_contents(online) == a_rows and a_rows.keys() == original.keys()

    # The online rollback of the in-place upgrade, on a database no online run has touched before.
    rollback = play(tmp_path, full(in_place, 'text[]'))
    failure = next((r['msg'] for r in rollback if r.get('failed')), '')
    assert_holds(not ('ledgermind_migrations' in failure and 'does not exist' in failure),
              'the online rollback (target_type=text[]) of an in-place upgrade fails at phase=plan (and expand) with '
              '"PostgreSQL error ... ledgermind_migrations ... does not exist" until an online expand has created '
              'the conversion: ' + failure)
    ok(rollback, len(PHASES))
    assert_text_base(in_place)
    assert column_catalog(in_place)['comment'] == comment
    assert text_contents(in_place) == original


def test_application_downgrade_after_online_upgrade_and_online_rollback_after_in_place(
        fresh_db: Callable[..., str], tmp_path: Path) -> None:
    url = fresh_db()
    original = text_contents(url)
    assert {original[k] for k in (900001, 900003, 900006)} == {None, '{NULL}', '{café,zürich,東京,🙂,ß}'}

    ok(play(tmp_path, full(url, 'jsonb')), len(PHASES))
    assert_jsonb_head(url)
    alembic(url, 'downgrade', BASE)  # the application's own downgrade, after an online upgrade
    assert_text_base(url)
    assert text_contents(url) == original

    # In place, then the online rollback (the conversion function is there from the online upgrade: see the end of
    # test_online_end_state_is_the_in_place_upgrades_catalog for a database without it).
    alembic(url, 'upgrade', HEAD)
    assert column_type(url) == 'jsonb' and token_indexes(url)
    rollback = ok(play(tmp_path, full(url, 'text[]')), len(PHASES))
    assert rollback[-1]['swap']['revision_before'] == HEAD, rollback[-1]
    assert_text_base(url)
    assert text_contents(url) == original



def test_every_phase_twice_and_a_full_run_on_a_converted_table(fresh_db: Callable[..., str],
                                                              tmp_path: Path) -> None:
    url = fresh_db()
    twice = ['plan', 'expand', 'expand', 'backfill', 'backfill', 'index', 'index', 'verify', 'verify', 'swap', 'swap']
    results = ok(play(tmp_path, [task(url, phase) for phase in twice]), len(twice))
    changed = [(phase, r['changed']) for phase, r in zip(twice, results, strict=True)]
    assert changed[:7] + changed[9:] == [('plan', False), ('expand', True), ('expand', False), ('backfill', True),
                                         ('backfill', False), ('index', True), ('index', False), ('swap', True),
                                         ('swap', False)], changed
    assert changed[7] == ('verify', True)
    assert results[2]['actions'] == [] and results[6]['actions'] == []
    assert results[4]['progress']['done'] is True and results[4]['progress'].get('rows_written', 0) == 0
    assert results[8]['verify']['differing'] == 0
    assert 'already jsonb' in results[10]['actions'][0], results[10]
    assert_jsonb_head(url)

    before = table_state(url)
    again = ok(play(tmp_path, [task(url, phase) for phase in PHASES] + [task(url, 'remove', None)]), len(PHASES) + 1)
    assert [r['changed'] for r in again] == [False] * len(again), [(r['changed'], r.get('actions')) for r in again]
    assert [r.get('state') for r in again] == ['converted'] * len(PHASES) + ['clean']
    assert table_state(url) == before
    assert_holds(changed[8] == ('verify', False),
              'verify run again on a verified, unchanged conversion reports changed=true (it re-stamps verified_at); '
              'expected changed=false when verified_at was already set and no row differs')


def test_check_mode_plans_and_changes_nothing(fresh_db: Callable[..., str], tmp_path: Path) -> None:
    url = fresh_db()
    rows = scalar(url, 'SELECT count(*) FROM ml_features')
    pending, digest = table_state(url), tokens_digest(url)
    first = ok(play(tmp_path, [task(url, phase, check=True, batch_size=400) for phase in PHASES]), len(PHASES))
    plan = first[0]['plan']
    assert abs(plan['rows'] - rows) <= rows * 0.05 and plan['batches'] == math.ceil(plan['rows'] / 400), plan
    assert isinstance(plan['estimated_seconds'], float) and plan['estimated_seconds'] >= 0, plan
    assert plan['refusals'] == [] and plan['needed_bytes'] > 0, plan
    assert first[0]['state'] == 'pending' and first[0]['rows'] == plan['rows']
    assert any('add nullable column tokens__ledgermind_jsonb' in a for a in first[1]['actions']), first[1]
    assert first[2]['actions'] == ['would backfill after expand'], first[2]
    assert table_state(url) == pending

    # In progress: backfill, index, verify and swap in check mode leave the shadow, progress and column alone.
    dry = ok(play(tmp_path, [task(url, 'expand')] + [task(url, phase, check=True)
                                                      for phase in ('backfill', 'index', 'verify', 'swap')]), 5)
    assert dry[0]['changed'] and dry[1]['actions'] == ['would backfill from key start'], dry[1]
    assert any('CONCURRENTLY' in a for a in dry[2]['actions']), dry[2]
    expanded = table_state(url)
    assert [c[1:3] for c in expanded['columns']][-1] == ('tokens__ledgermind_jsonb', 'jsonb')
    assert expanded['triggers'] == [(TRIGGER, 'O')] and expanded['indexes'] == []
    progress = progress_row(url)
    assert (progress['rows_done'], progress['last_key'], progress['backfilled_at'], progress['verified_at']) == \
        (0, None, None, None), progress
    assert scalar(url, f'SELECT count({SHADOW["jsonb"]}) FROM ml_features') == 0
    assert tokens_digest(url) != digest  # the shadow column is in the digest now: all NULL, as checked above

    # Ready to swap: the swap in check mode says what it would do and does none of it.
    ready = ok(play(tmp_path, [task(url, phase) for phase in ('backfill', 'index', 'verify')]
                    + [task(url, 'swap', check=True)]), 4)
    swap = ready[3]
    assert ready[2]['verify']['differing'] == 0
    assert 'rename tokens__ledgermind_jsonb to tokens (jsonb)' in swap['actions'][0], swap
    assert f'move alembic_version from {BASE} to {HEAD}' in swap['actions'][0], swap
    after = table_state(url)
    assert after['columns'] == expanded['columns'] and after['triggers'] == expanded['triggers']
    assert column_type(url) == 'text[]' and revision(url) == [BASE] and progress_row(url)['verified_at']
    assert scalar(url, f'SELECT count(*) FROM ml_features WHERE {SHADOW["jsonb"]} IS DISTINCT FROM to_jsonb(tokens)') \
        == 0
    assert_holds(all(r['changed'] for r in [first[1], dry[2], swap]),
              'check mode reports changed=false for phases that would change the database (expand, index, swap) '
              'while listing their actions; expected changed=true in check mode whenever actions is not empty, as '
              'pg_write_log does')


def test_expand_refuses_what_the_swap_would_lose_and_changes_nothing(fresh_db: Callable[..., str],
                                                                     tmp_path: Path) -> None:
    url = fresh_db()
    query(url, "UPDATE ml_features SET tokens = '{}' WHERE tokens IS NULL")
    query(url, 'ALTER TABLE ml_features ALTER COLUMN tokens SET NOT NULL')
    query(url, 'CREATE VIEW ml_tokens AS SELECT txn_id, tokens FROM ml_features')
    before = table_state(url)
    plan, expand = play(tmp_path, [task(url, 'plan'), task(url, 'expand')])
    assert not plan.get('failed') and len(plan['plan']['refusals']) == 2, plan['plan']
    assert expand.get('failed') and not expand.get('changed'), expand
    message = expand['msg']
    assert message.startswith('Refusing the online conversion of public.ml_features.tokens to jsonb: '), message
    assert 'view ml_tokens' in message and 'NOT NULL' in message and message.endswith('Nothing was changed.')
    assert table_state(url) == before

    # The rollback's direction: rows text[] cannot hold (an object, a number element, a nested array).
    query(url, 'DROP VIEW ml_tokens')
    query(url, 'ALTER TABLE ml_features ALTER COLUMN tokens DROP NOT NULL')
    ok(play(tmp_path, full(url, 'jsonb')), len(PHASES))
    query(url, """UPDATE ml_features SET tokens = CASE txn_id WHEN 7 THEN '{"a": 1}'::jsonb WHEN 8 THEN '["a", 1]'
                  ELSE '[["nested"]]' END WHERE txn_id IN (7, 8, 9)""")
    before = table_state(url)
    plan, expand = play(tmp_path, [task(url, 'plan', 'text[]'), task(url, 'expand', 'text[]')])
    assert plan['plan']['refusals'] and '3 row(s)' in plan['plan']['refusals'][0], plan['plan']
    assert expand.get('failed') and not expand.get('changed'), expand
    message = expand['msg']
    assert message.startswith('Refusing the online conversion of public.ml_features.tokens to text[]: '), message
    assert '3 row(s) hold values text[] cannot hold' in message and 'keys 7, 8, 9' in message, message
    assert message.endswith('Nothing was changed.')
    assert table_state(url) == before

    # Without the scan (the role's expand, after the pre-flight's plan scanned): the backfill stops at those rows,
    # naming them, and the rows keep their values; remove takes the shadow and trigger away.
    expand, backfill = play(tmp_path, [task(url, 'expand', 'text[]', scan=False), task(url, 'backfill', 'text[]')])
    assert expand['changed'] and not expand.get('failed'), expand
    assert backfill.get('failed') and backfill['changed'] is True, backfill
    assert "stopped at 3 row(s) the conversion refuses (keys 7, 8, 9)" in backfill['msg'], backfill['msg']
    assert 'cannot be stored as text[]' in backfill['msg'] and 'phase=remove' in backfill['msg']
    ok(play(tmp_path, [task(url, 'remove', None)]), 1)
    assert table_state(url) == before


def test_swap_checks_before_its_lock_and_rechecks_the_catalog_under_it(fresh_db: Callable[..., str],
                                                                      tmp_path: Path) -> None:
    """What the swap checks needs no lock: it fails at once while another session holds the table. Under its lock
    it only compares the catalog with what it checked: a view committed while it waited for the lock makes it give
    the lock back, and the next try's checks name the view."""
    url = fresh_db()
    ok(play(tmp_path, [task(url, phase) for phase in ('expand', 'backfill', 'index', 'verify')]), 4)
    before, digest = table_state(url), tokens_digest(url)
    blocker = psycopg2.connect(url, application_name='lm_test_long_transaction')
    try:
        with blocker.cursor() as cur:
            cur.execute('SELECT txn_id FROM ml_features WHERE txn_id = 1 FOR UPDATE')  # holds RowShareLock
        query(url, "UPDATE alembic_version SET version_num = 'somewhere_else'")
        [refused] = play(tmp_path, [task(url, 'swap', retries=20, lock_timeout_ms=2000)])
        assert refused.get('failed') and 'somewhere_else' in refused['msg'], refused
        assert 'stayed locked' not in refused['msg'] and refused['changed'] is False
        query(url, f"UPDATE alembic_version SET version_num = '{BASE}'")

        # The view is created in the blocker's transaction (invisible to the swap's checks) and committed while
        # the swap waits for its lock, well within its 2 s try.
        with blocker.cursor() as cur:
            cur.execute('CREATE VIEW ml_tokens_v AS SELECT txn_id, tokens FROM ml_features')
        results: list[list[dict[str, Any]]] = []
        swapping = threading.Thread(target=lambda: results.append(
            play(tmp_path, [task(url, 'swap', retries=20, lock_timeout_ms=2000, retry_delay=0.1)])), daemon=True)
        swapping.start()
        wait_until(lambda: swap_waiting(url), 60, 'the swap to wait for its lock')
        blocker.commit()
        swapping.join(timeout=120)
    finally:
        blocker.close()
    [failed] = results[0]
    assert failed.get('failed') and failed['changed'] is False, failed
    assert 'view ml_tokens_v depends on the column' in failed['msg'], failed['msg']
    assert failed['tries'] == 2, failed  # the first try got its lock, found the catalog changed and gave it back
    assert {**table_state(url), 'views': None} == {**before, 'views': None}
    assert tokens_digest(url) == digest and column_type(url) == 'text[]' and revision(url) == [BASE]

    query(url, 'DROP VIEW ml_tokens_v')
    [swapped] = ok(play(tmp_path, [task(url, 'swap')]), 1)
    assert swapped['swap']['tries'] == 1 and len(swapped['swap']['checked_under_lock']) == 3, swapped
    assert_jsonb_head(url)


def test_a_trigger_disabled_after_the_verify_sends_the_swap_back_to_the_verify(fresh_db: Callable[..., str],
                                                                               tmp_path: Path) -> None:
    """The swap trusts the verify only while the trigger stayed as the verify saw it: a write made while it was
    disabled would otherwise be lost at the swap."""
    url = fresh_db()
    ok(play(tmp_path, [task(url, phase) for phase in ('expand', 'backfill', 'index', 'verify')]), 4)
    query(url, f'ALTER TABLE ml_features DISABLE TRIGGER {TRIGGER}')
    query(url, '''UPDATE ml_features SET tokens = '{bypassed,"the trigger"}' WHERE txn_id = 5''')
    query(url, f'ALTER TABLE ml_features ENABLE TRIGGER {TRIGGER}')
    before = table_state(url)
    [refused] = play(tmp_path, [task(url, 'swap')])
    assert refused.get('failed') and 'changed since the verify' in refused['msg'], refused
    assert 'run phase=verify again' in refused['msg'] and table_state(url) == before

    [verify] = play(tmp_path, [task(url, 'verify')])
    assert verify.get('failed') and verify['verify']['differing'] == 1 and verify['verify']['sample_keys'] == ['5']
    ok(play(tmp_path, [task(url, phase) for phase in ('backfill', 'verify', 'swap')]), 3)
    assert_jsonb_head(url)
    assert contents(url)[5] == ['bypassed', 'the trigger']
