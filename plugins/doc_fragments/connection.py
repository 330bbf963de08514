# Copyright (c) 2025, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Connection options shared by every ledgermind.migrations module
    # (plugins/module_utils/_connection.py:postgres_connection_argument_spec), less lock_timeout: every module but
    # alembic_migrate (whose one lock budget is its own lock_timeout_ms, its spec leaves lock_timeout out) adds
    # ledgermind.migrations.connection.lock_timeout. A module adds the notes of how it connects:
    # ledgermind.migrations.connection.psycopg2 or ledgermind.migrations.connection.clients.
    DOCUMENTATION = r'''
options:
  database_url:
    description:
      - A libpq connection URI such as the runbook's C($DATABASE_URL),
        for example C(postgresql://ledgermind:secret@db.internal:5432/ledgermind?sslmode=require).
      - Explicit O(login_host), O(login_port), O(login_user), O(login_password), O(login_db),
        O(ssl_mode) and O(ca_cert) override the matching parts of the URI; O(connect_params) override everything.
      - Treated as a secret (it usually carries the password); it is never echoed, and any URL shown in
        a message has its password replaced by C(********).
    type: str
  login_host:
    description:
      - Host running the database.
      - Default (unset) lets libpq decide (C(PGHOST), then the local Unix socket).
    type: str
  login_port:
    description:
      - Database port to connect to. Default (unset) is C(PGPORT) or C(5432).
    type: int
  login_user:
    description:
      - The role used to log in. Default (unset) is C(PGUSER) or the operating system user.
      - For the inspection modules, which never write, read access to the table and catalog is enough.
    type: str
  login_password:
    description:
      - The password for O(login_user). Default (unset) is C(PGPASSWORD), C(~/.pgpass) or the password
        in O(database_url).
    type: str
  login_db:
    description:
      - The database to connect to. Default (unset) is C(PGDATABASE) or the database in O(database_url).
    type: str
  login_unix_socket:
    description:
      - Directory of the Unix domain socket for local connections; used when O(login_host) is unset or C(localhost)
        (as in community.postgresql).
    type: str
  ssl_mode:
    description:
      - Whether or with what priority an SSL connection is negotiated.
      - See U(https://www.postgresql.org/docs/current/libpq-ssl.html). Default (unset) is libpq's C(prefer).
    type: str
    choices: [ allow, disable, prefer, require, verify-ca, verify-full ]
  ca_cert:
    description:
      - File containing the SSL certificate authority certificate(s) (libpq C(sslrootcert)).
    type: str
  connect_params:
    description:
      - Any other libpq connection parameters, for example C(options) or C(keepalives).
      - These take precedence over every other connection option.
      - M(ledgermind.migrations.pg_backup_archive) and M(ledgermind.migrations.pg_backup_restore) hand them to
        the PostgreSQL clients as libpq environment variables, so they accept only parameters that have one,
        for example C(sslcert), C(sslkey), C(sslrootcert), C(sslmode), C(application_name), C(options) or
        C(target_session_attrs), and fail naming any other (such as C(keepalives)).
    type: dict
  connect_timeout:
    description:
      - Seconds to wait for the connection before giving up (C(PGCONNECT_TIMEOUT) for the PostgreSQL clients).
    type: int
    default: 10
  query_timeout:
    description:
      - Statement timeout in seconds (C(SET LOCAL statement_timeout)) for every query the module runs.
      - Raise it for full-table checks on large tables. C(0) disables the timeout.
      - Not applied by M(ledgermind.migrations.pg_backup_archive) and M(ledgermind.migrations.pg_backup_restore);
        pg_dump and pg_restore set C(statement_timeout) to 0 for their own sessions, since dumping or restoring a
        large table legitimately takes long.
    type: int
    default: 300
'''

    # lock_timeout, apart so that alembic_migrate can leave it out (ansible-test reads fragments as literal strings,
    # so a variant without it would be a copy).
    LOCK_TIMEOUT = r'''
options:
  lock_timeout:
    description:
      - Seconds to wait for a lock before failing. The inspection modules set it with C(SET LOCAL lock_timeout)
        and their message names the session that holds the lock.
      - Keeps an inspection from queueing behind an C(ALTER TABLE)'s ACCESS EXCLUSIVE lock (and from making
        every later query queue behind the inspection). C(0) waits forever.
      - M(ledgermind.migrations.pg_backup_archive) passes it to pg_dump as C(--lock-wait-timeout), so a backup
        fails after that long instead of queueing behind an C(ALTER TABLE) forever.
      - M(ledgermind.migrations.pg_backup_restore) applies it to its own reads only; each try of the restore waits
        for its lock at most O(ledgermind.migrations.pg_backup_restore#module:lock_timeout_ms).
    type: int
    default: 5
'''

    # The notes and attributes of the read-only modules connecting through psycopg2 (pg_column_type,
    # pg_jsonb_integrity, pg_index_check, pg_table_activity). An empty `options`: ansible-doc refuses a fragment
    # without one.
    PSYCOPG2 = r'''
options: {}
attributes:
  check_mode:
    support: full
    details: Read-only, so check mode runs the same queries and returns the same result.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - The module opens one READ ONLY, REPEATABLE READ transaction, so every figure it reports comes from one snapshot,
    and it rolls the transaction back at the end. It never changes the database, so check mode runs it unchanged.
  - Connection errors are reported as a message that says what to check (credentials, reachability, database name,
    timeouts); passwords are never part of the message.
requirements:
  - psycopg2 (C(psycopg2-binary) from PyPI is enough) on the host that runs the module
'''

    # The notes of the modules running pg_dump, pg_restore and psql (pg_backup_archive, pg_backup_restore);
    # each module documents its own check_mode attribute.
    CLIENTS = r'''
options: {}
attributes:
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - Connection settings reach pg_dump, pg_restore and psql as libpq environment variables (C(PGHOST),
    C(PGPASSWORD), C(PGCONNECT_TIMEOUT), C(PGSSLCERT)...), never on their command line, which any user of the
    host can see.
  - A libpq older than a parameter of O(connect_params) ignores its variable; C(require_auth), C(sslcertmode),
    C(gssdelegation) and C(load_balance_hosts) need libpq 16, C(sslnegotiation) libpq 17.
requirements:
  - The PostgreSQL clients the module runs (Debian C(postgresql-client)) on the host that runs the module
'''
