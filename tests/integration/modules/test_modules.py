"""pg_column_type, pg_jsonb_integrity and pg_index_check against the real PostgreSQL of scripts/stack.

Each module runs as Ansible runs it (``ansible localhost -m ledgermind.migrations.<module>`` through the
checkout's ansible.cfg, or a small playbook), output parsed from the json callback. The session owns a
scratch database ``lm_test_mod_<pid>`` (created and dropped here) holding ``ml_features`` in the
runbook's before state (``tokens text[]``) or after state (``tokens jsonb`` + GIN index).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql
from stackdb import drop_database, reachable_server_url, scalar, with_db

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
SCRATCH_DB = f'lm_test_mod_{os.getpid()}'
INDEX = 'ix_ml_features_tokens_gin'
PLAN_QUERY = "SELECT txn_id FROM ml_features WHERE tokens @> '[\"test\"]'::jsonb"
SENTINEL_PASSWORD = 'Wr0ng-Sentinel-Pa55'

# txn_id -> tokens: NULL, empty, quotes, commas, braces, backslashes, unicode, the string "NULL", NULL elements.
ROWS: dict[int, list[str | None] | None] = {
    1: None,
    2: [],
    3: ['coffee', 'shop'],
    4: ["it's", 'a "quote"', 'comma,inside', '{brace}', 'back\\slash', 'ünïcødé ☕', 'NULL', None],
    5: ['test'],
    6: ['', ' spaced ', 'tab\there', 'new\nline'],
    7: [None],
}


# --- database fixtures ------------------------------------------------------------------------


@pytest.fixture(scope='session')
def server_url() -> str:
    return reachable_server_url()


def _admin(server_url: str, statement: str) -> None:
    """Run a database-level statement on a short-lived autocommit connection."""
    admin = psycopg2.connect(server_url)
    try:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(sql.SQL(statement).format(sql.Identifier(SCRATCH_DB)))
    finally:
        admin.close()


@pytest.fixture(scope='session')
def db_url(server_url: str) -> Iterator[str]:
    drop_database(server_url, SCRATCH_DB)
    _admin(server_url, 'CREATE DATABASE {}')
    try:
        yield with_db(server_url, SCRATCH_DB)
    finally:
        drop_database(server_url, SCRATCH_DB)


@pytest.fixture
def db(db_url: str) -> Iterator[Any]:
    conn = psycopg2.connect(db_url)
    conn.autocommit = True
    yield conn
    conn.close()


def execute(conn: Any, query: str, params: Any = None) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else []


def make_before(conn: Any, rows: dict[int, list[str | None] | None] = ROWS) -> None:
    """The runbook's before state: tokens text[] at revision 20251109, no GIN index."""
    execute(conn, 'DROP TABLE IF EXISTS ml_features')
    execute(conn, 'CREATE TABLE ml_features (txn_id bigint PRIMARY KEY, tokens text[], merchant text)')
    for key, tokens in rows.items():
        execute(conn, 'INSERT INTO ml_features VALUES (%s, %s::text[], %s)', (key, tokens, f'm{key}'))
    execute(conn, 'ANALYZE ml_features')


def upgrade(conn: Any) -> None:
    """What revision 502d44cd70ab does: text[] -> jsonb, then the GIN index."""
    execute(conn, 'ALTER TABLE ml_features ALTER COLUMN tokens TYPE jsonb USING to_jsonb(tokens)')
    execute(conn, f'CREATE INDEX {INDEX} ON ml_features USING gin (tokens jsonb_ops)')
    execute(conn, 'ANALYZE ml_features')


def downgrade(conn: Any) -> None:
    """The rollback: drop the index, jsonb -> text[] (NULL stays NULL, null elements become NULL)."""
    execute(conn, f'DROP INDEX IF EXISTS {INDEX}')
    execute(conn, """CREATE OR REPLACE FUNCTION lm_jsonb_to_text_array(j jsonb) RETURNS text[]
                     LANGUAGE sql IMMUTABLE AS $$
                       SELECT CASE WHEN j IS NULL THEN NULL ELSE ARRAY(SELECT jsonb_array_elements_text(j)) END
                     $$""")
    execute(conn, 'ALTER TABLE ml_features ALTER COLUMN tokens TYPE text[] USING lm_jsonb_to_text_array(tokens)')
    execute(conn, 'DROP FUNCTION lm_jsonb_to_text_array(jsonb)')


