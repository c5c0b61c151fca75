//! How the store keeps an envelope, and the one function that gives it
//! back.
//!
//! The signer writes `{"payload":…,"signature":{"alg":…,"kid":…,"sig":S}}`
//! (JCS: `sig` is the last member), S being 4,412 base64url characters of
//! a 3,309-byte ML-DSA-65 signature: 60% of a stored receipt. Schema 3 keeps
//! the envelope's text with S cut out (`…,"sig":""}}`) in
//! `receipts.envelope_text` and the signature's bytes in `receipts.sig`.
//! The text stays valid JSON with the whole payload, so SQL over payload
//! members (`json_extract(r.envelope_text, '$.payload.…')`) needs no
//! reassembly. A row whose `sig` is NULL holds the whole envelope in
//! `envelope_text`: rows written before schema 3 and not yet converted, and
//! any envelope that is not in the signer's form.
//!
//! [`join`] is the only reassembly; SQL reaches it as
//! `receipt_envelope(r.envelope_text, r.sig)`, registered on every
//! connection by `sqlite::connect`. The receipt hash is SHA-256 of the
//! envelope's bytes, so [`split`] only splits what [`join`] gives back byte
//! for byte (canonical base64url, checked by re-encoding).
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use rusqlite::{functions::FunctionFlags, types::ValueRef, Connection, OptionalExtension};

/// The SQL name of [`join`].
pub const SQL_FUNCTION: &str = "receipt_envelope";

/// What precedes the signature's value in the signer's form; the stored
/// text ends with it followed by [`TAIL`].
const SIG_MEMBER: &str = r#","sig":""#;
/// What follows the signature's value: the end of `sig`, of `signature`
/// and of the envelope.
const TAIL: &str = r#""}}"#;

/// The signer's envelope as the store keeps it: the text with the
/// signature's value emptied, and the signature's bytes. `None` when the
/// envelope does not end with a non-empty canonical base64url `sig`
/// (it is then stored whole, with `sig` NULL).
pub fn split(envelope: &str) -> Option<(String, Vec<u8>)> {
    let body = envelope.strip_suffix(TAIL)?;
    let at = body.rfind(SIG_MEMBER)? + SIG_MEMBER.len();
    let encoded = &body[at..];
    if encoded.is_empty() {
        return None;
    }
    let sig = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    // The decoder accepts only canonical input today; re-encoding makes
    // "the same bytes come back" a checked fact, not a property of a
    // dependency's version.
    if URL_SAFE_NO_PAD.encode(&sig) != encoded {
        return None;
    }
    let mut text = String::with_capacity(at + TAIL.len());
    text.push_str(&body[..at]);
    text.push_str(TAIL);
    Some((text, sig))
}

/// A stored `envelope_text` with a `sig` that does not fit it.
#[derive(Debug, thiserror::Error)]
#[error("stored envelope text does not end with an empty \"sig\" member, yet its signature is stored apart")]
pub struct JoinError;

/// The envelope's exact bytes from the stored text and signature: the
/// text itself when `sig` is NULL, else the text with the signature's
/// base64url put back into its emptied `sig`.
pub fn join(text: &str, sig: Option<&[u8]>) -> Result<String, JoinError> {
    let Some(sig) = sig else {
        return Ok(text.to_owned());
    };
    let body = text
        .strip_suffix(TAIL)
        .filter(|b| b.ends_with(SIG_MEMBER))
        .ok_or(JoinError)?;
    let mut out = String::with_capacity(body.len() + sig.len().div_ceil(3) * 4 + TAIL.len());
    out.push_str(body);
    URL_SAFE_NO_PAD.encode_string(sig, &mut out);
    out.push_str(TAIL);
    Ok(out)
}

/// Registers `receipt_envelope(envelope_text, sig)` on `conn`.
pub(crate) fn register(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        SQL_FUNCTION,
        2,
        // Innocuous: no side effects, so an untrusted schema may not make
        // it do harm (trusted_schema is off on every connection).
        FunctionFlags::SQLITE_UTF8
            | FunctionFlags::SQLITE_DETERMINISTIC
            | FunctionFlags::SQLITE_INNOCUOUS,
        |ctx| {
            let text = ctx.get_raw(0).as_str()?;
            let sig = match ctx.get_raw(1) {
                ValueRef::Null => None,
                ValueRef::Blob(b) => Some(b),
                other => {
                    return Err(rusqlite::Error::UserFunctionError(
                        format!("receipts.sig is {}, not a blob", other.data_type()).into(),
                    ))
                }
            };
            join(text, sig).map_err(|e| rusqlite::Error::UserFunctionError(e.into()))
        },
    )
}

/// Schema 2 read by a connection that may not migrate it (read-only
/// opens: observerctl, the verifier): a temporary view named `receipts`
/// hides the file's table (unqualified names resolve to `temp` first) and
/// shows its rows in schema 3's columns, every envelope whole.
pub(crate) fn read_schema_2(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TEMP VIEW receipts AS
         SELECT leaf_index, receipt_hash, issuer_id, seq, agent_id, action_type, issued_ns,
                risk_class, envelope AS envelope_text, NULL AS sig
         FROM main.receipts",
    )
}

