# Copyright (c) 2025, LedgerMind SRE
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""All SQL used by the ledgermind.migrations modules, plus pure helpers around it.

Rules: values go in as bind parameters; identifiers only through ``psycopg2.sql.Identifier``.
Nothing here fetches a whole table into Python: aggregates run in PostgreSQL, samples are
capped with LIMIT.
"""

from __future__ import annotations

import hashlib
import json
import re
import typing as t

try:
    from psycopg2 import sql
except ImportError:  # reported by _connection.ensure_psycopg2 before any query runs
    sql = None

JSON_TYPES = ('array', 'object', 'string', 'number', 'boolean')
ELEMENT_TYPES = ('string', 'number', 'boolean', 'object', 'array', 'null', 'any')
# Two independent 64-bit row hashes (seeds: the Alembic revision and its parent's date).
FINGERPRINT_SEEDS = (0x502D44CD70AB, 20251109)
FINGERPRINT_VERSION = 'v1'
# Counts whose offending keys are sampled (null_elements is informative, not an offence).
SAMPLED_COUNTS = ('invalid_types', 'element_type_violations', 'roundtrip_violations', 'null_elements')
VIOLATION_COUNTS = ('invalid_types', 'element_type_violations', 'roundtrip_violations')

# ---------------------------------------------------------------------------------------------
# Pure helpers: type names
# ---------------------------------------------------------------------------------------------

_TYPE_ALIASES = {
    'int': 'int4', 'integer': 'int4', 'int4': 'int4', 'serial': 'int4',
    'bigint': 'int8', 'int8': 'int8', 'bigserial': 'int8',
    'smallint': 'int2', 'int2': 'int2',
    'boolean': 'bool', 'bool': 'bool',
    'character varying': 'varchar', 'varchar': 'varchar',
    'character': 'bpchar', 'char': 'bpchar', 'bpchar': 'bpchar',
    'double precision': 'float8', 'float8': 'float8', 'float': 'float8',
    'real': 'float4', 'float4': 'float4',
    'decimal': 'numeric', 'numeric': 'numeric',
    'timestamp': 'timestamp', 'timestamp without time zone': 'timestamp',
    'timestamptz': 'timestamptz', 'timestamp with time zone': 'timestamptz',
    'time': 'time', 'time without time zone': 'time',
    'timetz': 'timetz', 'time with time zone': 'timetz',
}


def normalize_type_name(name: str) -> str:
    """Normalise a PostgreSQL type name to its ``pg_type.typname`` (information_schema udt_name).

    ``text[]``, ``_text`` and ``text ARRAY`` give ``_text``; ``jsonb`` stays ``jsonb``;
    ``ARRAY`` (information_schema ``data_type`` of any array) gives ``array``; SQL spellings
    such as ``character varying(20)`` or ``bigint`` give ``varchar`` / ``int8``.
    """
    text = ' '.join(str(name).strip().lower().replace('"', '').split())
    if not text:
        raise ValueError('empty type name')
    if text.startswith('pg_catalog.'):
        text = text[len('pg_catalog.'):]
    if text in ('array', 'any array', 'anyarray'):
        return 'array'
    is_array = False
    if text.endswith(' array'):
        text, is_array = text[:-len(' array')].strip(), True
    while re.search(r'\[\d*\]$', text):
        text, is_array = re.sub(r'\s*\[\d*\]$', '', text), True
    text = re.sub(r'\s*\([^)]*\)', '', text).strip()  # typmods: varchar(20), numeric(10,2)
    if text.startswith('_'):
        text, is_array = text[1:], True
    base = _TYPE_ALIASES.get(text, text)
    return '_' + base if is_array else base


def type_matches(expected: str, data_type: str | None, udt_name: str | None) -> bool:
    """Whether a column (information_schema ``data_type``/``udt_name``) has the expected type."""
    wanted = normalize_type_name(expected)
    if wanted == 'array':
        return (data_type or '').upper() == 'ARRAY'
    return udt_name is not None and normalize_type_name(udt_name) == wanted


def display_type(udt_name: str | None) -> str:
    """``_text`` -> ``text[]`` for human messages."""
    if not udt_name:
        return 'unknown'
    return udt_name[1:] + '[]' if udt_name.startswith('_') else udt_name


# Arrays whose jsonb form holds only strings (and nulls): their element checks need no conversion.
TEXT_ARRAY_UDTS = ('_text', '_varchar', '_bpchar')
ARRAY_KINDS = ('text_array', 'array')


def column_kind(data_type: str | None, udt_name: str | None) -> str | None:
    """How pg_jsonb_integrity reads a column: ``jsonb``, ``json``, ``text_array``, ``array`` or ``None``."""
    if udt_name == 'jsonb':
        return 'jsonb'
    if udt_name == 'json':
        return 'json'
    if (data_type or '').upper() == 'ARRAY':
        return 'text_array' if udt_name in TEXT_ARRAY_UDTS else 'array'
    return None


# ---------------------------------------------------------------------------------------------
# Pure helpers: integrity results
# ---------------------------------------------------------------------------------------------

def fingerprint(total: int, hash_sums: t.Sequence[t.Any]) -> str:
    """One hex digest from the row count and the per-seed sums of row hashes.

    The sums are order-independent (so the scan needs no ORDER BY and no memory) and each row
    hash covers ``key:value``, so changing a value or swapping values between rows changes it.
    """
    sums = ':'.join(str(int(s)) for s in hash_sums)
    canonical = f'{FINGERPRINT_VERSION}:{int(total)}:{sums}'
    return hashlib.sha256(canonical.encode('ascii')).hexdigest()[:32]


def violation_total(counts: dict[str, t.Any]) -> int:
    """Rows/elements that fail the integrity contract (null elements are not counted)."""
    return sum(int(counts.get(name) or 0) for name in VIOLATION_COUNTS)


def jsonable(value: t.Any) -> t.Any:
    """A key value as module output: ints, floats, strings and bools as-is, anything else as text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def decode_json(value: t.Any) -> t.Any:
    """psycopg2 decodes jsonb already; json columns cast to jsonb too. Decode stray text."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def shape_sample_rows(rows: t.Iterable[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    """``[{key, value, length}]`` with value JSON-decoded and length for arrays (else None)."""
    shaped = []
    for row in rows:
        value = decode_json(row['value'])
        shaped.append(dict(key=jsonable(row['key']), value=value,
                           length=len(value) if isinstance(value, list) else None))
    return shaped


def missing_keys(requested: t.Sequence[t.Any], found_rows: t.Sequence[dict[str, t.Any]]) -> list[t.Any]:
    """Requested sample_keys that matched no row (compared as text)."""
    found = {str(row['key']) for row in found_rows}
    return [k for k in requested if str(k) not in found]


def integrity_summary(counts: dict[str, t.Any], relation: str) -> str:
    """Human sentence for a failed integrity check."""
    parts = [f'{name}={counts.get(name, 0)}' for name in VIOLATION_COUNTS if counts.get(name)]
    return 'Integrity check failed on {}: {} (of {} rows).'.format(relation, ', '.join(parts), counts.get('total'))


# ---------------------------------------------------------------------------------------------
# Pure helpers: indexes and plans
# ---------------------------------------------------------------------------------------------

_PLAN_START = re.compile(r'^\s*(\(\s*)*(select|with|values|table)\b', re.I)


def check_plan_query(query: str) -> str:
    """Return the query without trailing ``;`` or raise ValueError when it is not one SELECT."""
    text = query.strip().rstrip(';').strip()
    if not text:
        raise ValueError('plan_query is empty')
    if ';' in text:
        raise ValueError('plan_query must be a single statement (found ";")')
    if not _PLAN_START.match(text):
        raise ValueError('plan_query must be a SELECT (or WITH/VALUES/TABLE) statement')
    return text


def plan_root(explain_json: t.Any) -> dict[str, t.Any]:
    """The top ``Plan`` node of ``EXPLAIN (FORMAT JSON)`` output (list, dict or JSON text)."""
    doc = decode_json(explain_json)
    if isinstance(doc, list):
        doc = doc[0] if doc else {}
    return doc.get('Plan', doc) if isinstance(doc, dict) else {}


def iter_plan_nodes(node: dict[str, t.Any]) -> t.Iterator[dict[str, t.Any]]:
    """Depth-first walk over a plan node and its ``Plans`` children (incl. init/sub plans)."""
    yield node
    for child in node.get('Plans') or []:
        yield from iter_plan_nodes(child)


def plan_index_names(explain_json: t.Any) -> list[str]:
    """Every ``Index Name`` in the plan, in walk order."""
    return [n['Index Name'] for n in iter_plan_nodes(plan_root(explain_json)) if n.get('Index Name')]


def _node_line(node: dict[str, t.Any]) -> str:
    label = node.get('Node Type', '?')
    if node.get('Index Name'):
        label += (' on ' if label.startswith('Bitmap') else ' using ') + node['Index Name']
    if node.get('Relation Name'):
        label += ' on {}'.format(node['Relation Name'])
        if node.get('Alias') and node['Alias'] != node['Relation Name']:
            label += f" {node['Alias']}"
    if 'Total Cost' in node:
        label += '  (cost={:.2f}..{:.2f} rows={} width={})'.format(
            node.get('Startup Cost', 0), node['Total Cost'], node.get('Plan Rows'), node.get('Plan Width'))
    if 'Actual Total Time' in node:
        label += ' (actual time={:.3f}..{:.3f} rows={} loops={})'.format(
            node.get('Actual Startup Time', 0), node['Actual Total Time'], node.get('Actual Rows'),
            node.get('Actual Loops'))
    return label


def render_plan(explain_json: t.Any) -> list[str]:
    """Text lines resembling ``EXPLAIN`` output, rendered from the JSON plan."""
    doc = decode_json(explain_json)
    top = doc[0] if isinstance(doc, list) and doc else (doc if isinstance(doc, dict) else {})
    lines: list[str] = []

    def walk(node: dict[str, t.Any], depth: int) -> None:
        pad = '  ' * depth + ('->  ' if depth else '')
        lines.append(pad + _node_line(node))
        for cond in ('Index Cond', 'Recheck Cond', 'Filter', 'Hash Cond', 'Join Filter'):
            if node.get(cond):
                lines.append('  ' * depth + ('      ' if depth else '  ') + f'{cond}: {node[cond]}')
        for child in node.get('Plans') or []:
            walk(child, depth + 1)

    walk(plan_root(doc), 0)
    for key in ('Planning Time', 'Execution Time'):
        if key in top:
            lines.append(f'{key}: {top[key]:.3f} ms')
    return lines


def index_mismatches(info: dict[str, t.Any], expect: dict[str, t.Any]) -> list[str]:
    """Every way an existing index differs from the expectations (empty list: all good)."""
    problems = []
    name = info.get('name')
    if expect.get('table') and info.get('table') != expect['table']:
        problems.append('index {} is on table {}, expected {}'.format(name, info.get('table'), expect['table']))
    if expect.get('method') and (info.get('method') or '').lower() != expect['method'].lower():
        problems.append('access method is {}, expected {}'.format(info.get('method'), expect['method']))
    opclasses = info.get('opclasses') or []
    if expect.get('opclass') and (not opclasses or any(o != expect['opclass'] for o in opclasses)):
        problems.append(f"operator class is {', '.join(opclasses) or 'none'}, expected {expect['opclass']}")
    # A plain column key is compared by its attribute name (pg_get_indexdef quotes "Tok Ens"); an expression
    # key is never the column, whatever its text.
    columns = list(info.get('columns') or [])
    expressions = list(info.get('expressions') or [False] * len(columns))
    if expect.get('column') and (columns != [expect['column']] or any(expressions)):
        shown = ', '.join(f'expression {c}' if e else c for c, e in zip(columns, expressions, strict=False))
        problems.append(f"indexed columns are [{shown}], expected [{expect['column']}]")
    if expect.get('require_valid') and not info.get('valid'):
        problems.append('index is INVALID (indisvalid = false; e.g. a failed CREATE INDEX CONCURRENTLY): '
                        'drop and recreate it')
    if expect.get('require_valid') and not info.get('ready'):
        problems.append('index is not ready for inserts (indisready = false)')
    return problems


# ---------------------------------------------------------------------------------------------
# Settings and savepoints of the modules' own transactions
# ---------------------------------------------------------------------------------------------

# set_config(..., true) is SET LOCAL (it ends with the transaction), false SET for the session; the values go in as
# bind parameters, which SET cannot take.
SET_LOCAL_SQL = 'SELECT pg_catalog.set_config(%s, %s, true)'
SET_SESSION_SQL = 'SELECT pg_catalog.set_config(%s, %s, false)'
# connect()'s read-only transaction: both timeouts in one round trip.
LOCAL_TIMEOUTS_SQL = ("SELECT pg_catalog.set_config('statement_timeout', %s, true), "
                      "pg_catalog.set_config('lock_timeout', %s, true)")
LOCK_TIMEOUT_SETTING_SQL = "SELECT pg_catalog.current_setting('lock_timeout') AS lock_timeout"


def lock_timeout_statement(lock_timeout_ms: int) -> str:
    """``SET lock_timeout`` for a script psql runs (pg_restore's), where there are no bind parameters."""
    return f"SET lock_timeout = '{int(lock_timeout_ms)}ms';"


class Savepoint(t.NamedTuple):
    """The statements of one named savepoint, around a step that may fail (a privilege, a lock wait) without
    aborting the transaction the caller's other reads need."""

    create: str
    release: str
    rollback: str


def savepoint(name: str) -> Savepoint:
    """``name`` is one of the constants below, never an input."""
    return Savepoint(f'SAVEPOINT {name}', f'RELEASE SAVEPOINT {name}', f'ROLLBACK TO SAVEPOINT {name}')


IDENTITY_SAVEPOINT = savepoint('ledgermind_identity')
SPACE_SAVEPOINT = savepoint('ledgermind_space')
LATENCY_SAVEPOINT = savepoint('latency')
STATEMENTS_SAVEPOINT = savepoint('statements')
PROBE_SAVEPOINT = savepoint('probe')
# A read that fails (a privilege, a missing file) must not end the transaction the other reads need.
SERVER_LOG_SAVEPOINT = savepoint('pg_server_log')


# ---------------------------------------------------------------------------------------------
# Catalog SQL (bind parameters only)
# ---------------------------------------------------------------------------------------------

RELATION_SQL = """
SELECT n.oid IS NOT NULL AS schema_exists, c.oid::bigint AS relid, c.relkind::text AS relkind
FROM (SELECT %(schema)s::name AS nspname) AS q
LEFT JOIN pg_catalog.pg_namespace AS n ON n.nspname = q.nspname
LEFT JOIN pg_catalog.pg_class AS c
       ON c.relnamespace = n.oid AND c.relname = %(table)s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""

# pg_attribute sees every column (information_schema hides those without privileges);
# information_schema provides the runbook's data_type spelling when visible.
COLUMN_SQL = """
SELECT a.attname::text AS column_name,
       coalesce(c.data_type,
                CASE WHEN t.typcategory = 'A' THEN 'ARRAY' ELSE pg_catalog.format_type(a.atttypid, NULL) END
       )::text AS data_type,
       t.typname::text AS udt_name,
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS formatted_type,
       NOT a.attnotnull AS is_nullable
FROM pg_catalog.pg_attribute AS a
JOIN pg_catalog.pg_type AS t ON t.oid = a.atttypid
LEFT JOIN information_schema.columns AS c
       ON c.table_schema = %(schema)s AND c.table_name = %(table)s AND c.column_name = a.attname
WHERE a.attrelid = %(relid)s::oid AND a.attname = %(column)s AND a.attnum > 0 AND NOT a.attisdropped
"""

PRIMARY_KEY_SQL = """
SELECT a.attname::text AS column_name
FROM pg_catalog.pg_index AS i
JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = %(relid)s::oid AND i.indisprimary
ORDER BY a.attnum
"""

INDEX_SQL = """
SELECT ci.relname::text AS name,
       n.nspname::text AS schema,
       ct.relname::text AS table,
       am.amname::text AS method,
       i.indisvalid AS valid,
       i.indisready AS ready,
       i.indisunique AS is_unique,
       i.indisprimary AS is_primary,
       pg_catalog.pg_get_indexdef(ci.oid) AS definition,
       pg_catalog.pg_relation_size(ci.oid) AS size_bytes,
       ARRAY(SELECT coalesce(a.attname::text, pg_catalog.pg_get_indexdef(ci.oid, k, true))
             FROM generate_series(1, i.indnkeyatts::int) AS k
             LEFT JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[k - 1]
             ORDER BY k) AS columns,
       ARRAY(SELECT i.indkey[k - 1] = 0
             FROM generate_series(1, i.indnkeyatts::int) AS k ORDER BY k) AS expressions,
       ARRAY(SELECT opc.opcname::text
             FROM unnest(i.indclass::oid[]) WITH ORDINALITY AS u(opc_oid, ord)
             JOIN pg_catalog.pg_opclass AS opc ON opc.oid = u.opc_oid
             ORDER BY u.ord) AS opclasses
FROM pg_catalog.pg_index AS i
JOIN pg_catalog.pg_class AS ci ON ci.oid = i.indexrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = ci.relnamespace
JOIN pg_catalog.pg_class AS ct ON ct.oid = i.indrelid
JOIN pg_catalog.pg_am AS am ON am.oid = ci.relam
WHERE n.nspname = %(schema)s AND ci.relname = %(name)s
"""

# Who holds (or waits for) locks on the named relations of a schema: for lock-timeout messages.
LOCK_HOLDERS_SQL = """
SELECT DISTINCT l.pid, a.usename::text AS usename, l.mode, a.state, a.query
FROM pg_catalog.pg_locks AS l
JOIN pg_catalog.pg_stat_activity AS a ON a.pid = l.pid
JOIN pg_catalog.pg_class AS c ON c.oid = l.relation
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE l.granted AND l.pid <> pg_catalog.pg_backend_pid()
  AND n.nspname = %(schema)s AND c.relname = ANY (%(names)s)
ORDER BY l.pid
LIMIT 5
"""


def relation_problem(row: dict[str, t.Any], schema: str, table: str) -> str | None:
    """Message for a ``RELATION_SQL`` row whose schema or table is missing, else None."""
    if not row['schema_exists']:
        return (f'Schema {schema} does not exist (looking for table {schema}.{table}); '
                'check the schema option and login_db.')
    if row['relid'] is None:
        return f'Table {schema}.{table} does not exist in this database; check table, schema and login_db.'
    return None


def lock_holders_params(schema: str, *names: str | None) -> dict[str, t.Any]:
    """Bind parameters for ``LOCK_HOLDERS_SQL``."""
    return dict(schema=schema, names=[n for n in names if n])


# ---------------------------------------------------------------------------------------------
# Integrity SQL (composed with sql.Identifier)
# ---------------------------------------------------------------------------------------------

def _value_expr(kind: str, column: t.Any) -> t.Any:
    """The column as jsonb: identical text for the same data whether text[] or jsonb."""
    if kind in ARRAY_KINDS:
        return sql.SQL('to_jsonb({})').format(column)
    if kind == 'json':
        return sql.SQL('{}::jsonb').format(column)
    return column


# Rows that can break an element rule: a text-like array with NULL elements or more than one dimension, a JSON
# array holding anything but strings. Almost no row is odd, so the element counts below (an array
# copy, or a jsonpath query) run only for those; everything else costs one cheap test per row.
_ODD_ROW = {
    'array': 'CASE WHEN array_ndims({raw}) > 1 THEN true ELSE array_position({raw}, NULL) IS NOT NULL END',
    'json': ("jsonb_typeof({v}) = 'array'"
             " AND jsonb_path_exists({v}, 'strict $[*] ? (@.type() != \"string\")', '{{}}', true)"),
}

# Per-row element counts (bad: not null and not %(element_type)s; nulls: null elements; for JSON, nonstring:
# neither string nor null, which the round-trip check reads; an array's round trip reads the array itself),
# from ``s.odd`` so the odd-row test is evaluated once per row. jsonpath runs
# in strict mode (lax mode would unwrap nested arrays) and silent (no error on a non-array).
# A text[] value's jsonb form is an array of strings and nulls (1-D) or of arrays (more dimensions).
_ARRAY_NULLS = ('CASE WHEN s.odd AND array_ndims(s.raw) = 1'
                ' THEN cardinality(s.raw) - cardinality(array_remove(s.raw, NULL)) ELSE 0 END')
_ELEMENT_COUNTS = {
    'array': f"""
    SELECT CASE WHEN %(element_type)s::text IS NULL OR s.raw IS NULL THEN 0
                WHEN array_ndims(s.raw) > 1 THEN
                    CASE WHEN %(element_type)s::text = 'array' THEN 0 ELSE array_length(s.raw, 1) END
                WHEN %(element_type)s::text = 'string' THEN 0
                ELSE cardinality(s.raw) - {_ARRAY_NULLS} END AS bad,
           {_ARRAY_NULLS} AS nulls""",
    'json': """
    SELECT CASE WHEN %(element_type)s::text IS NULL OR jsonb_typeof(s.v) IS DISTINCT FROM 'array' THEN 0
                WHEN %(element_type)s::text = 'string' AND NOT s.odd THEN 0
                ELSE jsonb_array_length(jsonb_path_query_array(
                    s.v, 'strict $[*] ? (@.type() != $t && @.type() != "null")',
                    jsonb_build_object('t', %(element_type)s::text), true)) END AS bad,
           CASE WHEN s.odd THEN jsonb_array_length(jsonb_path_query_array(
                    s.v, 'strict $[*] ? (@.type() == "null")', '{}', true)) ELSE 0 END AS nulls,
           CASE WHEN s.odd THEN jsonb_array_length(jsonb_path_query_array(
                    s.v, 'strict $[*] ? (@.type() != "string" && @.type() != "null")', '{}', true))
                ELSE 0 END AS nonstring""",
}

_LINE = "{key}::text || ':' || coalesce(({value})::text, 'NULL')"


def _roundtrip_condition(kind: str) -> t.Any:
    """Values that would not survive text[] -> jsonb -> text[] unchanged."""
    if kind in ARRAY_KINDS:
        return sql.SQL('s.raw IS NOT NULL AND (array_ndims(s.raw) > 1 OR array_lower(s.raw, 1) <> 1)')
    return sql.SQL("s.v IS NOT NULL AND (jsonb_typeof(s.v) <> 'array' OR el.nonstring > 0)")


def _scan_from(schema: str, table: str, key: str, column: str, kind: str, with_elements: bool,
               counting: bool = False) -> t.Any:
    """``FROM (key, value-as-jsonb, raw, odd[, line]) [CROSS JOIN LATERAL per-row element counts]``.

    ``counting`` (the full counting pass) adds the fingerprint line and an ``OFFSET 0`` fence, which
    keeps the subquery from being flattened: ``to_jsonb`` of a text[] and the odd-row test then run
    once per row instead of once per reference. The sample and offending-key queries stay unfenced,
    so ``ORDER BY s.k LIMIT n`` can walk the key's index.
    """
    col = sql.Identifier(column)
    value = _value_expr(kind, col)
    family = 'array' if kind == 'text_array' else 'json'
    odd = sql.SQL(_ODD_ROW[family]).format(raw=col, v=value)
    line = sql.SQL(', ' + _LINE + ' AS line').format(key=sql.Identifier(key), value=value) if counting else sql.SQL('')
    source = sql.SQL('FROM (SELECT {key} AS k, {value} AS v, {col} AS raw, {odd} AS odd{line} FROM {rel}{fence}) AS s'
                     ).format(key=sql.Identifier(key), value=value, col=col, odd=odd, line=line,
                              rel=sql.Identifier(schema, table), fence=sql.SQL(' OFFSET 0' if counting else ''))
    if not with_elements:
        return source
    return source + sql.SQL('\nCROSS JOIN LATERAL ({}\n) AS el').format(sql.SQL(_ELEMENT_COUNTS[family]))


def _conditions(kind: str) -> dict[str, t.Any]:
    return dict(
        invalid_types=sql.SQL('s.v IS NOT NULL AND jsonb_typeof(s.v) <> %(expected_type)s::text'),
        element_type_violations=sql.SQL('el.bad > 0'),
        null_elements=sql.SQL('el.nulls > 0'),
        roundtrip_violations=_roundtrip_condition(kind),
    )


def integrity_params(expected_type: str, element_type: str) -> dict[str, t.Any]:
    """Bind parameters shared by the integrity queries (``any`` disables element checks)."""
    return dict(expected_type=expected_type, element_type=None if element_type == 'any' else element_type,
                seed1=FINGERPRINT_SEEDS[0], seed2=FINGERPRINT_SEEDS[1])


def integrity_counts_sql(schema: str, table: str, key: str, column: str, kind: str) -> t.Any:
    """One pass over the table: every count and the fingerprint sums, via FILTER aggregates.

    A text[] value is only converted to jsonb for the fingerprint line; its counts read the array
    itself (never NULL-typed or non-array once converted, so ``invalid_types`` needs no conversion).
    ``sum(bigint)`` is exact (numeric result) and accumulates in 128 bits, so no cast per row.
    """
    cond = _conditions(kind)
    if kind in ARRAY_KINDS:
        invalid = sql.SQL("s.raw IS NOT NULL AND %(expected_type)s::text <> 'array'")
        nulls, empty = sql.SQL('s.raw IS NULL'), sql.SQL('cardinality(s.raw) = 0')
    else:
        invalid = cond['invalid_types']
        nulls, empty = sql.SQL('s.v IS NULL'), sql.SQL("s.v = '[]'::jsonb OR s.v = '{}'::jsonb")
    return sql.SQL("""
SELECT count(*) AS total,
       count(*) FILTER (WHERE {nulls}) AS nulls,
       count(*) FILTER (WHERE {empty}) AS empty,
       count(*) FILTER (WHERE {invalid}) AS invalid_types,
       coalesce(sum(el.bad), 0) AS element_type_violations,
       coalesce(sum(el.nulls), 0) AS null_elements,
       count(*) FILTER (WHERE {roundtrip}) AS roundtrip_violations,
       coalesce(sum(hashtextextended(s.line, %(seed1)s)), 0) AS hash1,
       coalesce(sum(hashtextextended(s.line, %(seed2)s)), 0) AS hash2
{source}""").format(nulls=nulls, empty=empty, invalid=invalid, roundtrip=cond['roundtrip_violations'],
                    source=_scan_from(schema, table, key, column, kind, with_elements=True, counting=True))


def offending_keys_sql(schema: str, table: str, key: str, column: str, kind: str, count_name: str) -> t.Any:
    """Keys of the rows behind one count, capped by ``%(limit)s``."""
    return sql.SQL('SELECT s.k AS key\n{source}\nWHERE {cond}\nORDER BY s.k\nLIMIT %(limit)s').format(
        source=_scan_from(schema, table, key, column, kind, with_elements=True),
        cond=_conditions(kind)[count_name])


def sample_rows_sql(schema: str, table: str, key: str, column: str, kind: str) -> t.Any:
    """The runbook's ``WHERE tokens IS NOT NULL LIMIT 5`` sample, ordered by key."""
    return sql.SQL('SELECT s.k AS key, s.v AS value\n{source}\nWHERE s.v IS NOT NULL\nORDER BY s.k\n'
                   'LIMIT %(limit)s').format(source=_scan_from(schema, table, key, column, kind, False))


def sample_keys_sql(schema: str, table: str, key: str, column: str, kind: str) -> t.Any:
    """Rows for ``%(keys)s`` (text). Each key is converted to the key column's own type by
    populating the table's row type, so no type name is ever spliced into the SQL."""
    return sql.SQL("""SELECT s.k AS key, s.v AS value
{source}
WHERE s.k IN (SELECT (jsonb_populate_record(NULL::{rel}, jsonb_build_object(%(key_name)s::text, x))).{key}
              FROM unnest(%(keys)s::text[]) AS x)
ORDER BY s.k""").format(source=_scan_from(schema, table, key, column, kind, False),
                        rel=sql.Identifier(schema, table), key=sql.Identifier(key))


# The backup's own snapshot (pg_backup_archive): a READ ONLY, REPEATABLE READ transaction sets its timeouts and
# locks the table before any snapshot exists (SET LOCAL and LOCK take none; set_config() in a SELECT would), so no
# ALTER TABLE commits between the snapshot and pg_dump's own lock. It then exports the snapshot for
# ``pg_dump --snapshot`` and runs integrity_counts_sql in it while pg_dump dumps: the sums describe the archive.
# No statement timeout (pg_dump has none either) and no idle timeout: the exporting transaction must outlive
# pg_dump's import of its snapshot, and stays open until pg_dump ends.
DUMP_SNAPSHOT_SETTINGS_SQL = (
    'SET LOCAL statement_timeout = 0',
    'SET LOCAL idle_in_transaction_session_timeout = 0',
    'SET LOCAL lock_timeout = %(lock_timeout)s',
)
EXPORT_SNAPSHOT_SQL = 'SELECT pg_catalog.pg_export_snapshot() AS snapshot_id'


def lock_for_dump_sql(schema: str, table: str) -> t.Any:
    """``LOCK TABLE ... IN ACCESS SHARE MODE``, the lock pg_dump takes: it blocks DDL only, never reads or writes."""
    return sql.SQL('LOCK TABLE {} IN ACCESS SHARE MODE').format(sql.Identifier(schema, table))


# ---------------------------------------------------------------------------------------------
# EXPLAIN
# ---------------------------------------------------------------------------------------------

def explain_sql(plan_query: str, analyze: bool) -> t.Any:
    """``EXPLAIN (FORMAT JSON[, ANALYZE])`` of a query already checked by ``check_plan_query``.

    Run without bind parameters so a ``%`` in the query is taken literally; the READ ONLY
    transaction stops anything but reads, even under ANALYZE.
    """
    options = 'FORMAT JSON, ANALYZE, BUFFERS' if analyze else 'FORMAT JSON'
    return sql.SQL('EXPLAIN ({}) ').format(sql.SQL(options)) + sql.SQL(plan_query)


# ---------------------------------------------------------------------------------------------
# Migration runs: Alembic's version table, lock waits and sessions on the table, index repair
# ---------------------------------------------------------------------------------------------

VERSION_TABLE_EXISTS_SQL = "SELECT pg_catalog.to_regclass(pg_catalog.format('%%I', %(table)s)) IS NOT NULL AS present"

INVALID_INDEXES_SQL = """
SELECT c.relname::text AS name
FROM pg_catalog.pg_index AS i
JOIN pg_catalog.pg_class AS c ON c.oid = i.indexrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = ANY (%(names)s) AND NOT i.indisvalid
ORDER BY 1
"""

# Sessions waiting for a lock: on the table (queued behind the migration) or the migration's own
# session (application_name), with how long they have waited and who blocks them.
LOCK_WAITS_SQL = """
SELECT a.pid, a.application_name,
       extract(epoch FROM pg_catalog.clock_timestamp() - coalesce(l.waitstart, a.query_start))::float8 AS wait_seconds,
       pg_catalog.pg_blocking_pids(a.pid) AS blocking_pids,
       left(a.query, 200) AS query
FROM pg_catalog.pg_locks AS l
JOIN pg_catalog.pg_stat_activity AS a ON a.pid = l.pid
WHERE NOT l.granted AND a.pid <> pg_catalog.pg_backend_pid()
  AND (l.relation = pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %(schema)s, %(table)s))
       OR a.application_name = %(app)s)
"""

# Other sessions holding or awaiting locks on the table, oldest transaction first: any of them
# makes the ALTER wait, and everything queued behind the ALTER with it.
TABLE_LOCK_SESSIONS_SQL = """
SELECT l.pid, a.usename::text AS usename, a.application_name, l.mode, l.granted, a.state,
       extract(epoch FROM pg_catalog.now() - a.xact_start)::float8 AS transaction_seconds,
       left(a.query, 200) AS query
FROM pg_catalog.pg_locks AS l
JOIN pg_catalog.pg_stat_activity AS a ON a.pid = l.pid
WHERE l.relation = pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %(schema)s, %(table)s))
  AND l.pid <> pg_catalog.pg_backend_pid()
ORDER BY a.xact_start NULLS LAST, l.pid
LIMIT 20
"""


def _first(row: t.Any, name: str) -> t.Any:
    """A column of a row from either a tuple or a dict cursor."""
    return row[name] if isinstance(row, dict) else row[0]


def current_alembic_revision(conn: t.Any, version_table: str = 'alembic_version') -> str | None:
    """The revision(s) in Alembic's version table, comma-joined; None when there is none yet."""
    with conn.cursor() as cur:
        cur.execute(VERSION_TABLE_EXISTS_SQL, {'table': version_table})
        if not _first(cur.fetchone(), 'present'):
            return None
        cur.execute(sql.SQL('SELECT version_num FROM {} ORDER BY 1').format(sql.Identifier(version_table)))
        revisions = [_first(row, 'version_num') for row in cur.fetchall()]
    return ','.join(revisions) or None


def invalid_indexes(conn: t.Any, schema: str, names: t.Sequence[str]) -> list[str]:
    """Those of ``names`` that exist in ``schema`` but are INVALID (a failed CONCURRENTLY build)."""
    with conn.cursor() as cur:
        cur.execute(INVALID_INDEXES_SQL, {'schema': schema, 'names': list(names)})
        return [_first(row, 'name') for row in cur.fetchall()]


def reindex_concurrently(conn: t.Any, schema: str, name: str) -> None:
    """Rebuild an index without blocking writes; ``conn`` must be in autocommit mode."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL('REINDEX INDEX CONCURRENTLY {}.{}').format(sql.Identifier(schema), sql.Identifier(name)))


# ---------------------------------------------------------------------------------------------
# Run history: one row per migrate or rollback run, in the target database (pg_run_record)
# ---------------------------------------------------------------------------------------------

# Serialises the creation of the history schema and the start of runs on one database.
HISTORY_LOCK_SQL = "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('ledgermind.migrations run history'))"

HISTORY_DDL = (
    'CREATE SCHEMA IF NOT EXISTS {hs}',
    """CREATE TABLE IF NOT EXISTS {hs}.database_instance (
    database_uuid uuid PRIMARY KEY DEFAULT pg_catalog.gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    singleton boolean NOT NULL DEFAULT true UNIQUE CHECK (singleton),
    database text,
    database_oid bigint)""",
    """CREATE TABLE IF NOT EXISTS {hs}.run_history (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL UNIQUE,
    kind text NOT NULL CHECK (kind IN ('migrate', 'rollback')),
    status text NOT NULL,
    phase text,
    system_identifier text,
    database text NOT NULL,
    database_oid bigint,
    database_uuid uuid,
    table_schema text NOT NULL,
    table_name text NOT NULL,
    table_oid bigint,
    column_name text,
    revision_before text,
    revision_after text,
    type_before text,
    type_after text,
    fingerprint text,
    fingerprint_sums jsonb,
    row_count bigint,
    backup_path text,
    backup_size bigint,
    backup_sha256 text,
    mode text,
    operator text,
    controller text,
    started_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    heartbeat_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    finished_at timestamptz,
    details jsonb NOT NULL DEFAULT '{{}}')""",
    # One run at a time per table: a second start meets this index.
    """CREATE UNIQUE INDEX IF NOT EXISTS run_history_one_running
    ON {hs}.run_history (table_schema, table_name) WHERE status = 'running'""",
    "COMMENT ON TABLE {hs}.run_history IS 'ledgermind.migrations: what each migrate and rollback run did, "
    "for the rollback to find its backup by identity'",
)

# Whether the history's objects all exist: a start then needs no DDL (nor CREATE on the database).
HISTORY_COMPLETE_SQL = """
SELECT pg_catalog.to_regclass(pg_catalog.format('%%I.run_history', %(hs)s)) IS NOT NULL
   AND pg_catalog.to_regclass(pg_catalog.format('%%I.database_instance', %(hs)s)) IS NOT NULL
   AND pg_catalog.to_regclass(pg_catalog.format('%%I.run_history_one_running', %(hs)s)) IS NOT NULL AS complete
"""

# The database's uuid is bound to its name and oid: a copy (CREATE DATABASE ... TEMPLATE, a restored dump)
# carries the row over, and gets a uuid of its own here instead of passing for the original.
DATABASE_INSTANCE_SQL = """
INSERT INTO {hs}.database_instance AS i (singleton, database, database_oid)
VALUES (true, pg_catalog.current_database(),
        (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()))
ON CONFLICT (singleton) DO UPDATE
SET database_uuid = pg_catalog.gen_random_uuid(), created_at = pg_catalog.now(),
    database = pg_catalog.current_database(),
    database_oid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
WHERE i.database IS DISTINCT FROM pg_catalog.current_database()
   OR i.database_oid IS DISTINCT FROM (SELECT oid FROM pg_catalog.pg_database
                                       WHERE datname = pg_catalog.current_database())
"""

# Columns a run may set or update (the rest are the identity, set at start, and the timestamps).
RUN_FIELDS = ('status', 'phase', 'revision_before', 'revision_after', 'type_before', 'type_after', 'fingerprint',
              'fingerprint_sums', 'row_count', 'backup_path', 'backup_size', 'backup_sha256', 'mode', 'operator',
              'controller')
RUN_JSON_FIELDS = ('fingerprint_sums',)
RUN_STATUSES = ('running', 'passed', 'failed', 'rolled_back', 'interrupted', 'nothing_to_do')

HISTORY_PRESENT_SQL = ("SELECT pg_catalog.to_regclass(pg_catalog.format('%%I.run_history', %(hs)s)) IS NOT NULL"
                       " AS present")

# The runs of one table of this database, newest first: a restored or recreated database (another
# uuid) or another cluster's copy (another system identifier) never matches.
RUNS_SQL = """
SELECT *, extract(epoch FROM pg_catalog.now() - heartbeat_at)::float8 AS heartbeat_age_seconds
FROM {hs}.run_history
WHERE table_schema = %(schema)s AND table_name = %(table)s AND database = %(database)s
  AND (database_oid IS NULL OR database_oid = %(database_oid)s)
  AND (database_uuid IS NULL OR %(database_uuid)s::uuid IS NULL OR database_uuid = %(database_uuid)s::uuid)
  AND (system_identifier IS NULL OR %(system_identifier)s::text IS NULL OR system_identifier = %(system_identifier)s)
ORDER BY started_at DESC, id DESC
LIMIT %(limit)s
"""

# Our own sessions on this database, by the exact application names the collection's clients set (never a
# prefix: the application's own ledgermind-backend must not pass for a run at work).
OUR_SESSIONS_SQL = """
SELECT pid, application_name, state, backend_type,
       extract(epoch FROM pg_catalog.now() - coalesce(xact_start, backend_start))::float8 AS seconds,
       left(query, 200) AS query
FROM pg_catalog.pg_stat_activity
WHERE datname = pg_catalog.current_database() AND pid <> pg_catalog.pg_backend_pid()
  AND (application_name IN ('ledgermind.migrations', 'ledgermind-alembic-migrate')
       OR application_name LIKE 'ledgermind.migrations.%%')
ORDER BY backend_start
"""

# A column's type as PostgreSQL spells it (text[], jsonb); no row when the table or column is missing.
COLUMN_TYPE_SQL = """
SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) AS column_type
FROM pg_catalog.pg_attribute AS a
WHERE a.attrelid = pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %(schema)s, %(table)s))
  AND a.attname = %(column)s AND a.attnum > 0 AND NOT a.attisdropped
