"""pg_backup_archive / pg_backup_restore: the shared connection options reach the clients or are refused; the
archive's identity is checked against the target's before anything runs (issue 9).

The dump and the restore themselves run against a real server in tests/integration/backup.
"""
from __future__ import annotations

import json

import pytest

from ansible_collections.ledgermind.migrations.plugins.modules import pg_backup_archive, pg_backup_restore

URL = 'postgresql://ledgermind:hunter2-secret@db:5432/ledgermind'
# Every shared option a play could set through module_defaults for group/ledgermind.migrations.postgresql.
SHARED = {'database_url': URL, 'login_password': 'login-s3cret', 'connect_timeout': 3, 'query_timeout': 60,
          'lock_timeout': 2, 'connect_params': {'sslcert': '/c.pem', 'keepalives': 1}}


@pytest.mark.parametrize(
    ('main', 'args'),
    [
        (pg_backup_archive.main, {'dest_dir': '/nonexistent/backups', 'table': 'ml_features'}),
        (pg_backup_restore.main, {'src': __file__, 'expected_sha256': '0' * 64}),
    ],
)
def test_connect_params_without_a_libpq_variable_fail_by_name(run_module, main, args) -> None:
    failed, result, _ = run_module(main, dict(SHARED, **args))
    assert failed
    assert result['msg'].startswith('invalid connection settings: connection parameter(s) keepalives cannot be')
    assert 'hunter2-secret' not in str(result) and 'login-s3cret' not in str(result)


@pytest.mark.parametrize(
    ('lock_timeout', 'lock_args'),
    [(5, ['--lock-wait-timeout=5000']), (0, [])],
)
def test_dump_argv_bounds_the_lock_wait(lock_timeout, lock_args) -> None:
    params = {'format': 'custom', 'compress_level': 1, 'scope': 'table', 'schema': 'public',
              'table': 'ml_features', 'lock_timeout': lock_timeout}
    assert pg_backup_archive.dump_argv('/usr/bin/pg_dump', params, '/b/x.dump.partial') == [
        '/usr/bin/pg_dump', '--format=custom', '--compress=1', '--no-password', *lock_args,
        '--strict-names', '--table="public"."ml_features"', '--file=/b/x.dump.partial',
    ]
    assert '--file' not in ' '.join(pg_backup_archive.dump_argv('/usr/bin/pg_dump', params, None))


def test_dump_argv_dumps_the_exported_snapshot() -> None:
    params = {'format': 'custom', 'compress_level': 1, 'scope': 'table', 'schema': 'public',
              'table': 'ml_features', 'lock_timeout': 5}
    assert pg_backup_archive.dump_argv('/usr/bin/pg_dump', params, None, '00000003-0000001B-1') == [
        '/usr/bin/pg_dump', '--format=custom', '--compress=1', '--no-password', '--lock-wait-timeout=5000',
        '--snapshot=00000003-0000001B-1', '--strict-names', '--table="public"."ml_features"',
    ]
    assert not any(a.startswith('--snapshot') for a in pg_backup_archive.dump_argv('/usr/bin/pg_dump', params, None))


@pytest.mark.parametrize(
    ('params', 'wanted'),
    [({'scope': 'table', 'column': 'tokens'}, True), ({'scope': 'table', 'column': None}, False),
     ({'scope': 'table', 'column': ''}, False), ({'scope': 'full', 'column': 'tokens'}, False)],
)
def test_content_is_taken_for_a_table_backup_naming_its_column(params, wanted) -> None:
    assert pg_backup_archive.wants_content(params) is wanted


def test_dump_failure_puts_a_failed_scan_first() -> None:
    stderr = 'pg_dump: error: invalid snapshot identifier: "00000003-0000001B-1"'
    assert pg_backup_archive.dump_failure(1, stderr, 5, None) == f'pg_dump failed (exit code 1): {stderr}'
    assert pg_backup_archive.dump_failure(1, stderr, 5, 'the scan failed') == (
        f'the scan failed; then pg_dump failed (exit code 1): {stderr}')


@pytest.mark.parametrize(
    ('application_name', 'conninfo'),
    [
        ('ledgermind.migrations.pg_backup_restore', "application_name='ledgermind.migrations.pg_backup_restore'"),
        ("it's nightly", r"application_name='it\'s nightly'"),
        ('back\\slash', r"application_name='back\\slash'"),
    ],
)
def test_restore_dbname_only_names_the_session(application_name, conninfo) -> None:
    assert pg_backup_restore.dbname_conninfo(application_name) == conninfo


IDENTITY = {'system_identifier': '7301', 'database': 'ledgermind', 'database_oid': 16384, 'database_uuid': None,
            'schema': 'public', 'table': 'ml_features', 'table_oid': 16390, 'column': 'tokens',
            'column_type': 'text[]', 'server_version_num': 150018}