@pytest.fixture
def before(db: Any) -> Any:
    make_before(db)
    return db


@pytest.fixture
def after(db: Any) -> Any:
    make_before(db)
    upgrade(db)
    return db


# --- running Ansible --------------------------------------------------------------------------

def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(('PG', 'ANSIBLE_'))}
    env.update(ANSIBLE_CONFIG=str(REPO / 'ansible.cfg'), ANSIBLE_LOAD_CALLBACK_PLUGINS='1',
               ANSIBLE_STDOUT_CALLBACK='json', ANSIBLE_DEPRECATION_WARNINGS='0', ANSIBLE_NOCOLOR='1',
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return env


def _inventory_args() -> list[str]:
    return ['-i', 'localhost,', '-c', 'local', '-e', f'ansible_python_interpreter={sys.executable}']


def _host_results(stdout: str) -> list[dict[str, Any]]:
    doc = json.loads(stdout[stdout.index('{'):])
    return [task['hosts']['localhost'] for play in doc['plays'] for task in play['tasks']]


def run(module: str, args: dict[str, Any], *, check: bool = False) -> dict[str, Any]:
    """``ansible localhost -m ledgermind.migrations.<module> -a <json>``: the host's result."""
    cmd = [str(BIN / 'ansible'), 'localhost', *_inventory_args(), '-m', f'ledgermind.migrations.{module}',
           '-a', json.dumps(args)]
    if check:
        cmd.append('--check')
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip(), proc.stderr
    result = _host_results(proc.stdout)[0]
    assert 'Traceback' not in proc.stdout + proc.stderr
    assert (proc.returncode != 0) == bool(result.get('failed')), (proc.returncode, result)
    return result


def run_playbook(tmp_path: Path, tasks: list[dict[str, Any]], *, check: bool = False) -> list[dict[str, Any]]:
    playbook = tmp_path / 'play.yml'
    playbook.write_text(json.dumps([{'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}]))  # JSON is YAML
    cmd = [str(BIN / 'ansible-playbook'), str(playbook), *_inventory_args()] + (['--check'] if check else [])
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=180)
    assert proc.stdout.strip(), proc.stderr
    return _host_results(proc.stdout)


# --- pg_column_type ---------------------------------------------------------------------------

@pytest.mark.parametrize('expected', ['text[]', '_text', 'ARRAY'])
def test_column_type_before(before: Any, db_url: str, expected: str) -> None:
    r = run('pg_column_type', dict(database_url=db_url, table='ml_features', column='tokens', expected_type=expected))
    assert not r.get('failed') and r['changed'] is False
    assert (r['exists'], r['data_type'], r['udt_name'], r['formatted_type'], r['matches']) == \
        (True, 'ARRAY', '_text', 'text[]', True)


def test_column_type_after(after: Any, db_url: str) -> None:
    r = run('pg_column_type', dict(database_url=db_url, table='ml_features', column='tokens', expected_type='jsonb'))
    assert not r.get('failed') and (r['data_type'], r['udt_name'], r['matches']) == ('jsonb', 'jsonb', True)
    r = run('pg_column_type', dict(database_url=db_url, table='ml_features', column='tokens', expected_type='text[]'))
    assert r['failed'] and r['matches'] is False
    assert r['msg'] == 'Column public.ml_features.tokens is jsonb (data_type jsonb, udt_name jsonb), expected text[].'
    r = run('pg_column_type', dict(database_url=db_url, table='ml_features', column='tokens', expected_type='text[]',
                                   fail_on_mismatch=False))
    assert not r.get('failed') and r['matches'] is False


def test_column_type_missing(before: Any, db_url: str) -> None:
    r = run('pg_column_type', dict(database_url=db_url, table='ml_features', column='nope'))
    assert not r.get('failed') and r['exists'] is False
    r = run('pg_column_type', dict(database_url=db_url, table='ml_features', column='nope', expected_type='jsonb'))
    assert r['failed'] and r['msg'] == 'Column public.ml_features.nope does not exist (expected type jsonb).'
    r = run('pg_column_type', dict(database_url=db_url, table='nope', column='tokens'))
    assert r['failed'] and r['msg'] == ('Table public.nope does not exist in this database; '
                                        'check table, schema and login_db.')
    r = run('pg_column_type', dict(database_url=db_url, schema='ml', table='ml_features', column='tokens'))
    assert r['failed'] and r['msg'].startswith('Schema ml does not exist')


def test_login_options_override_url(before: Any, db_url: str, server_url: str) -> None:
    """database_url points at the server's default database; login_db picks the scratch one."""
    r = run('pg_column_type', dict(database_url=server_url, login_db=SCRATCH_DB, table='ml_features', column='tokens'))
    assert not r.get('failed') and r['udt_name'] == '_text'
    parts = urllib.parse.urlsplit(db_url)
    r = run('pg_column_type', dict(login_host=parts.hostname, login_port=parts.port, login_user=parts.username,
                                   login_password=urllib.parse.unquote(parts.password or ''), login_db=SCRATCH_DB,
                                   table='ml_features', column='tokens'))
    assert not r.get('failed') and r['udt_name'] == '_text'


# --- pg_jsonb_integrity -----------------------------------------------------------------------

def integrity(db_url: str, **args: Any) -> dict[str, Any]:
    return run('pg_jsonb_integrity', {'database_url': db_url, 'table': 'ml_features', 'column': 'tokens', **args})


def test_integrity_counts_and_samples_before(before: Any, db_url: str) -> None:
    r = integrity(db_url, sample_rows=10)
    assert not r.get('failed') and r['changed'] is False
    assert r['column_type'] == 'text[]' and r['key_column'] == 'txn_id'
    assert (r['total'], r['nulls'], r['empty'], r['invalid_types'], r['element_type_violations'],
            r['null_elements'], r['roundtrip_violations'], r['violations']) == (7, 1, 1, 0, 0, 2, 0, 0)
    assert r['offending_keys']['null_elements'] == [4, 7]
    assert r['sample'] == [{'key': k, 'value': v, 'length': len(v)} for k, v in ROWS.items() if v is not None]
    assert isinstance(r['scan_seconds'], float) and len(r['fingerprint']) == 32


def test_fingerprint_survives_text_array_jsonb_text_array(before: Any, db_url: str) -> None:
    keys = [str(k) for k in ROWS]
    first = integrity(db_url, sample_rows=0, sample_keys=keys)
    upgrade(before)
    second = integrity(db_url, sample_rows=0, sample_keys=keys, fail_on_violation=True)
    downgrade(before)
    third = integrity(db_url, sample_rows=0, sample_keys=keys)
    assert (first['column_type'], second['column_type'], third['column_type']) == ('text[]', 'jsonb', 'text[]')
    assert first['fingerprint'] == second['fingerprint'] == third['fingerprint']
    counts = ('total', 'nulls', 'empty', 'invalid_types', 'element_type_violations', 'null_elements',
              'roundtrip_violations')
    assert [first[c] for c in counts] == [second[c] for c in counts] == [third[c] for c in counts]
    assert first['sample_by_key'] == second['sample_by_key'] == third['sample_by_key']
    assert [row['value'] for row in second['sample_by_key']] == list(ROWS.values())


@pytest.mark.parametrize('state', ['text[]', 'jsonb'])
def test_fingerprint_detects_change_and_swap(db: Any, db_url: str, state: str) -> None:
    make_before(db)
    if state == 'jsonb':
        upgrade(db)
    base = integrity(db_url)['fingerprint']
    execute(db, "UPDATE ml_features SET tokens = (SELECT tokens FROM ml_features WHERE txn_id = 3) WHERE txn_id = 5")
    changed = integrity(db_url)['fingerprint']
    make_before(db)
    if state == 'jsonb':
        upgrade(db)
    assert integrity(db_url)['fingerprint'] == base
    execute(db, """UPDATE ml_features AS a SET tokens = b.tokens FROM ml_features AS b
                   WHERE (a.txn_id, b.txn_id) IN ((3, 5), (5, 3))""")
    swapped = integrity(db_url)
    assert swapped['total'] == 7 and swapped['sample'] != [] and len({base, changed, swapped['fingerprint']}) == 3


def test_integrity_violations_on_jsonb(after: Any, db_url: str) -> None:
    execute(after, """INSERT INTO ml_features VALUES (10, '{"a": 1}', 'x'), (11, '[1, "a", ["b"], null]', 'y'),
                                                     (12, '"scalar"', 'z'), (13, '[true]', 'w')""")
    r = integrity(db_url, sample_size=2)
    assert not r.get('failed')  # fail_on_violation defaults to false
    assert (r['invalid_types'], r['element_type_violations'], r['roundtrip_violations'], r['null_elements']) == \
        (2, 3, 4, 3)
    assert r['offending_keys']['invalid_types'] == [10, 12]
    assert r['offending_keys']['element_type_violations'] == [11, 13]
    assert r['offending_keys']['roundtrip_violations'] == [10, 11]  # capped by sample_size
    r = integrity(db_url, fail_on_violation=True, expected_element_type='any')
    assert r['failed'] and r['msg'] == ('Integrity check failed on public.ml_features: invalid_types=2, '
                                        'roundtrip_violations=4 (of 11 rows).')
    assert r['element_type_violations'] == 0


def test_roundtrip_violations_on_text_array(before: Any, db_url: str) -> None:
    execute(before, "INSERT INTO ml_features VALUES (20, '{{a,b},{c,d}}', 'md'), (21, '[0:1]={x,y}', 'lb')")
    r = integrity(db_url, fail_on_violation=True)
    assert r['failed'] and r['roundtrip_violations'] == 2 and r['offending_keys']['roundtrip_violations'] == [20, 21]
    assert r['element_type_violations'] == 2 and r['offending_keys']['element_type_violations'] == [20]


def test_integrity_on_a_non_text_array(db: Any, db_url: str) -> None:
    """An int[] column's jsonb form holds numbers: its element checks take the general (jsonpath) path."""
    execute(db, 'DROP TABLE IF EXISTS ml_ints')
    execute(db, "CREATE TABLE ml_ints (txn_id int PRIMARY KEY, tokens int[]); INSERT INTO ml_ints VALUES "
                "(1, '{1,2}'), (2, NULL), (3, '{}'), (4, '{1,NULL}'), (5, '{{1,2},{3,4}}')")
    r = run('pg_jsonb_integrity', dict(database_url=db_url, table='ml_ints', column='tokens'))
    assert not r.get('failed') and r['column_type'] == 'integer[]'
    assert (r['total'], r['nulls'], r['empty'], r['element_type_violations'], r['null_elements'],
            r['roundtrip_violations']) == (5, 1, 1, 5, 1, 1)
    assert r['offending_keys']['element_type_violations'] == [1, 4, 5]
    r = run('pg_jsonb_integrity', dict(database_url=db_url, table='ml_ints', column='tokens',
                                       expected_element_type='number'))
    assert r['element_type_violations'] == 2 and r['offending_keys']['element_type_violations'] == [5]


def test_integrity_key_column(db: Any, db_url: str) -> None:
    execute(db, 'DROP TABLE IF EXISTS ml_nopk')
    execute(db, "CREATE TABLE ml_nopk (ref text, tokens jsonb); INSERT INTO ml_nopk VALUES ('a', '[\"x\"]')")
    r = run('pg_jsonb_integrity', dict(database_url=db_url, table='ml_nopk', column='tokens'))
    assert r['failed'] and r['msg'] == ('Table public.ml_nopk has no primary key; set key_column to a column that '
                                        'identifies each row.')
    r = run('pg_jsonb_integrity', dict(database_url=db_url, table='ml_nopk', column='tokens', key_column='ref',
                                       sample_keys=['a', 'b']))
    assert not r.get('failed') and r['total'] == 1 and r['sample_by_key'] == [{'key': 'a', 'value': ['x'], 'length': 1}]
    assert r['sample_keys_missing'] == ['b']


def test_integrity_missing_objects(before: Any, db_url: str) -> None:
    r = integrity(db_url, column='nope')
    assert r['failed'] and r['msg'] == 'Column public.ml_features.nope does not exist.'
    r = run('pg_jsonb_integrity', dict(database_url=db_url, table='nope', column='tokens'))
    assert r['failed'] and r['msg'].startswith('Table public.nope does not exist')
    r = integrity(db_url, column='merchant')
    assert r['failed'] and 'is text; pg_jsonb_integrity reads jsonb, json or array' in r['msg']


def test_integrity_scales_in_one_pass(db: Any, db_url: str) -> None:
    execute(db, 'DROP TABLE IF EXISTS ml_features')
    execute(db, 'CREATE TABLE ml_features (txn_id bigint PRIMARY KEY, tokens text[], merchant text)')
    execute(db, """INSERT INTO ml_features
                   SELECT g, CASE WHEN g % 50 = 0 THEN NULL ELSE ARRAY['tok' || g, 'w' || (g % 97), 'x,y'] END, 'm'
                   FROM generate_series(1, 100000) AS g""")
    first = integrity(db_url, sample_rows=2)
    upgrade(db)
    second = integrity(db_url, sample_rows=2, fail_on_violation=True)
    assert first['total'] == second['total'] == 100000 and first['nulls'] == 2000
    assert first['fingerprint'] == second['fingerprint'] and first['sample'] == second['sample']


# --- pg_index_check ---------------------------------------------------------------------------

def index_check(db_url: str, **args: Any) -> dict[str, Any]:
    return run('pg_index_check', {'database_url': db_url, 'name': INDEX, 'table': 'ml_features', **args})


def test_index_after_migration_used_with_seqscan_disabled(after: Any, db_url: str) -> None:
    r = index_check(db_url, expected_method='gin', expected_opclass='jsonb_ops', expected_column='tokens',
                    plan_query=PLAN_QUERY, explain_analyze=True, disable_seqscan=True, expect_used=True)
    assert not r.get('failed'), r.get('msg')
    assert (r['exists'], r['valid'], r['ready'], r['method'], r['opclass'], r['columns']) == \
        (True, True, True, 'gin', 'jsonb_ops', ['tokens'])
    assert r['definition'] == f'CREATE INDEX {INDEX} ON public.ml_features USING gin (tokens)'
    assert r['size_bytes'] > 0 and r['used_in_plan'] is True and r['plan_indexes'] == [INDEX]
    assert any(f'Bitmap Index Scan on {INDEX}' in line for line in r['plan'])
    assert any(line.startswith('Execution Time') for line in r['plan'])


def test_index_mismatches_all_listed(after: Any, db_url: str) -> None:
    r = index_check(db_url, expected_method='btree', expected_opclass='jsonb_path_ops', expected_column='merchant')
    assert r['failed'] and len(r['mismatches']) == 3
    assert r['msg'] == (f'Index public.{INDEX} does not meet expectations: access method is gin, expected btree; '
                        'operator class is jsonb_ops, expected jsonb_path_ops; indexed columns are [tokens], '
                        'expected [merchant].')


def test_index_missing_and_rollback(before: Any, db_url: str) -> None:
    r = index_check(db_url)
    assert r['failed'] and r['exists'] is False
    assert r['msg'] == (f'Index public.{INDEX} does not exist on public.ml_features (was the migration applied, '
                        'or did CREATE INDEX fail?).')
    r = index_check(db_url, expect_exists=False)
    assert not r.get('failed') and r['exists'] is False
    r = run('pg_index_check', dict(database_url=db_url, name=INDEX, table='nope'))
    assert r['failed'] and 'table public.nope does not exist either' in r['msg']
    upgrade(before)
    r = index_check(db_url, expect_exists=False)
    assert r['failed'] and 'expect_exists is false' in r['msg']


QUOTED_TABLE = 'ML Features'
QUOTED_INDEX = 'ix ml features "Tok Ens"'


@pytest.fixture
def quoted(db: Any) -> Any:
    """A table and column whose names need quoting, a GIN index on the column and an expression index."""
    execute(db, 'DROP TABLE IF EXISTS "ML Features"')
    execute(db, 'CREATE TABLE "ML Features" (txn_id bigint PRIMARY KEY, "Tok Ens" jsonb, merchant text)')
    execute(db, 'INSERT INTO "ML Features" VALUES (1, \'["a"]\', \'M1\'), (2, NULL, \'m2\')')
    execute(db, 'CREATE INDEX "ix ml features ""Tok Ens""" ON "ML Features" USING gin ("Tok Ens" jsonb_ops)')
    execute(db, 'CREATE INDEX ix_lower_merchant ON "ML Features" (lower(merchant))')
    return db


def test_index_on_a_column_that_needs_quoting(quoted: Any, db_url: str) -> None:
    """expected_column is the column's name, compared with the catalog's attribute name, never a quoted text."""
    r = run('pg_index_check', dict(database_url=db_url, table=QUOTED_TABLE, name=QUOTED_INDEX,
                                   expected_method='gin', expected_opclass='jsonb_ops', expected_column='Tok Ens'))
    assert not r.get('failed'), r.get('msg')
    assert r['columns'] == ['Tok Ens'] and r['mismatches'] == []
    assert r['definition'].endswith('USING gin ("Tok Ens")')
    r = run('pg_index_check', dict(database_url=db_url, table=QUOTED_TABLE, name=QUOTED_INDEX,
                                   expected_column='"Tok Ens"'))
    assert r['failed'] and r['mismatches'] == ['indexed columns are [Tok Ens], expected ["Tok Ens"]']


def test_an_expression_key_never_matches_expected_column(quoted: Any, db_url: str) -> None:
    r = run('pg_index_check', dict(database_url=db_url, table=QUOTED_TABLE, name='ix_lower_merchant'))
    assert not r.get('failed') and r['columns'] == ['lower(merchant)']
    for column in ('lower(merchant)', 'merchant'):
        r = run('pg_index_check', dict(database_url=db_url, table=QUOTED_TABLE, name='ix_lower_merchant',
                                       expected_column=column))
        assert r['failed'], column
        assert r['mismatches'] == [f'indexed columns are [expression lower(merchant)], expected [{column}]']


def test_index_plan_query_errors(after: Any, db_url: str) -> None:
    r = index_check(db_url, plan_query='DELETE FROM ml_features')
    assert r['failed'] and r['msg'] == 'plan_query must be a SELECT (or WITH/VALUES/TABLE) statement'
    r = index_check(db_url, plan_query='SELECT nosuch FROM ml_features')
    assert r['failed'] and r['msg'].startswith('plan_query could not be explained: column "nosuch" does not exist')
    r = index_check(db_url, plan_query='SELECT 1', expect_used=True, disable_seqscan=True)
    assert r['failed'] and 'does not use ix_ml_features_tokens_gin (indexes used: none)' in r['msg']
    # EXPLAIN ANALYZE of a data-modifying CTE is stopped by the READ ONLY transaction.
    r = index_check(db_url, plan_query='WITH d AS (DELETE FROM ml_features RETURNING 1) SELECT * FROM d',
                    explain_analyze=True)
    assert r['failed'] and 'read-only transaction' in r['msg']
    assert execute(after, 'SELECT count(*) FROM ml_features') == [(7,)]


# --- errors, secrets, locks, check mode -------------------------------------------------------

@pytest.mark.parametrize('traceback', ['never', 'always'])
def test_wrong_password_is_explained_and_never_echoed(before: Any, db_url: str, traceback: str) -> None:
    """-vvv shows no traceback; even with tracebacks opted in, the password appears nowhere."""
    bad_url = with_db(db_url, SCRATCH_DB, password=SENTINEL_PASSWORD)
    for args in (dict(database_url=bad_url), dict(database_url=db_url, login_password=SENTINEL_PASSWORD)):
        cmd = [str(BIN / 'ansible'), 'localhost', *_inventory_args(), '-vvv',
               '-m', 'ledgermind.migrations.pg_column_type', '-a', json.dumps(dict(args, table='ml_features',
                                                                                    column='tokens'))]
        env = dict(_env(), ANSIBLE_STDOUT_CALLBACK='default', ANSIBLE_DISPLAY_TRACEBACK=traceback)
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert 'authentication failed. Check login_user and login_password' in output
        assert SENTINEL_PASSWORD not in output
        assert urllib.parse.quote(SENTINEL_PASSWORD, safe='') not in output
        if traceback == 'never':
            assert 'Traceback' not in output


def test_unreachable_server(db_url: str) -> None:
    r = run('pg_column_type', dict(login_host='127.0.0.1', login_port=1, login_user='x', login_password='y',
                                   login_db='z', table='t', column='c', connect_timeout=3))
    assert r['failed'] and r['msg'].startswith('Cannot reach PostgreSQL at x@127.0.0.1:1/z.')


def test_unknown_database(db_url: str) -> None:
    r = run('pg_column_type', dict(database_url=db_url, login_db='lm_test_mod_does_not_exist', table='t', column='c'))
    assert r['failed'] and r['msg'].startswith('The database in ')
    assert 'lm_test_mod_does_not_exist does not exist' in r['msg']


def test_lock_timeout_names_the_blocking_session(after: Any, db_url: str) -> None:
    holder = psycopg2.connect(db_url)
    try:
        with holder.cursor() as cur:
            cur.execute('LOCK TABLE ml_features IN ACCESS EXCLUSIVE MODE')
            cur.execute('SELECT pg_backend_pid()')
            pid = cur.fetchone()[0]
        # The holder keeps its lock until `finally`: the module returning at all means it gave up waiting.
        r = integrity(db_url, lock_timeout=1)
        assert r['failed'] and r['msg'].startswith(f'public.ml_features is locked by another session: pid {pid} ')
        assert 'AccessExclusiveLock' in r['msg'] and 'lock_timeout=1s' in r['msg']
        r = index_check(db_url, lock_timeout=1)
        assert r['failed'] and 'is locked by another session' in r['msg']
        # Catalog reads do not queue behind the lock.
        r = run('pg_column_type', dict(database_url=db_url, table='ml_features', column='tokens', lock_timeout=1))
        assert not r.get('failed') and r['udt_name'] == 'jsonb'
    finally:
        holder.rollback()
        holder.close()


def test_check_mode_runs_every_module(after: Any, db_url: str, tmp_path: Path) -> None:
    common = dict(database_url=db_url, table='ml_features')
    tasks = [
        {'ledgermind.migrations.pg_column_type': dict(common, column='tokens', expected_type='jsonb')},
        {'ledgermind.migrations.pg_jsonb_integrity': dict(common, column='tokens', fail_on_violation=True)},
        {'ledgermind.migrations.pg_index_check': dict(common, name=INDEX, expected_method='gin',
                                                      plan_query=PLAN_QUERY, disable_seqscan=True,
                                                      expect_used=True)},
    ]
    normal = run_playbook(tmp_path, tasks)
    checked = run_playbook(tmp_path, tasks, check=True)
    varying = ('invocation', 'scan_seconds', 'plan', 'snapshot')  # each run's own: timings, plan times, snapshot
    for plain, dry in zip(normal, checked, strict=True):
        assert not dry.get('failed') and not dry.get('skipped') and dry['changed'] is False
        assert {k: v for k, v in dry.items() if k not in varying} == \
            {k: v for k, v in plain.items() if k not in varying}
    assert checked[0]['matches'] is True and checked[2]['used_in_plan'] is True


# --- pg_scratch_database ----------------------------------------------------------------------

def test_scratch_database_read_create_refuse_and_drop(db_url: str, server_url: str, tmp_path: Path) -> None:
    """The rehearsal's scratch database: read, created with the given collation (C, not the server's default), a
    taken name refused, this role's open session ended by the drop, the connected database never dropped."""
    name = f'{SCRATCH_DB}_scratch'
    drop_database(server_url, name)
    common = dict(database_url=db_url, name=name)
    info = dict(common, stale_pattern=f'^{SCRATCH_DB}$')
    present = dict(common, state='present', encoding='UTF8', lc_collate='C', lc_ctype='C')
    ignore = {'ignore_errors': True}
    try:
        dry = run_playbook(tmp_path, [{'ledgermind.migrations.pg_scratch_database': present},
                                      {'ledgermind.migrations.pg_scratch_database': dict(common, state='absent')}],
                           check=True)
        assert dry[0]['changed'] is True and dry[0]['created'] is False and dry[1]['changed'] is False
        first = run_playbook(tmp_path, [{'ledgermind.migrations.pg_scratch_database_info': info},
                                        {'ledgermind.migrations.pg_scratch_database': present},
                                        {'ledgermind.migrations.pg_scratch_database': present, **ignore},
                                        {'ledgermind.migrations.pg_scratch_database':
                                         dict(present, name=f'{name}_bad', lc_collate='xx_NOPE.UTF-8'), **ignore}])
        read, made, again, bad = first
        assert read['changed'] is False and read['exists'] is False and read['may_create'] is True
        # The stale pattern matches the module tests' own database, the connected one.
        assert read['stale'] == [SCRATCH_DB] and read['database'] == SCRATCH_DB and read['locale']['encoding']
        assert made['created'] is True and made['locale'] == {'encoding': 'UTF8', 'collate': 'C', 'ctype': 'C'}
        assert scalar(server_url, 'SELECT datcollate FROM pg_database WHERE datname = %s', (name,)) == 'C'
        assert again['failed'] and again['exists'] is True and again['created'] is False
        assert f'A database named {name} already exists' in again['msg'] and 'Nothing was changed' in again['msg']
        # A collation the server does not have: PostgreSQL's own words, and no database.
        assert bad['failed'] and not bad.get('created')
        assert bad['msg'].startswith(f'Could not create the scratch database {name}_bad. PostgreSQL said: ')
        assert 'xx_NOPE.UTF-8' in bad['msg']
        assert scalar(server_url, 'SELECT count(*) FROM pg_database WHERE datname = %s', (f'{name}_bad',)) == 0
        # A session of this role left open in the scratch database: the drop ends it.
        held = psycopg2.connect(with_db(db_url, name))
        try:
            gone = run_playbook(tmp_path, [
                {'ledgermind.migrations.pg_scratch_database': dict(common, state='absent')},
                {'ledgermind.migrations.pg_scratch_database': dict(common, state='absent')},
                {'ledgermind.migrations.pg_scratch_database': dict(common, name=SCRATCH_DB, state='absent'), **ignore},
            ])
        finally:
            held.close()
        assert gone[0]['dropped'] is True and gone[0]['sessions_ended'] == 1 and gone[0]['tries'] == 1
        assert gone[1]['changed'] is False and gone[1]['dropped'] is False and gone[1]['exists'] is False
        assert gone[2]['failed'] and 'it is the database the connection is on' in gone[2]['msg']
        assert scalar(server_url, 'SELECT count(*) FROM pg_database WHERE datname = %s', (name,)) == 0
        assert scalar(server_url, 'SELECT count(*) FROM pg_database WHERE datname = %s', (SCRATCH_DB,)) == 1
    finally:
        drop_database(server_url, name)

