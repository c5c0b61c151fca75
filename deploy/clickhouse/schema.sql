-- The tables a `clickhouse` sink inserts into (docs/fleet.md), one set for
-- a whole fleet. Runs on ClickHouse 18.16 (Debian 12's package) and later:
--   clickhouse-client --multiquery < /usr/share/observer/clickhouse/schema.sql
-- For another database, replace `observer.` and set `database` in
-- [sinks.clickhouse]. For a sharded cluster see docs/fleet.md.
--
-- Every row names its host: the log's origin, `<deployer_id>/host/<hostname>`
-- (the first line of the host's checkpoints). The sink delivers at least
-- once, so a row may arrive twice: each table is a ReplacingMergeTree whose
-- sort key holds the row's identity, and identical rows collapse into one
-- when parts merge (at once with `FINAL` in a query, or `OPTIMIZE TABLE ...
-- FINAL`). Two different rows at the same position (a host that rewrote its
-- log) differ in the key and are both kept, for `fleet verify` to report.

CREATE DATABASE IF NOT EXISTS observer;

-- One row per receipt, exactly as the host's store holds it: `envelope` and
-- `context` are the stored JCS text, so the signature and the chain links
-- are checked from these rows alone. Sorted by host, chain and seq: a
-- host's chains read in order, and queries by host or chain use the key.
CREATE TABLE IF NOT EXISTS observer.receipts
(
    host String,
    -- issuer_id: <host>/agent/<agent>, one hash chain per issuer.
    chain String,
    seq UInt64,
    -- The receipt's position in the host's Merkle log.
    leaf_index UInt64,
    agent String,
    action String,
    risk String,
    issued_ns UInt64,
    -- Lowercase hex of SHA-256(JCS(envelope)).
    receipt_hash FixedString(64),
    -- The payload's previousReceiptHash ("" if the envelope lacks it).
    previous_hash String,
    envelope String,
    -- NULL for a receipt stored without its context (hash-only mode).
    context Nullable(String),
    -- A shadow_ai.finding's rule (its context's top-level `rule_id`), ""
    -- for other receipts and for a finding without a context: what `fleet
    -- findings` groups and filters by, without reading any context. The
    -- sink does not send it (its INSERTs name their columns), so ClickHouse
    -- computes it. Added to an older table (docs/fleet.md, "Schema
    -- changes"), the rows already there get it computed the same way.
    -- visitParamExtractString reads the first `rule_id` member at any
    -- depth, which in a finding is the top-level one (observer-ctl's
    -- fleet/query.rs says why). No semicolon in these comments: the tests
    -- and the bench split this file at them.
    rule String DEFAULT if(action = 'shadow_ai.finding',
        ifNull(visitParamExtractString(context, 'rule_id'), ''), ''),
    -- 18.16 has no DateTime64: seconds, for reading and time filters. An
    -- ALIAS, not MATERIALIZED: 18.16 refuses inserts through a Distributed
    -- table over a table with a MATERIALIZED column (Code 44).
    time DateTime('UTC') ALIAS toDateTime(intDiv(issued_ns, 1000000000), 'UTC')
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(issued_ns, 1000000000), 'UTC'))
ORDER BY (host, chain, seq, receipt_hash);

-- The hosts' signed checkpoints (C2SP signed notes) as stored. A host's
-- checkpoints in ClickHouse show what it had signed: a log rewritten or cut
-- after one was forwarded no longer matches it.
CREATE TABLE IF NOT EXISTS observer.checkpoints
(
    host String,
    -- The log size the checkpoint signs.
    size UInt64,
    -- Lowercase hex of the Merkle root.
    root String,
    -- The note's first line (the host's origin when it was signed).
    origin String,
    note String,
    -- As stored (RFC 3339), and as Unix nanoseconds (0 if unparsable).
    created_at String,
    created_ns UInt64
)
ENGINE = ReplacingMergeTree()
ORDER BY (host, size, root);

-- The hosts' chain and master public keys, as their stores record them,
-- each with the `observer.key` receipt that announced it. For reading and
-- joining only: `fleet verify` trusts a key through that signed receipt
-- and the host's pinned master key, never through this table.
CREATE TABLE IF NOT EXISTS observer.keys
(
    host String,
    kid String,
    chain String,
    agent String,
    -- The AKP JWK (JCS text).
    jwk String,
    -- The master generation that derived it (1: genesis).
    generation UInt64,
    -- The kid this key replaced, if it is a rotation.
    rotates Nullable(String),
    -- receipt_hash of the announcing receipt.
    introduced_by FixedString(64)
)
ENGINE = ReplacingMergeTree()
ORDER BY (host, kid, introduced_by);