OTHER = dict(IDENTITY, database='lm_other', database_oid=16999)
WHOLE = dict(IDENTITY, schema=None, table=None, table_oid=None, column=None, column_type=None)
SIDECAR = {'sha256': 'ab' * 32, 'identity': IDENTITY, 'metadata': {'run_id': 'run-1'}, 'schema': 'public',
           'table': 'ml_features', 'database': 'postgresql://ledgermind@db:5432/ledgermind'}
TABLE = {'scope': 'table', 'schema': 'public', 'table': 'ml_features', 'column': 'tokens'}


def test_archive_requires_a_table_for_a_table_backup(run_module) -> None:
    failed, result, _ = run_module(pg_backup_archive.main, {'database_url': URL, 'dest_dir': '/nonexistent'})
    assert failed and result['msg'] == 'scope is table but all of the following are missing: table'


@pytest.mark.parametrize(
    ('params', 'target'),
    [
        (TABLE, ('public', 'ml_features', 'tokens')),
        ({'scope': 'table', 'schema': 'audit', 'table': 't', 'column': None}, ('audit', 't', None)),
        (dict(TABLE, scope='full'), (None, None, None)),
    ],
)
def test_identity_target(params, target) -> None:
    assert pg_backup_archive.identity_target(params) == target


@pytest.mark.parametrize(
    ('identity', 'params', 'problem'),
    [
        (IDENTITY, TABLE, None),
        (dict(IDENTITY, table_oid=None, column_type=None), dict(TABLE, table='ml_feature'),
         'table public.ml_feature does not exist in database ledgermind: check schema and table'),
        (dict(IDENTITY, column_type=None), dict(TABLE, column='tok'),
         'table public.ml_features of database ledgermind has no column tok: check column'),
        (dict(IDENTITY, column_type=None), dict(TABLE, column=None), None),
        (WHOLE, dict(TABLE, scope='full'), None),
    ],
)
def test_subject_problem(identity, params, problem) -> None:
    assert pg_backup_archive.subject_problem(identity, params) == problem


@pytest.mark.parametrize(
    ('expected', 'recorded', 'same'),
    [('text[]', 'text[]', True), ('_text', 'text[]', True), ('text ARRAY', 'text[]', True),
     ('jsonb', 'text[]', False), ('text', 'text[]', False), ('', 'text[]', False)],
)
def test_same_type(expected, recorded, same) -> None:
    assert pg_backup_restore.same_type(expected, recorded) is same


@pytest.mark.parametrize(
    ('sidecar', 'column_type', 'run_id', 'refusal'),
    [
        (SIDECAR, None, None, None),
        (SIDECAR, 'text[]', 'run-1', None),
        (SIDECAR, '_text', None, None),
        (None, None, None, 'refusing to restore /b/a.dump: there is no sidecar /b/a.dump.json, so nothing records'),
        ({'sha256': 'ab', 'database': 'postgresql://u@h/lm_other'}, None, None,
         'refusing to restore /b/a.dump: its sidecar /b/a.dump.json records no database identity (it says it was '
         'taken from postgresql://u@h/lm_other); it was written before pg_backup_archive recorded one'),
        (SIDECAR, None, 'run-2', 'refusing to restore /b/a.dump: it is the backup of run run-1, expected run run-2 '
                                 '(metadata.run_id in /b/a.dump.json)'),
        (dict(SIDECAR, metadata={}), None, 'run-2',
         'refusing to restore /b/a.dump: it is the backup of run (none recorded), expected run run-2'),
        (SIDECAR, 'jsonb', None, 'refusing to restore /b/a.dump: the archive holds public.ml_features.tokens as '
                                 'text[], the restore expects jsonb (identity.column_type in /b/a.dump.json)'),
        (dict(SIDECAR, identity=WHOLE), 'text[]', None,
         'refusing to restore /b/a.dump: the archive records no column type (a whole-database archive'),
    ],
)
def test_sidecar_refusal(sidecar, column_type, run_id, refusal) -> None:
    got = pg_backup_restore.sidecar_refusal('/b/a.dump', '/b/a.dump.json', sidecar, column_type, run_id)
    if refusal is None:
        assert got is None
    else:
        assert got is not None and got.startswith(refusal), got


