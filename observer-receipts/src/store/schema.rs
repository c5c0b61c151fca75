//! The store's schema: the migrations in order, and the oldest version a
//! read-only open still reads.

/// Migrations in order; `user_version` is the number applied.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    pid INTEGER NOT NULL,
    version TEXT NOT NULL,
    started_at TEXT NOT NULL,
    stopped_at TEXT,
    clean_stop INTEGER NOT NULL DEFAULT 0,
    -- 'daemon', or 'maintenance' for offline work such as an erasure
    kind TEXT NOT NULL DEFAULT 'daemon'
);
CREATE TABLE keys (
    kid TEXT PRIMARY KEY,
    issuer_id TEXT NOT NULL UNIQUE,
    agent_id TEXT NOT NULL,
    jwk TEXT NOT NULL,
    introduced_by BLOB NOT NULL
);
CREATE TABLE chains (
    issuer_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    kid TEXT NOT NULL,
    seq INTEGER NOT NULL,
    head_payload_hash TEXT NOT NULL,
    head_receipt_hash BLOB NOT NULL
);
CREATE TABLE receipts (
    leaf_index INTEGER PRIMARY KEY,
    receipt_hash BLOB NOT NULL UNIQUE,
    issuer_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    agent_id TEXT NOT NULL,
    action_type TEXT NOT NULL,
    issued_ns INTEGER NOT NULL,
    risk_class TEXT NOT NULL,
    envelope TEXT NOT NULL,
    UNIQUE (issuer_id, seq)
);
CREATE INDEX receipts_by_agent ON receipts (agent_id, issued_ns);
CREATE INDEX receipts_by_action ON receipts (action_type, issued_ns);
CREATE INDEX receipts_by_time ON receipts (issued_ns);
CREATE INDEX receipts_by_risk ON receipts (risk_class, issued_ns);
CREATE TABLE contexts (
    leaf_index INTEGER PRIMARY KEY REFERENCES receipts (leaf_index),
    context TEXT NOT NULL
);
CREATE TABLE merkle_nodes (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE checkpoints (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"#,
    r#"
-- Master key rotation (docs/RECEIPTS.md, "Key rotation"): a chain has one
-- key per master generation, so issuer_id is no longer unique. `generation`
-- is the master generation that derived the key (1: the genesis seed);
-- `rotates` the kid it replaced (NULL for a chain's first key).
CREATE TABLE keys_v2 (
    kid TEXT PRIMARY KEY,
    issuer_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    jwk TEXT NOT NULL,
    introduced_by BLOB NOT NULL,
    generation INTEGER NOT NULL DEFAULT 1,
    rotates TEXT
);
INSERT INTO keys_v2 (kid, issuer_id, agent_id, jwk, introduced_by)
    SELECT kid, issuer_id, agent_id, jwk, introduced_by FROM keys ORDER BY rowid;
DROP TABLE keys;
ALTER TABLE keys_v2 RENAME TO keys;
CREATE INDEX keys_by_issuer ON keys (issuer_id);
"#,
    r#"
-- The signature's bytes apart from the envelope's text (stored_envelope.rs):
-- 3,309 bytes instead of 4,412 base64url characters. Rows written before
-- keep the whole envelope (sig NULL) until `receipts_whole`, the list of
-- rows still to convert, has been worked through at the writer's open.
ALTER TABLE receipts RENAME COLUMN envelope TO envelope_text;
ALTER TABLE receipts ADD COLUMN sig BLOB;
CREATE INDEX receipts_whole ON receipts (leaf_index) WHERE sig IS NULL;
"#,
];

/// The oldest schema a read-only open still reads (through
/// `stored_envelope::read_schema_2`): a writer migrates, a reader may not.
pub(super) const OLDEST_READABLE: u32 = 2;
