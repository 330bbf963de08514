"""pg_backup_archive / pg_backup_restore: the shared connection options reach the clients or are refused.

The dump and the restore themselves run against a real server in tests/integration/backup.
"""
from __future__ import annotations

import pytest

from ansible_collections.ledgermind.migrations.plugins.modules import pg_backup_archive, pg_backup_restore

URL = 'postgresql://ledgermind:hunter2-secret@db:5432/ledgermind'
# Every shared option a play could set through module_defaults for group/ledgermind.migrations.postgresql.
SHARED = {'database_url': URL, 'login_password': 'login-s3cret', 'connect_timeout': 3, 'query_timeout': 60,
          'lock_timeout': 2, 'connect_params': {'sslcert': '/c.pem', 'keepalives': 1}}


@pytest.mark.parametrize(
    ('main', 'args'),
    [
        (pg_backup_archive.main, {'dest_dir': '/nonexistent/backups'}),
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