"""

# An index's presence and validity, by name in the table's schema.
INDEX_STATE_SQL = """
SELECT i.indisvalid AS valid, i.indisready AS ready
FROM pg_catalog.pg_index AS i
JOIN pg_catalog.pg_class AS c ON c.oid = i.indexrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(name)s
"""

# Cumulative row writes on the table since the statistics were last reset: what a restore would discard
# is at most the difference from when the backup was taken (a restore recreates the table, and its counts).
TABLE_WRITES_SQL = """
SELECT n_tup_ins::bigint AS inserted, n_tup_upd::bigint AS updated, n_tup_del::bigint AS deleted,
       n_live_tup::bigint AS live_rows, pg_catalog.pg_stat_get_db_stat_reset_time(
           (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()))::text AS stats_reset
FROM pg_catalog.pg_stat_user_tables
WHERE relid = %(table_oid)s::oid
"""

INSERT_RUN_SQL = """
INSERT INTO {hs}.run_history (run_id, kind, status, phase, system_identifier, database, database_oid, database_uuid,
                              table_schema, table_name, table_oid, column_name, type_before, mode, operator, controller,
                              details)
VALUES (%(run_id)s, %(kind)s, 'running', 'start', %(system_identifier)s, %(database)s, %(database_oid)s,
        %(database_uuid)s::uuid, %(schema)s, %(table)s, %(table_oid)s, %(column)s, %(column_type)s, %(mode)s,
        %(operator)s, %(controller)s, %(details)s::jsonb)
