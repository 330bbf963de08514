# Copyright: (c) 2026, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether a change degraded query latency: two ``pg_query_latency`` readings compared query by query."""
from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError


def _queries(reading: Any, which: str) -> dict[str, dict[str, Any]]:
    if not isinstance(reading, dict) or not isinstance(reading.get("queries"), list):
        raise AnsibleFilterError(f"latency_comparison expects pg_query_latency results; the {which} reading has no "
                                 "queries")
    return {q["name"]: q for q in reading["queries"]}


def _statement_deltas(before: Any, after: Any) -> list[dict[str, Any]]:
    """pg_stat_statements counters that moved between the readings, by queryid."""
    first = before.get("pg_stat_statements") or {}
    second = after.get("pg_stat_statements") or {}
    if not first.get("available") or not second.get("available"):
        return []
    old = {s["queryid"]: s for s in first.get("statements") or []}
    deltas = []
    for s in second.get("statements") or []:
        o = old.get(s["queryid"], {"calls": 0, "total_ms": 0.0})
        calls = int(s["calls"]) - int(o["calls"])
        if calls > 0:
            deltas.append({"query": s["query"], "calls": calls,
                           "mean_ms": round((float(s["total_ms"]) - float(o["total_ms"])) / calls, 3)})
    return deltas


def latency_comparison(before: Any, after: Any, max_ratio: Any = 2.0, slack_ms: Any = 5.0) -> dict[str, Any]:
    """Each query's p50 and p95 before and after. A query is slower when both its p50 and its p95 exceed their
    limits, ``max(before x max_ratio, before + slack_ms)``: a real regression (a lost index, a rewrite's bloat) moves
    the median too, where a busy machine's outliers move only the tail; the slack keeps sub-millisecond noise out.
    Returns ``ok``, ``items`` (name, before, after, limit_ms, passed), ``statements`` (pg_stat_statements deltas)
    and ``summary``."""
    try:
        ratio, slack = float(max_ratio), float(slack_ms)
    except (TypeError, ValueError) as e:
        raise AnsibleFilterError(f"latency_comparison: max_ratio and slack_ms must be numbers, got {max_ratio!r} and "
                                 f"{slack_ms!r}") from e
    first, second = _queries(before, "before"), _queries(after, "after")
    items = []
    for name, b in first.items():
        a = second.get(name)
        if a is None:
            continue
        limit = max(float(b["p95_ms"]) * ratio, float(b["p95_ms"]) + slack)
        limit_p50 = max(float(b["p50_ms"]) * ratio, float(b["p50_ms"]) + slack)
        slower = float(a["p95_ms"]) > limit and float(a["p50_ms"]) > limit_p50
        items.append({"name": name, "before_p50_ms": b["p50_ms"], "before_p95_ms": b["p95_ms"],
                      "after_p50_ms": a["p50_ms"], "after_p95_ms": a["p95_ms"], "limit_ms": round(limit, 3),
                      "limit_p50_ms": round(limit_p50, 3), "passed": not slower})
    if not items:
        raise AnsibleFilterError("latency_comparison: the two readings share no query name")
    failed = [i for i in items if not i["passed"]]
    parts = ["{} p50 {}->{} ms, p95 {}->{} ms{}".format(
        i["name"], i["before_p50_ms"], i["after_p50_ms"], i["before_p95_ms"], i["after_p95_ms"],
        "" if i["passed"] else f" (over its limits of {i['limit_p50_ms']} and {i['limit_ms']} ms)") for i in items]
    verdict = ("slower after the change: " + ", ".join(i["name"] for i in failed)) if failed else "no query slower"
    summary = (f"{verdict} (slower: p50 and p95 both over x{ratio:g} or +{slack:g} ms, whichever is larger): "
               + "; ".join(parts))
    return {"ok": not failed, "items": items, "statements": _statement_deltas(before, after), "summary": summary}


class FilterModule:
    """latency_comparison."""

    def filters(self) -> dict[str, Any]:
        return {"latency_comparison": latency_comparison}
