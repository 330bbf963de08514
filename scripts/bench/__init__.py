"""`make bench`: the runbook's bare commands timed side by side with the playbooks' phases.

Modules: ``env`` (paths, database, subprocesses), ``bare`` (the runbook as written), ``ours``
(the playbooks, per phase from the json callback), ``probe`` (the concurrent writer),
``memory`` (peak RSS of module processes), ``report`` (medians, targets, JSON, Markdown, chart),
``runner`` (the repetitions) and ``cli``.
"""