RETURNING *
"""

MARK_INTERRUPTED_SQL = """
UPDATE {hs}.run_history
SET status = 'interrupted', finished_at = pg_catalog.now(),
    details = details || pg_catalog.jsonb_build_object('interrupted_by', %(run_id)s::text,
                                                       'interrupted_note', %(note)s::text)
WHERE id = %(id)s AND status = 'running'
RETURNING *
"""

# One run's row: what a start without further fields returns, and what an update that found the run no longer
# running reads to say who took it over.
RUN_SQL = 'SELECT * FROM {hs}.run_history WHERE run_id = %(run_id)s'


def update_run_sql(history_schema: str, fields: t.Sequence[str], finish: bool) -> t.Any:
    """``UPDATE run_history SET <fields>, heartbeat [, finished_at], details || %(details)s WHERE run_id``."""
    sets = [sql.SQL('{} = %({})s{}').format(
        sql.Identifier(name), sql.SQL(name), sql.SQL('::jsonb' if name in RUN_JSON_FIELDS else ''))
        for name in fields]
    sets.append(sql.SQL('heartbeat_at = pg_catalog.now()'))
    sets.append(sql.SQL("details = details || %(details)s::jsonb"))
    if finish:
        sets.append(sql.SQL('finished_at = pg_catalog.now()'))
    # Only while the run is still this one's: a run taken over (interrupted) is never written again.
    return sql.SQL("UPDATE {}.run_history SET {} WHERE run_id = %(run_id)s AND status = 'running' RETURNING *").format(
        sql.Identifier(history_schema), sql.SQL(', ').join(sets))


def history_sql(statement: str, history_schema: str) -> t.Any:
    """One of the statements above with the history schema's name quoted in."""
    return sql.SQL(statement).format(hs=sql.Identifier(history_schema))