@pytest.mark.parametrize(
    ('recorded', 'current', 'refusal'),
    [
        (IDENTITY, dict(IDENTITY, table_oid=1, column_type='jsonb'), None),
        (OTHER, IDENTITY,
         'refusing to restore /b/a.dump into database ledgermind (oid 16384) on system 7301, table public.ml_features: '
         'the archive is of database lm_other (oid 16999) on system 7301, table public.ml_features (differs in '
         'database lm_other (recorded) vs ledgermind (target); database_oid 16999 (recorded) vs 16384 (target)). '
         'Restore a backup of this database; nothing was changed.'),
        (WHOLE, IDENTITY, None),
        (dict(WHOLE, database='lm_other', database_oid=16999), IDENTITY,
         'refusing to restore /b/a.dump into database ledgermind (oid 16384) on system 7301, table public.ml_features: '
         'the archive is of database lm_other (oid 16999) on system 7301, the whole database (differs in '),
    ],
)
def test_identity_refusal(recorded, current, refusal) -> None:
    got = pg_backup_restore.identity_refusal('/b/a.dump', recorded, current)
    if refusal is None:
        assert got is None
    else:
        assert got is not None and got.startswith(refusal), got


LISTING = ';\n; Archive created at 2026-01-01 12:00:00 UTC\n;     dbname: lm_other\n;     TOC Entries: 17\n'


@pytest.mark.parametrize(
    ('listing', 'recorded', 'refusal'),
    [
        (LISTING, OTHER, None),
        (LISTING, IDENTITY,
         "refusing to restore /b/a.dump: pg_restore says it was dumped from database lm_other, "
         "but its sidecar records ledgermind; the sidecar is not this archive's. Nothing was changed."),
        ('; no header\n', IDENTITY, None),
    ],
)
def test_header_refusal(listing, recorded, refusal) -> None:
    assert pg_backup_restore.header_refusal('/b/a.dump', listing, recorded) == refusal


def identity_script(identity: dict) -> list:
    """What database_identity asks, answered for ``identity`` (a fake psycopg2 connection's script)."""
    return [
        ('SAVEPOINT', []),
        ('pg_control_system', [{'system_identifier': identity['system_identifier']}]),
        ('to_regclass', [{'present': False}]),
        ('AS database_oid', [{k: identity[k] for k in ('database', 'database_oid', 'server_version_num', 'table_oid',
                                                         'column_type')}]),
    ]


def test_restore_refuses_another_databases_archive_before_anything_runs(run_module, tmp_path) -> None:
    archive = tmp_path / 'tokens_20260101T000000Z.dump'
    archive.write_bytes(b'not read: refused before')
    (tmp_path / (archive.name + '.json')).write_text(json.dumps(dict(SIDECAR, identity=OTHER)))
    failed, result, conn = run_module(pg_backup_restore.main, {'database_url': URL, 'src': str(archive)},
                                      script=identity_script(dict(IDENTITY, column_type='jsonb')))
    assert failed
    assert result['msg'].startswith(f'refusing to restore {archive} into database ledgermind (oid 16384)')
    assert 'the archive is of database lm_other (oid 16999)' in result['msg']
    assert result['archive_identity'] == OTHER and result['target_identity']['column_type'] == 'jsonb'
    assert result['archive_metadata'] == {'run_id': 'run-1'} and result['archive_content'] == {}
    assert 'sha256' not in result and 'command' not in result  # neither hashed nor handed to pg_restore
    assert conn.session['readonly'] is True and conn.closed
    assert 'hunter2-secret' not in json.dumps(result)


def test_restore_refuses_a_corrupt_sidecar_by_name_without_connecting(run_module, tmp_path) -> None:
    archive = tmp_path / 'a.dump'
    archive.write_bytes(b'x')
    (tmp_path / 'a.dump.json').write_text('{"sha256": 12}')
    failed, result, conn = run_module(pg_backup_restore.main, {'database_url': URL, 'src': str(archive)})
    assert failed
    assert result['msg'] == (f'refusing to restore {archive}: sidecar {archive}.json is not one pg_backup_archive '
                             'writes: fields of the wrong type: sha256 is int')
    assert conn.executed == []


CONTENT = {'fingerprint': 'ab' * 16, 'fingerprint_sums': {'total': 4, 'hash1': '-12', 'hash2': '34'},
           'snapshot': '10:12:11', 'column': 'tokens', 'key': 'txn_id'}


def test_restore_returns_the_archives_recorded_content(run_module, tmp_path) -> None:
    archive = tmp_path / 'a.dump'
    archive.write_bytes(b'not read: refused before')
    (tmp_path / 'a.dump.json').write_text(json.dumps(dict(SIDECAR, identity=OTHER, content=CONTENT)))
    failed, result, _conn = run_module(pg_backup_restore.main, {'database_url': URL, 'src': str(archive)},
                                       script=identity_script(IDENTITY))
    assert failed and result['archive_content'] == CONTENT and result['archive_metadata'] == {'run_id': 'run-1'}
