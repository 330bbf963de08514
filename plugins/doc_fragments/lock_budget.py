# Copyright (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # The back-off between the tries of a lock budget (plugins/module_utils/_retry.py:backoff_delays), for
    # alembic_migrate, pg_backup_restore, pg_online_convert and pg_write_log. No defaults here: each module's differ,
    # so each module's DOCUMENTATION keeps these options with their default alone (ansible-doc merges the two).
    DOCUMENTATION = r'''
options:
  retry_delay:
    description:
      - Seconds to wait after the first try that gave up on a lock; the wait doubles after each further one, up to
        O(max_retry_delay).
    type: float
  max_retry_delay:
    description: Longest wait between two tries, in seconds.
    type: float
'''

    # The number of tries, for the modules whose option is called retries (pg_backup_restore's is lock_retries).
    RETRIES = r'''
options:
  retries:
    description:
      - Tries at most. Only a try that gave up on a lock is tried again, after the back-off (O(retry_delay),
        O(max_retry_delay)); a try that fails on anything else is not retried.
    type: int
'''