# ---------------------------------------------------------------------------------------------
# Database identity: what binds a run record and a backup archive to one database
# ---------------------------------------------------------------------------------------------

# The fields two identities must share to be the same table of the same database. The table's oid
# is recorded but not compared: a restore from backup recreates the table under a new oid.
IDENTITY_FIELDS = ('system_identifier', 'database', 'database_oid', 'database_uuid', 'schema', 'table')
# Where the run history lives in the target database (created by pg_run_record on a run's start).
HISTORY_SCHEMA = 'ledgermind_migrations'

IDENTITY_SQL = """
SELECT pg_catalog.current_database()::text AS database,
       d.oid::bigint AS database_oid,
       pg_catalog.current_setting('server_version_num')::int AS server_version_num,
       c.oid::bigint AS table_oid,
       (SELECT pg_catalog.format_type(a.atttypid, a.atttypmod)
          FROM pg_catalog.pg_attribute AS a
         WHERE a.attrelid = c.oid AND a.attname = %(column)s AND a.attnum > 0 AND NOT a.attisdropped
       ) AS column_type
FROM pg_catalog.pg_database AS d
LEFT JOIN pg_catalog.pg_namespace AS n ON n.nspname = %(schema)s
LEFT JOIN pg_catalog.pg_class AS c ON c.relnamespace = n.oid AND c.relname = %(table)s AND c.relkind IN ('r', 'p')
WHERE d.datname = pg_catalog.current_database()
"""

# pg_control_system() needs EXECUTE on it (superusers and pg_monitor members by default on some
# servers): read apart, inside a savepoint, so a refusal leaves the identity without it.
SYSTEM_IDENTIFIER_SQL = 'SELECT system_identifier::text AS system_identifier FROM pg_catalog.pg_control_system()'


def database_uuid(cur: t.Any, history_schema: str = HISTORY_SCHEMA) -> str | None:
    """The database's id in ``<history_schema>.database_instance``; None before the first run created it."""
    cur.execute('SELECT pg_catalog.to_regclass(pg_catalog.format(%(f)s, %(s)s)) IS NOT NULL AS present',
                dict(f='%I.database_instance', s=history_schema))
    if not _first(cur.fetchone(), 'present'):
        return None
    # A copy of another database carries its row: its uuid is not this database's until a run rebinds it.
    cur.execute(sql.SQL('SELECT database_uuid::text AS database_uuid FROM {}.database_instance AS i'
                        ' WHERE i.database = pg_catalog.current_database() AND i.database_oid = '
                        '(SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())'
                        ' LIMIT 1').format(sql.Identifier(history_schema)))
    row = cur.fetchone()
    return _first(row, 'database_uuid') if row else None


def database_identity(cur: t.Any, schema: str, table: str, column: str | None = None,
                      history_schema: str = HISTORY_SCHEMA) -> dict[str, t.Any]:
    """The identity of ``schema.table`` in the connected database, read with a dict cursor.

    ``system_identifier`` is None when the role may not call ``pg_control_system()``;
    ``database_uuid`` before the first run record; ``table_oid`` and ``column_type`` (PostgreSQL's
    spelling: ``text[]``, ``jsonb``) when the table or column is missing.
    """
    cur.execute(IDENTITY_SAVEPOINT.create)
    try:
        cur.execute(SYSTEM_IDENTIFIER_SQL)
        system_identifier = _first(cur.fetchone(), 'system_identifier')
        cur.execute(IDENTITY_SAVEPOINT.release)
    except Exception:  # psycopg2.Error: insufficient privilege; the identity says it is unknown
        cur.execute(IDENTITY_SAVEPOINT.rollback)
        system_identifier = None
    cur.execute(IDENTITY_SQL, dict(schema=schema, table=table, column=column or ''))
    row = dict(cur.fetchone())
    return dict(system_identifier=system_identifier, database=row['database'], database_oid=row['database_oid'],
                database_uuid=database_uuid(cur, history_schema),
                schema=schema, table=table, table_oid=row['table_oid'], column=column,
                column_type=row['column_type'] if column else None,
                server_version_num=row['server_version_num'])


def describe_identity(identity: dict[str, t.Any] | None) -> str:
    """``database ledgermind (oid 16384) on system 7301..., table public.ml_features`` for messages."""
    if not identity:
        return 'no recorded identity'
    system = identity.get('system_identifier') or 'unknown system'
    return 'database {} (oid {}) on system {}, table {}.{}'.format(
        identity.get('database'), identity.get('database_oid'), system, identity.get('schema'), identity.get('table'))


def identity_mismatches(recorded: dict[str, t.Any] | None, current: dict[str, t.Any]) -> list[str]:
    """Every field in which a recorded identity differs from the current one, naming both values.

    A field unknown on either side (e.g. no right to read the system identifier) is not compared;
    an absent record is itself a mismatch: nothing may be taken for this database's without proof.
    """
    if not recorded:
        return ['no database identity is recorded']
    problems = []
    for name in IDENTITY_FIELDS:
        mine, theirs = recorded.get(name), current.get(name)
        if name == 'system_identifier' and (mine is None) != (theirs is None):
            # Read on one side only: the same name and oid on another cluster must not pass for this one.
            problems.append('system_identifier {} (recorded) vs {} (target): known on one side only'.format(
                mine or 'unknown', theirs or 'unknown'))
            continue
        if mine is None or theirs is None:
            continue
        if str(mine) != str(theirs):
            problems.append(f'{name} {mine} (recorded) vs {theirs} (target)')
    return problems


# ---------------------------------------------------------------------------------------------
# Live writes: the write log (pg_write_log) and the untouched-rows proof (pg_jsonb_integrity)
# ---------------------------------------------------------------------------------------------

WRITE_LOG_TABLE = 'write_log'
WRITE_LOG_TRIGGER = 'ledgermind_write_log'
# Sessions with this setting 'off' are not logged (connect_writable sets it for our own sessions).
WRITE_LOG_SETTING = 'ledgermind.write_log'
# The columns of <history_schema>.write_log as format_type spells them; an existing table must match.
WRITE_LOG_COLUMNS = (('seq', 'bigint'), ('run_id', 'text'), ('key', 'text'), ('old_hash1', 'bigint'),
                     ('old_hash2', 'bigint'), ('had_old', 'boolean'), ('xid', 'xid8'),
                     ('logged_at', 'timestamp with time zone'))
# pg_trigger.tgtype of AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW: ROW 1 | INSERT 4 | DELETE 8 | UPDATE 16.
WRITE_LOG_TGTYPE = 29

# No index and no primary key: every application write appends one row, and nothing else should cost.
# The sequence keeps its default CACHE 1, so seq grows in the order the entries were made across sessions.
WRITE_LOG_DDL = (
    'CREATE SCHEMA IF NOT EXISTS {hs}',
    """CREATE UNLOGGED TABLE IF NOT EXISTS {hs}.write_log (
    seq bigserial,
    run_id text NOT NULL,
    key text NOT NULL,
    old_hash1 bigint,
    old_hash2 bigint,
    had_old boolean NOT NULL,
    xid xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    logged_at timestamptz NOT NULL DEFAULT pg_catalog.now())""",
    "COMMENT ON TABLE {hs}.write_log IS 'ledgermind.migrations: keys written by other sessions during a run, "
    "with the fingerprint hashes of the old row (pg_write_log)'",
)

WRITE_LOG_TABLE_SQL = """
SELECT n.oid IS NOT NULL AS schema_exists,
       c.oid IS NOT NULL AS log_exists,
       c.relpersistence::text AS persistence,
       ARRAY(SELECT a.attname::text || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
             FROM pg_catalog.pg_attribute AS a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum) AS columns
FROM (SELECT %(hs)s::name AS nspname) AS q
LEFT JOIN pg_catalog.pg_namespace AS n ON n.nspname = q.nspname
LEFT JOIN pg_catalog.pg_class AS c ON c.relnamespace = n.oid AND c.relname = 'write_log' AND c.relkind = 'r'
"""

# The write-log trigger on a table (by oid), with its function.
WRITE_LOG_TRIGGER_SQL = """
SELECT t.tgname::text AS name, t.tgargs AS args, t.tgtype::int AS tgtype, t.tgenabled::text AS enabled,
       t.tgqual IS NOT NULL AS has_when, n.nspname::text AS function_schema, p.proname::text AS function_name
FROM pg_catalog.pg_trigger AS t
JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
WHERE t.tgrelid = %(relid)s::oid AND t.tgname = %(trigger)s AND NOT t.tgisinternal
"""

# The trigger function by name, and how many triggers use it.
WRITE_LOG_FUNCTION_SQL = """
SELECT p.prosrc AS body, p.prosecdef AS security_definer,
       (SELECT count(*) FROM pg_catalog.pg_trigger AS t WHERE t.tgfoid = p.oid)::int AS triggers
FROM pg_catalog.pg_proc AS p
JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
WHERE n.nspname = %(hs)s AND p.proname = %(function)s AND p.pronargs = 0
"""

# A key column: present, NOT NULL, and alone in a valid unique index without predicate (rows are told
# apart by it in the fingerprint and the log).
KEY_COLUMN_SQL = """
SELECT a.attnotnull AS not_null,
       EXISTS (SELECT 1 FROM pg_catalog.pg_index AS i
               WHERE i.indrelid = a.attrelid AND i.indisunique AND i.indisvalid AND i.indnkeyatts = 1
                 AND i.indkey[0] = a.attnum AND i.indpred IS NULL AND i.indexprs IS NULL) AS unique_key
FROM pg_catalog.pg_attribute AS a
WHERE a.attrelid = %(relid)s::oid AND a.attname = %(column)s AND a.attnum > 0 AND NOT a.attisdropped
"""

WRITE_LOG_COUNT_SQL = 'SELECT count(*)::bigint AS rows FROM {hs}.write_log WHERE run_id = %(run_id)s'
WRITE_LOG_DELETE_SQL = 'DELETE FROM {hs}.write_log WHERE run_id = %(run_id)s'
# A run's status in the run history (read after HISTORY_PRESENT_SQL); no row for a run it does not know.
RUN_STATUS_SQL = 'SELECT status FROM {hs}.run_history WHERE run_id = %(run_id)s'