/// Rows converted per transaction by [`convert_whole_rows`]: a short
/// write lock and a small WAL, whatever the store's size.
const CONVERT_BATCH: i64 = 512;

/// After migration 3: moves the signatures of the rows written whole
/// (schema 2) into `sig`, a batch per transaction. The partial index
/// `receipts_whole` lists the rows still to look at; it is dropped once a
/// pass has seen them all, so later opens skip this. Every row reads the
/// same in either form, so stopping anywhere (crash, full disk) loses
/// nothing and the next open resumes. Rows that are not in the signer's
/// form stay whole. Returns the number of rows converted.
pub(crate) fn convert_whole_rows(conn: &mut Connection) -> rusqlite::Result<u64> {
    let pending: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND name = 'receipts_whole'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if pending.is_none() {
        return Ok(0);
    }
    let mut converted = 0;
    let mut after = -1i64;
    loop {
        let tx = conn.transaction()?;
        let rows: Vec<(i64, String)> = tx
            .prepare(
                "SELECT leaf_index, envelope_text FROM receipts INDEXED BY receipts_whole
                 WHERE sig IS NULL AND leaf_index > ?1 ORDER BY leaf_index LIMIT ?2",
            )?
            .query_map([after, CONVERT_BATCH], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let Some(&(last, _)) = rows.last() else {
            tx.execute_batch("DROP INDEX receipts_whole")?;
            tx.commit()?;
            return Ok(converted);
        };
        {
            let mut update = tx.prepare(
                "UPDATE receipts SET envelope_text = ?2, sig = ?3 WHERE leaf_index = ?1",
            )?;
            for (leaf, envelope) in &rows {
                if let Some((text, sig)) = split(envelope) {
                    update.execute(rusqlite::params![leaf, text, sig])?;
                    converted += 1;
                }
            }
        }
        tx.commit()?;
        after = last;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(sig: &str) -> String {
        format!(
            r#"{{"payload":{{"seq":1,"text":"\"sig\":\"x\"}}"}},"signature":{{"alg":"ML-DSA-65","kid":"k","sig":"{sig}"}}}}"#
        )
    }

    #[test]
    fn a_signers_envelope_splits_and_joins_to_the_same_bytes() {
        let sig: Vec<u8> = (0..3309u32).map(|i| (i * 7 + 3) as u8).collect();
        let whole = envelope(&URL_SAFE_NO_PAD.encode(&sig));
        let (text, stored) = split(&whole).unwrap();
        assert_eq!(stored, sig);
        assert!(text.ends_with(r#""kid":"k","sig":""}}"#), "{text}");
        assert_eq!(text.len(), whole.len() - 4412);
        // Still JSON with the whole payload, for SQL over payload members.
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["payload"]["seq"], 1);
        assert_eq!(join(&text, Some(&stored)).unwrap(), whole);
        assert_eq!(join(&whole, None).unwrap(), whole);
    }

    #[test]
    fn what_would_not_come_back_byte_for_byte_is_not_split() {
        // Empty, padded, non-canonical trailing bits, outside the
        // alphabet, standard base64, not the last member, trailing space.
        for bad in [
            envelope(""),
            envelope("QUJD="),
            envelope("QUF"),
            envelope("QU*D"),
            envelope("ab+/"),
            r#"{"payload":{},"signature":{"sig":"QUJD","alg":"x"}}"#.to_owned(),
            format!("{} ", envelope("QUJD")),
        ] {
            assert!(split(&bad).is_none(), "{bad}");
        }
        assert_eq!(split(&envelope("QUJD")).unwrap().1, b"ABC");
    }

    #[test]
    fn a_signature_apart_from_a_text_that_has_no_room_for_it_is_an_error() {
        let whole = envelope("QUJD");
        assert!(join(&whole, Some(b"ABC")).is_err());
        assert!(join(r#"{"sig":""}"#, Some(b"ABC")).is_err());
    }

    #[test]
    fn the_sql_function_is_the_same_join() {
        let conn = Connection::open_in_memory().unwrap();
        register(&conn).unwrap();
        let whole = envelope("QUJD");
        let (text, sig) = split(&whole).unwrap();
        let joined: String = conn
            .query_row(
                "SELECT receipt_envelope(?1, ?2)",
                rusqlite::params![text, sig],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(joined, whole);
        let null: String = conn
            .query_row("SELECT receipt_envelope(?1, NULL)", [&whole], |r| r.get(0))
            .unwrap();
        assert_eq!(null, whole);
        let err = conn
            .query_row("SELECT receipt_envelope(?1, 'text')", [&text], |r| {
                r.get::<_, String>(0)
            })
            .unwrap_err();
        assert!(err.to_string().contains("not a blob"), "{err}");
    }
}
