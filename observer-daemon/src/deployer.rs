//! The deployer id signed into every issuer id
//! (`<deployer_id>/host/<hostname>/agent/<agent_id>`). When observer.toml
//! does not set one, a stable id of this host is derived from
//! /etc/machine-id, so a fresh install never signs a shared placeholder; the
//! old placeholder, if configured, is warned about at every start, in
//! `observerctl status` and in `observerctl doctor`.
use std::path::Path;

use hmac::Mac as _;
use serde_json::{json, Value};

/// The example value earlier configurations shipped with.
pub const PLACEHOLDER: &str = "did:web:example.invalid";

/// Where the machine id is read from (systemd's machine-id(5)).
pub const MACHINE_ID: &str = "/etc/machine-id";

/// Application key for the machine-id derivation: machine-id(5) asks that
/// the raw id never be exposed, so it is hashed with a fixed key, as
/// `sd_id128_get_machine_app_specific()` does.
const APP_KEY: &[u8] = b"observer deployer id v1";

/// How the deployer id in force was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Configured,
    MachineId,
    Placeholder,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Configured => "configured",
            Source::MachineId => "machine-id",
            Source::Placeholder => "placeholder",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployerId {
    pub id: String,
    pub source: Source,
}

impl DeployerId {
    /// The configured id, else the one derived from `machine_id_path`.
    pub fn resolve(configured: Option<&str>, machine_id_path: &Path) -> Result<DeployerId, String> {
        if let Some(id) = configured {
            let source = if id == PLACEHOLDER {
                Source::Placeholder
            } else {
                Source::Configured
            };
            return Ok(DeployerId {
                id: id.to_owned(),
                source,
            });
        }
        let text = std::fs::read_to_string(machine_id_path).map_err(|e| {
            format!(
                "receipts.deployer_id is not set and {} cannot be read ({e}): set receipts.deployer_id",
                machine_id_path.display()
            )
        })?;
        Ok(DeployerId {
            id: from_machine_id(text.trim()).map_err(|e| {
                format!(
                    "receipts.deployer_id is not set and {}: {e}: set receipts.deployer_id",
                    machine_id_path.display()
                )
            })?,
            source: Source::MachineId,
        })
    }

    /// The warning to repeat at every start, in status and in doctor.
    pub fn warning(&self) -> Option<String> {
        match self.source {
            Source::Placeholder => Some(format!(
                "receipts.deployer_id is the placeholder {PLACEHOLDER}: every receipt's issuer id \
                 names no real deployer; set it to your LEI, EIN or DID"
            )),
            Source::MachineId | Source::Configured => None,
        }
    }

    /// `{"deployer_id", "source", "warning"}` for status.
    pub fn to_json(&self) -> Value {
        json!({
            "deployer_id": self.id,
            "source": self.source.as_str(),
            "warning": self.warning(),
        })
    }
}

/// `urn:uuid:<v4-shaped UUID>` from HMAC-SHA256(APP_KEY, machine id): stable
/// for the host, and the machine id cannot be recovered from it.
pub fn from_machine_id(machine_id: &str) -> Result<String, String> {
    let valid = machine_id.len() == 32 && machine_id.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(format!("holds {machine_id:?}, not 32 hexadecimal digits"));
    }
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(APP_KEY).expect("any key length");
    mac.update(machine_id.to_ascii_lowercase().as_bytes());
    let mut b: [u8; 16] = mac.finalize().into_bytes()[..16]
        .try_into()
        .expect("16 bytes");
    // RFC 9562 version 4 and variant bits, so it parses as a UUID.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_id_gives_a_stable_uuid_urn_that_hides_the_id() {
        let a = from_machine_id("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(
            a,
            from_machine_id("0123456789ABCDEF0123456789ABCDEF").unwrap()
        );
        assert!(a.starts_with("urn:uuid:"), "{a}");
        let uuid = &a["urn:uuid:".len()..];
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4", "version 4: {uuid}");
        assert!("89ab".contains(&uuid[19..20]), "variant: {uuid}");
        assert!(!a.contains("0123456789abcdef"));
        assert_ne!(
            a,
            from_machine_id("fedcba9876543210fedcba9876543210").unwrap()
        );
    }

    #[test]
    fn a_malformed_machine_id_is_an_error_naming_what_it_holds() {
        let e = from_machine_id("uninitialized").unwrap_err();
        assert!(e.contains("\"uninitialized\""), "{e}");
    }

    #[test]
    fn configured_ids_win_and_the_placeholder_is_warned_about() {
        let missing = Path::new("/nonexistent/machine-id");
        let c = DeployerId::resolve(Some("did:web:corp.example"), missing).unwrap();
        assert_eq!(c.source, Source::Configured);
        assert_eq!(c.warning(), None);
        let p = DeployerId::resolve(Some(PLACEHOLDER), missing).unwrap();
        assert_eq!(p.source, Source::Placeholder);
        assert!(p.warning().unwrap().contains(PLACEHOLDER));
        let e = DeployerId::resolve(None, missing).unwrap_err();
        assert!(e.contains("/nonexistent/machine-id"), "{e}");
    }

    #[test]
    fn unset_derives_from_the_machine_id_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("machine-id");
        std::fs::write(&path, "0123456789abcdef0123456789abcdef\n").unwrap();
        let d = DeployerId::resolve(None, &path).unwrap();
        assert_eq!(d.source, Source::MachineId);
        assert_eq!(
            d.id,
            from_machine_id("0123456789abcdef0123456789abcdef").unwrap()
        );
    }
}