# The scan's snapshot; REPEATABLE READ keeps it for the whole transaction, so it is the one every
# query of the module (counts, sums, the write log) read.
SNAPSHOT_SQL = ("SELECT pg_catalog.pg_current_snapshot()::text AS snapshot,"
                " pg_catalog.current_setting('transaction_isolation') AS isolation")

WRITE_LOG_PRESENT_SQL = ("SELECT pg_catalog.to_regclass(pg_catalog.format('%%I.write_log', %(hs)s)) IS NOT NULL"
                         " AS present")

# The trigger function. The column is read through the whole row, never as OLD.<column>: PL/pgSQL caches
# the plan of an expression on OLD.<column> with the column's type, and once ALTER ... TYPE changed that
# type every later write on that connection would fail ("type of parameter ... does not match that when
# preparing the plan"). to_jsonb(OLD) -> column gives the same jsonb whatever the column's type (text[],
# any array, json, jsonb), but SQL NULL and a JSON null both as 'null': that rare case is told apart by a
# dynamic statement, planned afresh each time. The key's type never changes, so OLD.<key> is safe.
# TG_ARGV: the run id, the column. The line is exactly the integrity scan's (_LINE).
_WRITE_LOG_BODY = """
DECLARE
    v jsonb;
    line text;
    sql_null boolean;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {hs}.write_log (run_id, key, had_old) VALUES (TG_ARGV[0], NEW.{key}::text, false);
        RETURN NULL;
    END IF;
    v := to_jsonb(OLD) -> TG_ARGV[1];
    IF v = 'null'::jsonb THEN
        EXECUTE format('SELECT ($1).%I IS NULL', TG_ARGV[1]) INTO sql_null USING OLD;
        IF sql_null THEN
            v := NULL;
        END IF;
    END IF;
    line := OLD.{key}::text || ':' || coalesce(v::text, 'NULL');
    INSERT INTO {hs}.write_log (run_id, key, old_hash1, old_hash2, had_old)
    VALUES (TG_ARGV[0], OLD.{key}::text, hashtextextended(line, {seed1}), hashtextextended(line, {seed2}), true);
    IF TG_OP = 'UPDATE' AND NEW.{key} IS DISTINCT FROM OLD.{key} THEN
        INSERT INTO {hs}.write_log (run_id, key, had_old) VALUES (TG_ARGV[0], NEW.{key}::text, false);
    END IF;
    RETURN NULL;
END
"""


def write_log_function_name(schema: str, table: str) -> str:
    """The trigger function's name in the history schema: one per table (its body names the key column)."""
    digest = hashlib.sha256(json.dumps([schema, table]).encode('utf-8')).hexdigest()
    return 'write_log_' + digest[:16]


def write_log_function_body(history_schema: str, key: str) -> t.Any:
    """The PL/pgSQL body, to render with ``as_string`` and pass as a literal (compared with ``prosrc``)."""
    return sql.SQL(_WRITE_LOG_BODY).format(hs=sql.Identifier(history_schema), key=sql.Identifier(key),
                                           seed1=sql.Literal(FINGERPRINT_SEEDS[0]),
                                           seed2=sql.Literal(FINGERPRINT_SEEDS[1]))


def create_write_log_function_sql(history_schema: str, function: str) -> t.Any:
    """``CREATE OR REPLACE FUNCTION`` taking the body as ``%(body)s``.

    SECURITY DEFINER: the application's roles need no right on the log; the pinned search_path keeps
    them from substituting functions or operators under the owner's rights.
    """
    return sql.SQL('CREATE OR REPLACE FUNCTION {}.{}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER '
                   'SET search_path = pg_catalog, pg_temp AS %(body)s').format(
        sql.Identifier(history_schema), sql.Identifier(function))


def create_write_log_trigger_sql(schema: str, table: str, history_schema: str, function: str, run_id: str,
                                 column: str) -> t.Any:
    """The row trigger; its WHEN skips sessions with ``ledgermind.write_log = off`` before the function runs."""
    return sql.SQL('CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {rel} FOR EACH ROW '
                   "WHEN (pg_catalog.current_setting({setting}, true) IS DISTINCT FROM 'off') "
                   'EXECUTE FUNCTION {fn}({run_id}, {column})').format(
        trigger=sql.Identifier(WRITE_LOG_TRIGGER), rel=sql.Identifier(schema, table),
        setting=sql.Literal(WRITE_LOG_SETTING), fn=sql.Identifier(history_schema, function),
        run_id=sql.Literal(run_id), column=sql.Literal(column))


def drop_write_log_trigger_sql(schema: str, table: str) -> t.Any:
    return sql.SQL('DROP TRIGGER IF EXISTS {} ON {}').format(
        sql.Identifier(WRITE_LOG_TRIGGER), sql.Identifier(schema, table))


def trigger_args(raw: t.Any) -> list[str]:
    """``pg_trigger.tgargs`` (bytea: each argument followed by a NUL byte) as strings."""
    if raw is None:
        return []
    data = bytes(raw)
    return [part.decode('utf-8') for part in data.split(b'\x00')[:-1]] if data else []


def written_rows_sql(history_schema: str, schema: str, table: str, key: str, column: str, kind: str) -> t.Any:
    """The write log's side of the untouched-rows proof, read in the scan's own snapshot.

    K = the keys logged for ``%(run_id)s`` by transactions not visible in ``%(baseline_snapshot)s``; for each,
    the entry with the smallest seq. Returns ``rows_written`` (|K|), ``old_rows`` and ``old_hash1/2`` (count
    and sums of those first entries' old hashes where there was an old row) and ``current_rows`` and
    ``current_hash1/2`` (count and sums of the fingerprint lines of the table's rows whose key is in K, found
    through the key's index: each logged key text is turned back into the key's own type by populating the
    table's row type), and ``written_sample_keys``: those of ``%(sample_keys)s`` (text, in their order) whose key
    is in K. Log entries of aborted or still running transactions are not visible here.
    """
    line = sql.SQL(_LINE).format(key=sql.Identifier(key), value=_value_expr(kind, sql.Identifier(column)))
    return sql.SQL("""
WITH written AS MATERIALIZED (
    SELECT DISTINCT ON (w.key) w.key, w.had_old, w.old_hash1, w.old_hash2
    FROM {log} AS w
    WHERE w.run_id = %(run_id)s
      AND NOT pg_catalog.pg_visible_in_snapshot(w.xid, %(baseline_snapshot)s::pg_catalog.pg_snapshot)
    ORDER BY w.key, w.seq
), current_rows AS (
    SELECT {line} AS line
    FROM {rel}
    WHERE {key} IN (SELECT (pg_catalog.jsonb_populate_record(NULL::{rel},
                                pg_catalog.jsonb_build_object(%(key_name)s::text, w.key))).{key}
                    FROM written AS w)
)
SELECT w.rows_written, w.old_rows, w.old_hash1, w.old_hash2, c.current_rows, c.current_hash1, c.current_hash2,
       ARRAY(SELECT x.k
             FROM unnest(%(sample_keys)s::text[]) WITH ORDINALITY AS x(k, n)
             WHERE (pg_catalog.jsonb_populate_record(NULL::{rel},
                        pg_catalog.jsonb_build_object(%(key_name)s::text, x.k))).{key}::text
                   IN (SELECT key FROM written)
             ORDER BY x.n) AS written_sample_keys
FROM (SELECT count(*) AS rows_written,
             count(*) FILTER (WHERE had_old) AS old_rows,
             coalesce(sum(old_hash1) FILTER (WHERE had_old), 0) AS old_hash1,
             coalesce(sum(old_hash2) FILTER (WHERE had_old), 0) AS old_hash2
      FROM written) AS w
CROSS JOIN (SELECT count(*) AS current_rows,
                   coalesce(sum(hashtextextended(r.line, %(seed1)s)), 0) AS current_hash1,
                   coalesce(sum(hashtextextended(r.line, %(seed2)s)), 0) AS current_hash2
            FROM current_rows AS r) AS c""").format(
        log=sql.Identifier(history_schema, WRITE_LOG_TABLE), line=line, rel=sql.Identifier(schema, table),
        key=sql.Identifier(key))


class Sums(t.NamedTuple):
    """A fingerprint's exact parts: row count and the two sums of 64-bit row hashes (Python ints, no wrap)."""
    total: int
    hash1: int
    hash2: int

    def __sub__(self, other: t.Any) -> Sums:
        return Sums(self.total - other.total, self.hash1 - other.hash1, self.hash2 - other.hash2)

    def fingerprint(self) -> str:
        return fingerprint(self.total, (self.hash1, self.hash2))

    def as_json(self) -> dict[str, t.Any]:
        """``{total: int, hash1: str, hash2: str}``: the sums exceed what JSON numbers hold exactly."""
        return dict(total=self.total, hash1=str(self.hash1), hash2=str(self.hash2))


_SNAPSHOT = re.compile(r'^\d+:\d+:(\d+(,\d+)*)?$')
_INTEGER = re.compile(r'^[+-]?\d+$')


