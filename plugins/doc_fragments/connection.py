# Copyright (c) 2025, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Connection options shared by every ledgermind.migrations module
    # (plugins/module_utils/_connection.py:postgres_connection_argument_spec).
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
      - Read access to the table and catalog is enough; the modules never write.
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
    type: dict
  connect_timeout:
    description:
      - Seconds to wait for the connection before giving up.
    type: int
    default: 10
  query_timeout:
    description:
      - Statement timeout in seconds (C(SET LOCAL statement_timeout)) for every query the module runs.
      - Raise it for full-table checks on large tables. C(0) disables the timeout.
    type: int
    default: 300
  lock_timeout:
    description:
      - Seconds to wait for a lock (C(SET LOCAL lock_timeout)) before failing with a message naming the session
        that holds it.
      - Keeps an inspection from queueing behind an C(ALTER TABLE)'s ACCESS EXCLUSIVE lock (and from making
        every later query queue behind the inspection). C(0) waits forever.
    type: int
    default: 5
notes:
  - The module opens one READ ONLY, REPEATABLE READ transaction, so every figure it reports comes from one snapshot,
    and it rolls the transaction back at the end. It never changes the database, so check mode runs it unchanged.
  - Connection errors are reported as a message that says what to check (credentials, reachability, database name,
    timeouts); passwords are never part of the message.
requirements:
  - psycopg2 (C(psycopg2-binary) from PyPI is enough) on the host that runs the module
'''
