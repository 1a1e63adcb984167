"""gnomon's tables in PostgreSQL, and the statements that move claims and leases.

Everything lives in one schema (``gnomon`` by default). ``meta`` records the schema
version; the schema is created on first use, under a transaction-scoped advisory lock so
that nodes starting together do not race (session locks would break behind PgBouncer).
Times are the server's ``clock_timestamp()``, never a node's clock.
"""

from __future__ import annotations

from psycopg import sql

__all__ = ["SCHEMA_VERSION", "Statements"]

SCHEMA_VERSION = 1

_CREATE_V1 = """
CREATE TABLE {schema}.meta (version integer NOT NULL);
CREATE SEQUENCE {schema}.fence;
CREATE TABLE {schema}.claims (
    key text PRIMARY KEY,
    state text NOT NULL CHECK (state IN ('running', 'done', 'abandoned')),
    token bigint NOT NULL,
    attempt integer NOT NULL,
    lease_until timestamptz NOT NULL,
    keep_until timestamptz NOT NULL,
    verdict text NOT NULL
);
CREATE INDEX claims_keep_until ON {schema}.claims (keep_until);
CREATE TABLE {schema}.leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    token bigint NOT NULL,
    lease_until timestamptz NOT NULL
);
INSERT INTO {schema}.meta (version) VALUES (1);
"""

# The whole claim decision in one statement (so no row lock outlives a round trip). The
# SET expressions see the stored row as it was; ``verdict`` records what this statement
# decided, for RETURNING, which sees the row as it is now.
_VERDICT = """CASE
        WHEN c.keep_until < (SELECT t FROM now) THEN 'claim'
        WHEN c.state <> 'running' THEN 'finished'
        WHEN c.lease_until >= (SELECT t FROM now) THEN 'held'
        WHEN %(at_least_once)s THEN 'reclaim'
        ELSE 'abandon'
    END"""

_CLAIM = """
WITH now AS MATERIALIZED (SELECT clock_timestamp() AS t)
INSERT INTO {claims} AS c (key, state, token, attempt, lease_until, keep_until, verdict)
SELECT %(key)s, 'running', nextval({fence}), 1, t + %(ttl)s, t + %(keep)s, 'claim' FROM now
ON CONFLICT (key) DO UPDATE SET
    verdict = <verdict>,
    state = CASE WHEN <verdict> = 'abandon' THEN 'abandoned'
                 WHEN <verdict> IN ('claim', 'reclaim') THEN 'running' ELSE c.state END,
    token = CASE WHEN <verdict> IN ('claim', 'reclaim') THEN excluded.token ELSE c.token END,
    attempt = CASE WHEN <verdict> = 'claim' THEN 1
                   WHEN <verdict> = 'reclaim' THEN c.attempt + 1 ELSE c.attempt END,
    lease_until = CASE WHEN <verdict> IN ('claim', 'reclaim') THEN excluded.lease_until
                       ELSE c.lease_until END,
    keep_until = CASE WHEN <verdict> IN ('claim', 'reclaim', 'abandon')
                      THEN excluded.keep_until ELSE c.keep_until END
RETURNING c.verdict, c.token, c.attempt, c.lease_until - (SELECT t FROM now)
""".replace("<verdict>", _VERDICT)

_RENEW = """
UPDATE {claims}
SET lease_until = clock_timestamp() + %(ttl)s,
    keep_until = greatest(keep_until, clock_timestamp() + %(keep)s)
WHERE key = %(key)s AND token = %(token)s AND state = 'running'
  AND lease_until >= clock_timestamp()
RETURNING 1
"""

_RELEASE = """
UPDATE {claims} SET state = 'done', keep_until = clock_timestamp() + %(keep)s
WHERE key = %(key)s AND token = %(token)s AND state = 'running'
RETURNING 1
"""

_PURGE = "DELETE FROM {claims} WHERE keep_until < clock_timestamp()"

# A term stays while its holder renews in time; an expired or released lease goes to the
# first campaigner, with a new token (also when the old holder itself comes back late).
_ELECT = """
INSERT INTO {leases} AS l (name, holder, token, lease_until)
VALUES (%(name)s, %(holder)s, nextval({fence}), clock_timestamp() + %(ttl)s)
ON CONFLICT (name) DO UPDATE
SET holder = excluded.holder,
    token = CASE WHEN l.holder = excluded.holder AND l.lease_until >= clock_timestamp()
                 THEN l.token ELSE excluded.token END,
    lease_until = excluded.lease_until
WHERE l.holder = excluded.holder OR l.lease_until < clock_timestamp()
RETURNING l.token
"""

_RESIGN = """
DELETE FROM {leases} WHERE name = %(name)s AND holder = %(holder)s AND token = %(token)s
RETURNING 1
"""


class Statements:
    """The statements, composed for one schema."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        names = {
            "schema": sql.Identifier(schema),
            "claims": sql.Identifier(schema, "claims"),
            "leases": sql.Identifier(schema, "leases"),
            # nextval takes the sequence's name as text; quote it as PostgreSQL would
            "fence": sql.Literal(sql_name(schema, "fence")) + sql.SQL("::regclass"),
        }

        def compose(text: str) -> sql.Composed:
            return sql.SQL(text).format(**names)

        self.create = compose(_CREATE_V1)
        self.claim = compose(_CLAIM)
        self.renew = compose(_RENEW)
        self.release = compose(_RELEASE)
        self.purge = compose(_PURGE)
        self.elect = compose(_ELECT)
        self.resign = compose(_RESIGN)
        self.create_schema = compose("CREATE SCHEMA IF NOT EXISTS {schema}")
        self.read_version = sql.SQL("SELECT version FROM {} LIMIT 1").format(
            sql.Identifier(schema, "meta")
        )
        self.lock = sql.SQL("SELECT pg_advisory_xact_lock(hashtext({}))").format(
            sql.Literal(f"gnomon schema {schema}")
        )


def sql_name(*parts: str) -> str:
    """A qualified name, each part double-quoted, as text."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)