def _exact_int(value: t.Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (
            isinstance(value, str) and not _INTEGER.match(value.strip())):
        raise ValueError(f'baseline.{name} must be a whole number (an int or its decimal string), got {value!r}')
    return int(value)


def parse_baseline(baseline: dict[str, t.Any], need_snapshot: bool) -> tuple[Sums, str | None]:
    """``(Sums, snapshot)`` from a ``baseline`` option (an earlier run's ``fingerprint_sums`` plus its ``snapshot``).

    Raises ValueError naming what is wrong. The snapshot must be ``pg_current_snapshot()`` text
    (``xmin:xmax:xip,...``); it is required when a write log is consulted.
    """
    sums = Sums(*(_exact_int(baseline.get(name), name) for name in ('total', 'hash1', 'hash2')))
    if sums.total < 0:
        raise ValueError(f'baseline.total must not be negative, got {sums.total}')
    snapshot = baseline.get('snapshot')
    if snapshot in (None, ''):
        if need_snapshot:
            raise ValueError('baseline.snapshot is required with write_log_run_id: pass the baseline scan\'s '
                             'snapshot return value along with its fingerprint_sums')
        return sums, None
    if not isinstance(snapshot, str) or not _SNAPSHOT.match(snapshot.strip()):
        raise ValueError(f'baseline.snapshot must be pg_current_snapshot() text such as 1234:1240:1236,1238, '
                         f'got {snapshot!r}')
    return sums, snapshot.strip()


def untouched_proof(baseline: Sums, current: Sums, written: dict[str, t.Any] | None) -> dict[str, t.Any]:
    """Prove content over the rows nobody wrote since the baseline (``written``: a ``written_rows_sql`` row).

    Notation: h(r) = (1, H1(line r), H2(line r)), the row's share of a fingerprint; F(S) = the sum of h(r)
    over the rows visible in snapshot S. B is the baseline scan's snapshot, A this scan's (the same
    REPEATABLE READ transaction reads the table and the write log). K = the keys of the run's log
    entries that are visible in A and made by transactions not visible in B; e(k) = the first of them
    by seq.

    1. A key outside K has the same row (or none) in A as in B, unless something wrote it without the
       log. The trigger existed before B was taken (CREATE TRIGGER waits for every transaction holding
       the table for writing, and a later writer sees it when it locks the table), so every write by a
       transaction not visible in B appended an entry, in the same transaction: committed together
       (visible in A together) or gone together (aborts, rolled-back savepoints).
    2. For k in K, e(k) saw exactly k's row in B. Writes to one key are serialised (row locks, and the
       unique key index for inserts), so they form one chain. A writer made to wait for a transaction
       commits after it, so every write by a transaction visible in B precedes, in the chain, every
       write by one that is not: the first write not visible in B, including one by a transaction in
       progress when B was taken, found k's row as B sees it: had_old is false when B has no row k,
       else its old hashes are H1, H2 of that row's line (the line is the same whether the column was
       text[] or jsonb then). Its entry has the smallest seq of k's entries not visible in B: a later
       writer of k waited for the earlier one's commit, after that one's entry took its seq.
       An UPDATE that changes the key logs the new key too (had_old false), so a key is never written
       unlogged by a logged statement.

    Hence
        before = F(B) - sum over k in K with had_old of (1, old_hash1, old_hash2)  = sum of h over B's rows not in K
        after  = F(A) - sum over A's rows with key in K of h(r)                    = sum of h over A's rows not in K
    and by 1 both sums run over the same rows: a correct migration or rollback gives before == after.
    A content change of an untouched row (a value altered, a row gone or added without the log) moves
    ``after`` by a non-zero difference of two independent 64-bit hashes, so the equality fails but for a
    double collision. A row the conversion broke and the application wrote afterwards is caught too: its
    entry's old hashes are the broken line's, not B's. The sums are exact integers (sum(bigint) is numeric
    in PostgreSQL, ints here), so nothing wraps.

    Not covered: the content of rows in K themselves (the application's own writes), and so a row
    converted wrongly after the application's first write to it. Writes the log cannot see (TRUNCATE,
    sessions with ``ledgermind.write_log = off``, session_replication_role = replica, a crash emptying
    the unlogged log) can only make the proof fail, never pass wrongly.

    ``written`` None (no write log consulted): the whole fingerprints are compared and ``rows_written``
    is None. K empty: method ``full``, the whole fingerprints again.
    """
    if written is None:
        before, after, rows_written = baseline, current, None
    else:
        rows_written = int(written['rows_written'])
        before = baseline - Sums(int(written['old_rows']), int(written['old_hash1']), int(written['old_hash2']))
        after = current - Sums(int(written['current_rows']), int(written['current_hash1']),
                               int(written['current_hash2']))
    return dict(method='untouched_rows' if rows_written else 'full', rows_written=rows_written,
                rows_compared=after.total, matches=before == after,
                baseline_fingerprint=baseline.fingerprint(),
                fingerprint_untouched_before=before.fingerprint(), fingerprint_untouched_after=after.fingerprint())


# ---------------------------------------------------------------------------------------------
# Online conversion (pg_online_convert): expand, backfill, index, verify, swap, remove
# ---------------------------------------------------------------------------------------------

# The conversions, exactly as the revision's upgrade (to_jsonb) and downgrade (its pg_temp function) do them.
# The jsonb -> text[] one returns NULL for a value text[] cannot hold, where the downgrade refuses the table:
# the verify phase counts those rows and the trigger refuses such a write, so nothing is lost quietly.
ONLINE_TARGETS = ('jsonb', 'text[]')
ONLINE_SHADOW_SUFFIX = {'jsonb': '__ledgermind_jsonb', 'text[]': '__ledgermind_text'}
# Fires after the table's other BEFORE row triggers (they fire in name order), so it copies their final value.
ONLINE_TRIGGER = 'zz_ledgermind_online_sync'
ONLINE_PROGRESS_TABLE = 'online_conversion'

# A progress table made before the verify recorded the catalog it proved.
ONLINE_PROGRESS_UPGRADE_SQL = 'ALTER TABLE {hs}.online_conversion ADD COLUMN IF NOT EXISTS verified_fingerprint text'
ONLINE_DDL = (
    """CREATE TABLE IF NOT EXISTS {hs}.online_conversion (
        schema_name text NOT NULL,
        table_name text NOT NULL,
        column_name text NOT NULL,
        target_type text NOT NULL,
        shadow_column text NOT NULL,
        key_column text NOT NULL,
        run_id text,
        last_key text,
        rows_done bigint NOT NULL DEFAULT 0,
        batches bigint NOT NULL DEFAULT 0,
        started_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
        updated_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
        backfilled_at timestamptz,
        verified_at timestamptz,
        verified_fingerprint text,
        PRIMARY KEY (schema_name, table_name, column_name))""",
    "COMMENT ON TABLE {hs}.online_conversion IS 'ledgermind.migrations: progress of online column conversions "
    "(pg_online_convert); a row exists from expand until swap or remove'",
    ONLINE_PROGRESS_UPGRADE_SQL,
)

ONLINE_PROGRESS_PRESENT_SQL = ("SELECT pg_catalog.to_regclass(pg_catalog.format('%%I.online_conversion', %(hs)s)) "
                               'IS NOT NULL AS present')
ONLINE_PROGRESS_SQL = """
SELECT target_type, shadow_column, key_column, run_id, last_key, rows_done, batches, started_at, updated_at,
       backfilled_at, verified_at, pg_catalog.to_jsonb(o) ->> 'verified_fingerprint' AS verified_fingerprint
FROM {hs}.online_conversion AS o WHERE schema_name = %(schema)s AND table_name = %(table)s AND column_name = %(column)s
"""
ONLINE_PROGRESS_INSERT_SQL = """
INSERT INTO {hs}.online_conversion (schema_name, table_name, column_name, target_type, shadow_column, key_column,
                                    run_id)
VALUES (%(schema)s, %(table)s, %(column)s, %(target)s, %(shadow)s, %(key)s, %(run_id)s)
ON CONFLICT (schema_name, table_name, column_name) DO NOTHING
"""
ONLINE_PROGRESS_BATCH_SQL = """
UPDATE {hs}.online_conversion SET last_key = %(last_key)s, rows_done = rows_done + %(rows)s, batches = batches + 1,
       updated_at = pg_catalog.now()
WHERE schema_name = %(schema)s AND table_name = %(table)s AND column_name = %(column)s
"""
ONLINE_PROGRESS_MARK_SQL = """
UPDATE {hs}.online_conversion SET {field} = {value}, updated_at = pg_catalog.now()
WHERE schema_name = %(schema)s AND table_name = %(table)s AND column_name = %(column)s
"""
# A verify that proved every row records when, and the catalog it proved it under (ONLINE_FINGERPRINT_SQL's
# data_fingerprint): the swap checks under its lock that this catalog is still the one.
ONLINE_PROGRESS_VERIFIED_SQL = """
UPDATE {hs}.online_conversion SET verified_at = pg_catalog.now(), verified_fingerprint = %(fingerprint)s,
       updated_at = pg_catalog.now()
WHERE schema_name = %(schema)s AND table_name = %(table)s AND column_name = %(column)s
"""
# A verify that found differences sends the backfill over the whole table again (it rewrites only those rows).
ONLINE_PROGRESS_RESTART_SQL = """
UPDATE {hs}.online_conversion SET last_key = NULL, backfilled_at = NULL, verified_at = NULL,
       verified_fingerprint = NULL, updated_at = pg_catalog.now()
WHERE schema_name = %(schema)s AND table_name = %(table)s AND column_name = %(column)s
"""
ONLINE_PROGRESS_DELETE_SQL = """
DELETE FROM {hs}.online_conversion
WHERE schema_name = %(schema)s AND table_name = %(table)s AND column_name = %(column)s
"""

# The table as the online conversion sees it: size, estimated rows, the column's type, nullability, default,
# comment and column privileges, and the key's type.
ONLINE_TABLE_SQL = """
SELECT c.oid::bigint AS relid, c.relkind::text AS relkind, c.reltuples::bigint AS estimated_rows,
       pg_catalog.pg_table_size(c.oid)::bigint AS table_bytes,
       pg_catalog.pg_indexes_size(c.oid)::bigint AS index_bytes,
       c.reltablespace <> 0 AS own_tablespace,
       a.attnum::int AS attnum, pg_catalog.format_type(a.atttypid, a.atttypmod) AS column_type,
       a.attnotnull AS not_null, a.atthasdef AS has_default, a.attacl IS NOT NULL AS column_privileges,
       pg_catalog.col_description(c.oid, a.attnum::int) AS comment,
       (SELECT s.avg_width FROM pg_catalog.pg_stats AS s
        WHERE s.schemaname = %(schema)s AND s.tablename = %(table)s AND s.attname = %(column)s) AS avg_width
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute AS a
       ON a.attrelid = c.oid AND a.attname = %(column)s AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = %(schema)s AND c.relname = %(table)s
"""
# Any column of the table by name (the shadow columns), with its type.
ONLINE_COLUMN_SQL = """
SELECT a.attnum::int AS attnum, pg_catalog.format_type(a.atttypid, a.atttypmod) AS column_type
FROM pg_catalog.pg_attribute AS a
WHERE a.attrelid = %(relid)s::oid AND a.attname = %(column)s AND a.attnum > 0 AND NOT a.attisdropped
"""
ONLINE_KEY_TYPE_SQL = """
SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) AS key_type
FROM pg_catalog.pg_attribute AS a
WHERE a.attrelid = %(relid)s::oid AND a.attname = %(column)s AND a.attnum > 0 AND NOT a.attisdropped
"""
# Everything that depends on the column and that dropping it would drop or break: views, indexes,
# constraints, statistics, policies, triggers on the column, defaults, generated columns, SQL-body functions.
ONLINE_DEPENDENTS_SQL = """
SELECT CASE WHEN d.classid = 'pg_catalog.pg_rewrite'::regclass
            THEN (SELECT 'view ' || r.ev_class::regclass::text FROM pg_catalog.pg_rewrite AS r WHERE r.oid = d.objid)
            ELSE pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid) END AS object,
       CASE WHEN d.classid = 'pg_catalog.pg_class'::regclass THEN
            (SELECT ic.relname::text FROM pg_catalog.pg_class AS ic WHERE ic.oid = d.objid AND ic.relkind = 'i')
       END AS index_name
FROM pg_catalog.pg_depend AS d
WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = %(relid)s::oid
  AND d.refobjsubid = %(attnum)s AND d.deptype IN ('n', 'a')
  AND NOT (d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = %(relid)s::oid)
ORDER BY 1
"""
ONLINE_PUBLICATIONS_SQL = """
SELECT p.pubname::text AS publication
FROM pg_catalog.pg_publication_tables AS p
WHERE p.schemaname = %(schema)s AND p.tablename = %(table)s
ORDER BY 1
"""
ONLINE_TRIGGER_SQL = """
SELECT t.tgenabled::text AS enabled, p.proname::text AS function, pn.nspname::text AS function_schema
FROM pg_catalog.pg_trigger AS t
JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
JOIN pg_catalog.pg_namespace AS pn ON pn.oid = p.pronamespace
WHERE t.tgrelid = %(relid)s::oid AND t.tgname = %(trigger)s AND NOT t.tgisinternal
"""
# An index by name in the table's schema: its table, validity and the column and operator class it covers.
ONLINE_INDEX_SQL = """
SELECT i.indrelid::bigint AS relid, i.indisvalid AS valid, am.amname::text AS method,
       (SELECT pg_catalog.string_agg(a.attname::text, ',' ORDER BY k.n)
        FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
        JOIN pg_catalog.pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) AS columns,
       (SELECT pg_catalog.string_agg(oc.opcname::text, ',' ORDER BY k.n)
        FROM unnest(i.indclass) WITH ORDINALITY AS k(opc, n)
        JOIN pg_catalog.pg_opclass AS oc ON oc.oid = k.opc) AS opclasses
FROM pg_catalog.pg_index AS i
JOIN pg_catalog.pg_class AS c ON c.oid = i.indexrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_am AS am ON am.oid = c.relam
WHERE n.nspname = %(schema)s AND c.relname = %(name)s
"""
# What the swap relies on, in two digests, each a handful of catalog lookups by oid (cheap enough to run under the
# swap's ACCESS EXCLUSIVE lock, whatever the table's size):
# - data_fingerprint: the sync trigger (its pg_trigger row's oid and xmin: disabling, enabling or recreating it
#   changes them; its function's, which CREATE OR REPLACE changes), the column and the shadow (number and type).
#   Equal to the one the verify recorded: every write since the verify fired the trigger, so every row is still
#   proved (sessions with session_replication_role = replica aside, which fire no trigger).
# - schema_fingerprint: what the swap would break or lose (dependents of the column and the shadow,
#   publications, the column's NOT NULL, default, privileges and comment) and the index. Equal to the one the
#   checks before the lock passed: nothing changed while the swap waited for its lock.
ONLINE_FINGERPRINT_SQL = """
SELECT pg_catalog.md5(pg_catalog.concat_ws('|',
         (SELECT t.oid::text || ':' || t.xmin::text || ':' || t.tgenabled::text || ':' || p.oid::text || ':'
                 || p.xmin::text
          FROM pg_catalog.pg_trigger AS t JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
          WHERE t.tgrelid = %(relid)s::oid AND t.tgname = %(trigger)s),
         (SELECT a.attnum::text || ':' || pg_catalog.format_type(a.atttypid, a.atttypmod)
          FROM pg_catalog.pg_attribute AS a
          WHERE a.attrelid = %(relid)s::oid AND a.attname = %(column)s AND NOT a.attisdropped),
         (SELECT a.attnum::text || ':' || pg_catalog.format_type(a.atttypid, a.atttypmod)
          FROM pg_catalog.pg_attribute AS a
          WHERE a.attrelid = %(relid)s::oid AND a.attname = %(shadow)s AND NOT a.attisdropped))) AS data_fingerprint,
       pg_catalog.md5(pg_catalog.concat_ws('|',
         (SELECT pg_catalog.string_agg(d.classid::text || ':' || d.objid::text || ':' || d.objsubid::text || ':'
                                       || d.deptype::text, ',' ORDER BY d.classid, d.objid, d.objsubid)
          FROM pg_catalog.pg_depend AS d JOIN pg_catalog.pg_attribute AS a
            ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
          WHERE d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid = %(relid)s::oid
            AND a.attname IN (%(column)s, %(shadow)s) AND NOT a.attisdropped),
         (SELECT a.attnotnull::text || ':' || a.atthasdef::text || ':' || coalesce(a.attacl::text, '') || ':'
                 || coalesce(pg_catalog.col_description(a.attrelid, a.attnum::int), '')
          FROM pg_catalog.pg_attribute AS a
          WHERE a.attrelid = %(relid)s::oid AND a.attname = %(column)s AND NOT a.attisdropped),
         (SELECT count(*)::text FROM pg_catalog.pg_publication_tables AS pt
          WHERE pt.schemaname = %(schema)s AND pt.tablename = %(table)s),
         (SELECT i.indexrelid::text || ':' || i.indisvalid::text || ':' || i.indkey::text
          FROM pg_catalog.pg_index AS i JOIN pg_catalog.pg_class AS c ON c.oid = i.indexrelid
          JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
          WHERE n.nspname = %(schema)s AND c.relname = %(index)s))) AS schema_fingerprint
"""
# How far the replicas are behind, in seconds (NULL: none, or not visible to this role).
ONLINE_REPLICA_LAG_SQL = """
SELECT count(*)::int AS replicas,
       max(extract(epoch FROM coalesce(replay_lag, write_lag, flush_lag)))::float AS lag_seconds
FROM pg_catalog.pg_stat_replication
"""
# NULL unless the role may read it (superuser or pg_read_all_settings): reading it otherwise is an error.
DATA_DIRECTORY_SQL = """
SELECT CASE WHEN pg_catalog.pg_has_role('pg_read_all_settings', 'USAGE')
            THEN pg_catalog.current_setting('data_directory', true) END AS data_directory
"""
# The catalog of one column as an upgrade leaves it: what an online run must leave exactly as the in-place
# one does (column position aside).
COLUMN_CATALOG_SQL = """
SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
       pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) AS default, a.attcollation <> 0 AS collatable,
       pg_catalog.col_description(a.attrelid, a.attnum::int) AS comment,
       ARRAY(SELECT pg_catalog.pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' INVALID' END
             FROM pg_catalog.pg_index AS i WHERE i.indrelid = a.attrelid AND a.attnum = ANY (i.indkey)
             ORDER BY 1) AS indexes,
       ARRAY(SELECT co.conname || ' ' || pg_catalog.pg_get_constraintdef(co.oid)
             FROM pg_catalog.pg_constraint AS co WHERE co.conrelid = a.attrelid AND a.attnum = ANY (co.conkey)
             ORDER BY 1) AS constraints
FROM pg_catalog.pg_attribute AS a
LEFT JOIN pg_catalog.pg_attrdef AS ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
WHERE a.attrelid = pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %(schema)s, %(table)s))
  AND a.attname = %(column)s AND a.attnum > 0 AND NOT a.attisdropped
"""


def online_shadow_column(column: str, target: str) -> str:
    """The shadow column that holds ``column``'s value in the ``target`` type until the swap."""
    return column + ONLINE_SHADOW_SUFFIX[target]


def online_sync_function_name(schema: str, table: str, column: str) -> str:
    """The trigger function's name in the history schema: one per column (its body names the columns)."""
    digest = hashlib.sha256(json.dumps([schema, table, column]).encode('utf-8')).hexdigest()
    return 'online_sync_' + digest[:16]


# jsonb -> text[] inline (no function to create first, so a read-only plan can use it too): NULL stays NULL; not an
# array, or an element neither string nor null: NULL (see above).
_TO_TEXT_ARRAY = """CASE WHEN pg_catalog.jsonb_typeof({v}) = 'array'
     AND NOT pg_catalog.jsonb_path_exists({v}, 'strict $[*] ? (@.type() != "string" && @.type() != "null")')
THEN (SELECT coalesce(array_agg(e ORDER BY i), '{{}}')
      FROM pg_catalog.jsonb_array_elements_text({v}) WITH ORDINALITY AS t(e, i)) END"""


def online_conversion_expr(target: str, history_schema: str, value: t.Any) -> t.Any:
    """``value`` (an SQL composable) converted to ``target``, exactly as the revision converts it."""
    if target == 'jsonb':
        return sql.SQL('pg_catalog.to_jsonb({})').format(value)
    return sql.SQL('(' + _TO_TEXT_ARRAY + ')').format(v=value)


# The trigger keeps the shadow equal to the conversion of the column on every INSERT and UPDATE. A value
# the target cannot hold (only jsonb -> text[]) is refused with the reason, not stored as NULL.
_ONLINE_SYNC_BODY = """
BEGIN
    NEW.{shadow} := {converted};
    IF NEW.{shadow} IS NULL AND NEW.{column} IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'check_violation',
            MESSAGE = format('%s.%s: this value cannot be stored as %s while ledgermind.migrations converts the '
                             'column online (it would be lost): write a flat array of strings', TG_TABLE_NAME,
                             {column_name}, {target});
    END IF;
    RETURN NEW;
END
"""


def online_sync_function_body(history_schema: str, column: str, shadow: str, target: str) -> t.Any:
    """The PL/pgSQL body, to render with ``as_string`` and pass as ``%(body)s``."""
    return sql.SQL(_ONLINE_SYNC_BODY).format(
        shadow=sql.Identifier(shadow), column=sql.Identifier(column), column_name=sql.Literal(column),
        target=sql.Literal(target),
        converted=online_conversion_expr(target, history_schema, sql.SQL('NEW.{}').format(sql.Identifier(column))))


def create_online_sync_function_sql(history_schema: str, function: str) -> t.Any:
    """``CREATE OR REPLACE FUNCTION`` of the sync trigger, taking the body as ``%(body)s``. SECURITY DEFINER with a
    pinned search_path: the application's roles need no right on the history schema and cannot substitute
    functions."""
    return sql.SQL('CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER '
                   'SET search_path = pg_catalog, pg_temp AS %(body)s').format(sql.Identifier(history_schema, function))


def online_sync_trigger_sql(schema: str, table: str, history_schema: str, function: str) -> t.Any:
    return sql.SQL('CREATE TRIGGER {} BEFORE INSERT OR UPDATE ON {} FOR EACH ROW EXECUTE FUNCTION {}()').format(
        sql.Identifier(ONLINE_TRIGGER), sql.Identifier(schema, table), sql.Identifier(history_schema, function))


def online_add_shadow_sql(schema: str, table: str, shadow: str, target: str) -> t.Any:
    # Nullable and without a default: a catalog change only, no rewrite.
    return sql.SQL('ALTER TABLE {} ADD COLUMN {} {}').format(
        sql.Identifier(schema, table), sql.Identifier(shadow), sql.SQL(target))


def online_shadow_matches(target: str, column: t.Any, shadow: t.Any) -> t.Any:
    """True when the shadow holds exactly the conversion of the column, cheaply: for jsonb the conversion itself
    (to_jsonb); for text[] the other way round, to_jsonb of the shadow equal to the column, which for a flat text[]
    numbered from 1 holds exactly when the shadow is the downgrade's conversion of the column (to_jsonb of such an
    array is a flat array of strings and nulls, which that conversion maps back element by element). No per-row
    subquery, so the backfill's filter and the verify cost a to_jsonb and a comparison per row."""
    if target == 'jsonb':
        return sql.SQL('{} IS NOT DISTINCT FROM pg_catalog.to_jsonb({})').format(shadow, column)
    return sql.SQL('(pg_catalog.to_jsonb({s}) IS NOT DISTINCT FROM {c} AND ({s} IS NULL OR pg_catalog.cardinality({s}) '
                   '= 0 OR (pg_catalog.array_ndims({s}) = 1 AND pg_catalog.array_lower({s}, 1) = 1)))').format(
        s=shadow, c=column)


def online_backfill_sql(schema: str, table: str, key: str, key_type: str, column: str, shadow: str, target: str,
                        history_schema: str, first: bool) -> t.Any:
    """One batch: the next %(size)s keys after %(after)s, in key order; only rows whose shadow differs are
    written. The sync trigger computes the shadow of each row written (the UPDATE only marks it), so the
    conversion runs once per written row. Returns the batch's last key (as text), the rows read and the rows
    written; a row the target cannot hold stops the batch with the trigger's check_violation."""
    rel = sql.Identifier(schema, table)
    k = sql.Identifier(key)
    matches = online_shadow_matches(target, sql.SQL('t.{}').format(sql.Identifier(column)),
                                    sql.SQL('t.{}').format(sql.Identifier(shadow)))
    after = sql.SQL('') if first else sql.SQL('WHERE {} > %(after)s::{}').format(k, sql.SQL(key_type))
    return sql.SQL(
        'WITH batch AS (SELECT {k} FROM {rel} {after} ORDER BY {k} LIMIT %(size)s), '
        'written AS (UPDATE {rel} AS t SET {shadow} = NULL FROM batch AS b '
        'WHERE t.{k} = b.{k} AND NOT {matches} RETURNING 1) '
        'SELECT (SELECT max({k})::text FROM batch) AS last_key, (SELECT count(*) FROM batch)::bigint AS rows_read, '
        '(SELECT count(*) FROM written)::bigint AS rows_written').format(
        k=k, rel=rel, after=after, shadow=sql.Identifier(shadow), matches=matches)


def online_verify_sql(schema: str, table: str, key: str, column: str, shadow: str, target: str,
                      history_schema: str) -> t.Any:
    """Rows whose shadow is not the conversion of the column, and those the target cannot hold, with a few keys.

    One pass in SQL: every row gets the cheap test (``online_shadow_matches``); only a row failing it gets the
    conversion itself, to tell a differing shadow from a value the target cannot hold."""
    c = sql.Identifier(column)
    s = sql.Identifier(shadow)
    k = sql.Identifier(key)
    converted = online_conversion_expr(target, history_schema, c)
    return sql.SQL(
        'SELECT count(*)::bigint AS rows, '
        'count(*) FILTER (WHERE CASE WHEN ok THEN false ELSE {s} IS DISTINCT FROM {converted} END)::bigint '
        'AS differing, '
        'count(*) FILTER (WHERE CASE WHEN ok THEN false ELSE {c} IS NOT NULL AND {converted} IS NULL END)::bigint '
        'AS unconvertible, '
        '(array_agg({k}::text ORDER BY {k}) FILTER (WHERE CASE WHEN ok THEN false ELSE {s} IS DISTINCT FROM '
        '{converted} OR ({c} IS NOT NULL AND {converted} IS NULL) END))[1:5] AS sample_keys '
        'FROM (SELECT {k}, {c}, {s}, {matches} AS ok FROM {rel} OFFSET 0) AS v').format(
        s=s, c=c, k=k, converted=converted, matches=online_shadow_matches(target, c, s),
        rel=sql.Identifier(schema, table))


def online_unconvertible_sql(schema: str, table: str, key: str, column: str, target: str,
                             history_schema: str, key_type: str | None = None) -> t.Any:
    """Rows the target type cannot hold (none for jsonb), with a few keys. With ``key_type``, only the next
    %(size)s keys after %(after)s (NULL: from the first): the backfill batch that met one."""
    c = sql.Identifier(column)
    k = sql.Identifier(key)
    converted = online_conversion_expr(target, history_schema, c)
    rel = sql.Identifier(schema, table)
    if key_type is not None:
        rel = sql.SQL('(SELECT {k}, {c} FROM {rel} WHERE %(after)s::{kt} IS NULL OR {k} > %(after)s::{kt} '
                      'ORDER BY {k} LIMIT %(size)s) AS b').format(k=k, c=c, rel=rel, kt=sql.SQL(key_type))
    return sql.SQL('SELECT count(*)::bigint AS unconvertible, (array_agg({k}::text ORDER BY {k}))[1:5] AS sample_keys '
                   'FROM {rel} WHERE {c} IS NOT NULL AND {converted} IS NULL').format(
        k=k, rel=rel, c=c, converted=converted)


def online_create_index_sql(schema: str, table: str, index: str, method: str, column: str, opclass: str) -> t.Any:
    return sql.SQL('CREATE INDEX CONCURRENTLY {} ON {} USING {} ({} {})').format(
        sql.Identifier(index), sql.Identifier(schema, table), sql.SQL(method), sql.Identifier(column),
        sql.SQL(opclass) if opclass else sql.SQL(''))


def online_drop_index_sql(schema: str, index: str) -> t.Any:
    return sql.SQL('DROP INDEX CONCURRENTLY IF EXISTS {}').format(sql.Identifier(schema, index))


def online_swap_sql(schema: str, table: str, column: str, shadow: str, history_schema: str, function: str,
                    comment: str | None) -> list[t.Any]:
    """The swap's statements after ``LOCK TABLE``: trigger and old column gone, shadow renamed, comment kept."""
    rel = sql.Identifier(schema, table)
    statements = [
        sql.SQL('DROP TRIGGER {} ON {}').format(sql.Identifier(ONLINE_TRIGGER), rel),
        sql.SQL('ALTER TABLE {} DROP COLUMN {}').format(rel, sql.Identifier(column)),
        sql.SQL('ALTER TABLE {} RENAME COLUMN {} TO {}').format(rel, sql.Identifier(shadow), sql.Identifier(column)),
        sql.SQL('DROP FUNCTION {}()').format(sql.Identifier(history_schema, function)),
    ]
    if comment is not None:
        statements.append(sql.SQL('COMMENT ON COLUMN {}.{} IS {}').format(rel, sql.Identifier(column),
                                                                          sql.Literal(comment)))
    return statements


def online_remove_sql(schema: str, table: str, shadow: str | None, history_schema: str,
                      function: str | None) -> list[t.Any]:
    """What an unfinished conversion left, removed: the trigger, its function and the shadow column."""
    rel = sql.Identifier(schema, table)
    statements = [sql.SQL('DROP TRIGGER IF EXISTS {} ON {}').format(sql.Identifier(ONLINE_TRIGGER), rel)]
    if function:
        statements.append(sql.SQL('DROP FUNCTION IF EXISTS {}()').format(sql.Identifier(history_schema, function)))
    if shadow:
        statements.append(sql.SQL('ALTER TABLE {} DROP COLUMN IF EXISTS {}').format(rel, sql.Identifier(shadow)))
    return statements


def version_update_sql(version_table: str) -> t.Any:
    """Alembic's version row moved from one of %(allowed)s to %(revision)s (rowcount 1 when it was there)."""
    return sql.SQL('UPDATE {} SET version_num = %(revision)s WHERE version_num = ANY (%(allowed)s)').format(
        sql.Identifier(version_table))


def lock_table_sql(schema: str, table: str, mode: str) -> t.Any:
    return sql.SQL('LOCK TABLE {} IN {} MODE').format(sql.Identifier(schema, table), sql.SQL(mode))


def count_rows_sql(schema: str, table: str) -> t.Any:
    return sql.SQL('SELECT count(*)::bigint AS n FROM {}').format(sql.Identifier(schema, table))


def analyze_column_sql(schema: str, table: str, column: str) -> t.Any:
    return sql.SQL('ANALYZE {} ({})').format(sql.Identifier(schema, table), sql.Identifier(column))


def create_schema_sql(schema: str) -> t.Any:
    return sql.SQL('CREATE SCHEMA IF NOT EXISTS {}').format(sql.Identifier(schema))


def online_drop_trigger_sql(schema: str, table: str) -> t.Any:
    return online_remove_sql(schema, table, None, '', None)[0]


def online_drop_function_sql(history_schema: str, function: str) -> t.Any:
    return sql.SQL('DROP FUNCTION IF EXISTS {}()').format(sql.Identifier(history_schema, function))


def online_drop_shadow_sql(schema: str, table: str, shadow: str) -> t.Any:
    return sql.SQL('ALTER TABLE {} DROP COLUMN IF EXISTS {}').format(
        sql.Identifier(schema, table), sql.Identifier(shadow))


def online_mark_progress_sql(history_schema: str, field: str) -> t.Any:
    """Progress row's ``field`` (backfilled_at, verified_at) set to now()."""
    return sql.SQL(ONLINE_PROGRESS_MARK_SQL).format(hs=sql.Identifier(history_schema), field=sql.Identifier(field),
                                                    value=sql.SQL('pg_catalog.now()'))


def version_rows_sql(version_table: str) -> t.Any:
    return sql.SQL('SELECT version_num FROM {} ORDER BY 1').format(sql.Identifier(version_table))


def online_probe_sql(schema: str, table: str, key: str, column: str, target: str, history_schema: str) -> t.Any:
    """One batch's read and conversion, without writing: the plan's rate."""
    return sql.SQL('SELECT count({}) AS n FROM (SELECT {} FROM {} ORDER BY {} LIMIT %(size)s) AS s').format(
        online_conversion_expr(target, history_schema, sql.Identifier(column)), sql.Identifier(column),
        sql.Identifier(schema, table), sql.Identifier(key))


# ---------------------------------------------------------------------------------------------
# Query latency (pg_query_latency): a representative, read-only query set, before and after a change
# ---------------------------------------------------------------------------------------------

# The runbook's containment query, a primary-key lookup and the backend's "recent rows" read, in the spelling
# each column type needs. %(token)s and %(key)s are a token and a key read from the table itself.
_LATENCY_QUERIES = {
    'containment': {'text[]': 'SELECT count(*) FROM {rel} WHERE {col} @> ARRAY[%(token)s]::text[]',
                    'jsonb': 'SELECT count(*) FROM {rel} WHERE {col} @> pg_catalog.jsonb_build_array(%(token)s::text)'},
    'key_lookup': {'any': 'SELECT {col} FROM {rel} WHERE {key} = %(key)s'},
    'recent_rows': {'any': 'SELECT {key}, {col} FROM {rel} ORDER BY {key} DESC LIMIT 50'},
}
LATENCY_QUERY_NAMES = tuple(_LATENCY_QUERIES)
# A token and a key that exist, whatever the column's type.
LATENCY_SAMPLE_SQL = """
SELECT (SELECT e FROM {rel} AS s, pg_catalog.jsonb_array_elements_text(pg_catalog.to_jsonb(s.{col})) AS e
        WHERE s.{col} IS NOT NULL LIMIT 1) AS token,
       (SELECT max({key}) FROM {rel}) AS key
"""
PG_STAT_STATEMENTS_PRESENT_SQL = """
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_stat_statements') AS present
"""
# The table's statements as pg_stat_statements counts them (cumulative: the caller compares two readings).
PG_STAT_STATEMENTS_SQL = """
SELECT queryid::text AS queryid, calls::bigint AS calls, total_exec_time::float AS total_ms,
       left(query, 200) AS query
FROM pg_stat_statements WHERE query ILIKE %(pattern)s AND dbid = (SELECT oid FROM pg_catalog.pg_database
                                                                WHERE datname = pg_catalog.current_database())
ORDER BY total_exec_time DESC LIMIT 20
"""


def latency_query_sql(name: str, column_type: str, schema: str, table: str, column: str, key: str) -> t.Any:
    """One of the built-in queries, for the column's current type."""
    spellings = _LATENCY_QUERIES[name]
    text = spellings.get(column_type) or spellings.get('any')
    if text is None:
        raise ValueError(f'query {name} has no form for a {column_type} column')
    return sql.SQL(text).format(rel=sql.Identifier(schema, table), col=sql.Identifier(column),
                                key=sql.Identifier(key))


def latency_sample_sql(schema: str, table: str, column: str, key: str) -> t.Any:
    return sql.SQL(LATENCY_SAMPLE_SQL).format(rel=sql.Identifier(schema, table), col=sql.Identifier(column),
                                              key=sql.Identifier(key))


# ---------------------------------------------------------------------------------------------
# Free space (pg_backup_archive, pg_rewrite_space): the size a backup archive or a table rewrite is estimated from
# ---------------------------------------------------------------------------------------------

# The table's size with its TOAST and indexes, summed over its partitions (a partitioned table has no storage of
# its own): what an in-place ALTER ... TYPE writes anew and what a pg_dump archive is estimated from. Whether it
# lives in a tablespace of its own (then the data directory's room says nothing). No row when it does not exist.
TABLE_SPACE_SQL = """
SELECT c.oid::bigint AS relid,
       CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(pg_catalog.pg_total_relation_size(p.relid)), 0)
                  FROM pg_catalog.pg_partition_tree(c.oid) AS p)
            ELSE pg_catalog.pg_total_relation_size(c.oid) END::bigint AS total_bytes,
       c.reltablespace <> 0 AS own_tablespace
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND c.relkind IN ('r', 'p', 'm')
"""
# TABLE_SPACE_SQL from the planner's page counts (pg_class.relpages of the table, its partitions, TOAST tables and
# indexes, as of the last VACUUM, ANALYZE or CREATE INDEX): no lock taken. pg_total_relation_size opens the table and
# its indexes (ACCESS SHARE), so it waits while another session holds one of them (an ALTER TABLE, a REINDEX).
TABLE_SPACE_STATS_SQL = """
WITH RECURSIVE tree(relid) AS (
    SELECT c.oid FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND c.relkind IN ('r', 'p', 'm')
  UNION ALL
    SELECT i.inhrelid FROM pg_catalog.pg_inherits AS i JOIN tree ON i.inhparent = tree.relid
)
SELECT (SELECT t.relid::bigint FROM tree AS t LIMIT 1) AS relid,
       (SELECT coalesce(sum(c.relpages::bigint), 0)
        FROM pg_catalog.pg_class AS c
        WHERE c.oid IN (SELECT relid FROM tree)
           OR c.oid IN (SELECT r.reltoastrelid FROM pg_catalog.pg_class AS r WHERE r.oid IN (SELECT relid FROM tree))
           OR c.oid IN (SELECT x.indexrelid FROM pg_catalog.pg_index AS x WHERE x.indrelid IN (SELECT relid FROM tree))
       )::bigint * pg_catalog.current_setting('block_size')::bigint AS total_bytes,
       (SELECT r.reltablespace <> 0 FROM pg_catalog.pg_class AS r
        WHERE r.oid = (SELECT t.relid FROM tree AS t LIMIT 1)) AS own_tablespace
WHERE EXISTS (SELECT FROM tree)
"""
# The whole database's size: what a scope=full archive is estimated from.
DATABASE_SIZE_SQL = """
SELECT pg_catalog.pg_database_size(pg_catalog.current_database())::bigint AS total_bytes,
       pg_catalog.current_database()::text AS database
"""

# ---------------------------------------------------------------------------------------------
# Server log (pg_server_log): where the server logs, whether this role may read it, and the reads
# ---------------------------------------------------------------------------------------------

# Settings anyone may read; data_directory and log_directory only when the role may (reading them otherwise is an
# error). EXECUTE on the file functions is revoked from PUBLIC; a file outside the data and log directories also
# needs pg_read_server_files (pg_has_role is true for a superuser).
SERVER_LOG_SETTINGS_SQL = """
SELECT pg_catalog.current_database()::text AS database,
       current_user::text AS role,
       pg_catalog.pg_backend_pid() AS backend_pid,
       pg_catalog.pg_postmaster_start_time() AS postmaster_start,
       pg_catalog.now() AS server_now,
       pg_catalog.current_setting('server_version_num')::int AS server_version_num,
       pg_catalog.current_setting('logging_collector') AS logging_collector,
       pg_catalog.current_setting('log_destination') AS log_destination,
       pg_catalog.current_setting('log_line_prefix') AS log_line_prefix,
       pg_catalog.current_setting('log_timezone') AS log_timezone,
       pg_catalog.current_setting('lc_messages') AS lc_messages,
       r.rolsuper AS superuser,
       pg_catalog.pg_has_role('pg_read_server_files', 'USAGE') AS read_server_files,
       s.read_all_settings,
       CASE WHEN s.read_all_settings THEN pg_catalog.current_setting('data_directory') END AS data_directory,
       CASE WHEN s.read_all_settings THEN pg_catalog.current_setting('log_directory') END AS log_directory,
       pg_catalog.has_function_privilege('pg_catalog.pg_current_logfile(text)', 'EXECUTE') AS may_current_logfile,
       pg_catalog.has_function_privilege('pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)',
                                         'EXECUTE') AS may_read_file,
       pg_catalog.has_function_privilege('pg_catalog.pg_stat_file(text, boolean)', 'EXECUTE') AS may_stat_file,
       pg_catalog.has_function_privilege('pg_catalog.pg_ls_logdir()', 'EXECUTE') AS may_ls_logdir
FROM pg_catalog.pg_roles AS r,
     LATERAL (SELECT pg_catalog.pg_has_role('pg_read_all_settings', 'USAGE') AS read_all_settings) AS s
WHERE r.rolname = current_user
"""
# The file the logging collector writes for one format (NULL without the collector, or for a format not logged).
SERVER_LOG_CURRENT_FILE_SQL = "SELECT pg_catalog.pg_current_logfile(%(format)s) AS path"
# Size and modification time of a file on the database host (NULLs when it does not exist).
SERVER_LOG_STAT_SQL = """
SELECT size, modification, isdir FROM pg_catalog.pg_stat_file(%(path)s, true)
"""
# Bytes of a file on the database host: bytea, so a chunk may cut a multi-byte character.
SERVER_LOG_READ_SQL = """
SELECT pg_catalog.pg_read_binary_file(%(path)s, %(offset)s, %(length)s, true) AS data
"""
# The log directory's files written to since the window's start, newest first (pg_monitor or superuser).
SERVER_LOG_DIR_SQL = """
SELECT name, size, modification FROM pg_catalog.pg_ls_logdir()
WHERE modification >= %(since)s
ORDER BY modification DESC, name DESC
"""


# ---------------------------------------------------------------------------------------------
# Scratch databases (pg_scratch_database): the rehearsal's copy of the table lives in one
# ---------------------------------------------------------------------------------------------

# CREATEDB is a role attribute, never inherited from a granted role: read for the role logged in as. ``stale``: other
# databases named like this caller's scratch databases (``pattern``, a regular expression; empty matches none).
SCRATCH_SERVER_SQL = """
SELECT current_user::text AS user, r.rolcreatedb AS createdb, r.rolsuper AS superuser,
       pg_catalog.current_setting('server_version_num')::int AS server_version_num,
       pg_catalog.current_database()::text AS database,
       EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = %(name)s) AS exists,
       COALESCE((SELECT array_agg(datname::text ORDER BY datname) FROM pg_catalog.pg_database
                 WHERE %(pattern)s <> '' AND datname ~ %(pattern)s AND datname <> %(name)s),
                '{}'::text[]) AS stale
FROM pg_catalog.pg_roles AS r
WHERE r.rolname = current_user
"""
# The encoding and collation a scratch database is created with: the connected database's.
DATABASE_LOCALE_SQL = """
SELECT pg_catalog.pg_encoding_to_char(encoding) AS encoding, datcollate::text AS collate, datctype::text AS ctype
FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()
"""
# Only this role's client sessions: a plain DROP DATABASE stops an autovacuum worker itself, whereas WITH (FORCE)
# refuses to end one unless the role may signal it (pg_signal_backend).
END_OWN_SESSIONS_SQL = """
SELECT count(pg_catalog.pg_terminate_backend(pid))::int AS ended FROM pg_catalog.pg_stat_activity
WHERE datname = %(name)s AND pid <> pg_catalog.pg_backend_pid() AND backend_type = 'client backend'
  AND usename = current_user
"""


def create_database_sql(name: str, encoding: str, collate: str, ctype: str) -> t.Any:
    """CREATE DATABASE from template0 with the given encoding and collation (all quoted by psycopg2)."""
    return sql.SQL('CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}').format(
        sql.Identifier(name), sql.Literal(encoding), sql.Literal(collate), sql.Literal(ctype))


def drop_database_sql(name: str) -> t.Any:
    return sql.SQL('DROP DATABASE IF EXISTS {}').format(sql.Identifier(name))
