//! The checks of the whole log once every receipt is read: checkpoints
//! (stored and external) against the recomputed log, the keys table
//! against the announcements, erasures against their receipts.
use super::State;
use crate::{
    json, keys,
    store::{CheckpointRow, KeyRow},
    verify::{open_with, Outcome, Report, VerifyError, VerifyOptions},
};

impl State {
    pub(in crate::verify) fn finish_log(
        &mut self,
        stored: &[CheckpointRow],
        opts: &VerifyOptions,
    ) -> Result<(), VerifyError> {
        self.report.log_size = self.frontier.size();
        self.report.chains = self.chains.len();
        let origin = self
            .observer_issuer
            .as_deref()
            .and_then(|i| i.strip_suffix("/agent/observer"))
            .map(str::to_string);
        let mut notes: Vec<(String, String)> = stored
            .iter()
            .map(|c| {
                (
                    format!("stored checkpoint at size {}", c.size),
                    c.note.clone(),
                )
            })
            .collect();
        notes.extend(
            opts.external_checkpoints
                .iter()
                .enumerate()
                .map(|(i, n)| (format!("external checkpoint #{}", i + 1), n.clone())),
        );
        let Some(origin) = origin else {
            if !notes.is_empty() {
                self.log_failure(
                    "checkpoint",
                    "checkpoints exist but the log has no observer chain to name its origin".into(),
                );
            }
            return Ok(());
        };
        let mut newest = 0;
        // The first pass kept the recomputed root at every size a
        // checkpoint names.
        let mut opened = Vec::new();
        for (what, note) in notes {
            // Signed by the master current after the tree's last leaf.
            let size = note
                .lines()
                .nth(1)
                .and_then(|l| l.parse::<u64>().ok())
                .unwrap_or(0);
            let master = self.master_at(size).clone();
            match open_with(&note, &origin, &master.public_key) {
                Ok(cp) => {
                    opened.push((what, cp));
                }
                Err(e) => {
                    let other = self.masters.iter().find(|m| {
                        m.kid != master.kid && open_with(&note, &origin, &m.public_key).is_ok()
                    });
                    let reason = match other {
                        Some(m) => format!(
                            "{what}: signed by master {} ({}), but the master current after leaf {} is {}",
                            m.kid,
                            if self.retired.contains_key(&m.kid) { "retired" } else { "not yet current" },
                            size.saturating_sub(1),
                            master.kid
                        ),
                        None => format!("{what}: {e}"),
                    };
                    self.log_failure("checkpoint_signature", reason);
                }
            }
        }
        for (what, cp) in opened {
            self.report.count("checkpoint_signature", Outcome::Pass);
            if cp.size < self.report.pruned_below {
                self.report.checkpoints_before_cut += 1;
                continue;
            }
            if cp.size > self.frontier.size() {
                self.log_failure(
                    "log_root",
                    format!(
                        "{what} covers {} receipts but the log has only {}: the log was truncated",
                        cp.size,
                        self.frontier.size()
                    ),
                );
                continue;
            }
            match self.roots.get(&cp.size) {
                Some(root) if *root == cp.root => {
                    self.report.count("log_root", Outcome::Pass);
                    self.report.checkpoints_verified += 1;
                    newest = newest.max(cp.size);
                }
                _ => self.log_failure(
                    "log_root",
                    format!(
                        "{what}: the Merkle root of the first {} receipts is not the checkpoint's root",
                        cp.size
                    ),
                ),
            }
        }
        self.report.uncheckpointed = self.frontier.size() - newest.min(self.frontier.size());
        Ok(())
    }

    /// The keys table must hold exactly the announced keys.
    pub(in crate::verify) fn check_keys_table(&mut self, rows: Vec<KeyRow>) {
        for row in rows {
            let announced = self.keys.get(&row.kid);
            let stored_pk = json::parse_strict(row.jwk.as_bytes())
                .ok()
                .and_then(|jwk| keys::public_key_from_jwk(&jwk).ok());
            let is_master = row.kid == self.master_kid;
            let ok = match (announced, stored_pk) {
                (Some(a), Some(pk)) => *a.public_key == *pk && a.issuer_id == row.issuer_id,
                (None, Some(pk)) => is_master && *pk == *self.master_public_key,
                _ => false,
            };
            if ok {
                self.report.count("keys_table", Outcome::Pass);
            } else {
                self.log_failure(
                    "keys_table",
                    format!(
                        "stored key {} for {} is not the key its observer.key receipt announced",
                        row.kid, row.issuer_id
                    ),
                );
            }
        }
    }

    /// Every erased context must name a real erasure receipt for it.
    pub(in crate::verify) fn check_erasures(&mut self) {
        for (erased, by) in std::mem::take(&mut self.erasure_claims) {
            if self.erasures.get(&erased) != Some(&by) {
                self.log_failure(
                    "erasure",
                    format!("receipt {erased} has an erased context, but {by} is not an observer.policy receipt erasing it"),
                );
            }
        }
    }

    pub(in crate::verify) fn into_report(mut self) -> Report {
        // Signature results arrive per chunk: restore log order.
        self.receipt_failures.sort_by_key(|f| f.leaf_index);
        self.report.failures = self.receipt_failures;
        self.report.failures.extend(self.log_failures);
        self.report
    }
}
