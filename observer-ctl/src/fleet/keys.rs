//! The pinned master keys of a fleet: one file per host in a directory
//! the operator keeps (`fleet keys add HOST JWK`), each holding the host's
//! genesis master public key. `fleet verify` trusts a host's receipts
//! through this key alone, never through the keys the fleet store holds
//! (whoever can write the store could write those too). Trust on first
//! use, when asked for, pins the store's key here once and says so.
use std::{
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::CtlError;
use observer_receipts::{json, keys as receipt_keys};

/// How a host's key came to be pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `fleet keys add`: the operator took it from the host.
    Added,
    /// `fleet verify --trust-on-first-use`: taken from the fleet store.
    TrustOnFirstUse,
}

/// One file of the directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pinned {
    /// The log's origin, `<deployer_id>/host/<hostname>`.
    pub host: String,
    /// The genesis master public key (AKP JWK).
    pub jwk: Value,
    /// Its RFC 7638 thumbprint (the kid receipts name).
    pub kid: String,
    pub source: Source,
    /// When it was pinned (RFC 3339).
    pub pinned_at: String,
}

impl Pinned {
    /// The raw ML-DSA-65 public key.
    pub fn public_key(&self) -> Result<Vec<u8>, CtlError> {
        receipt_keys::public_key_from_jwk(&self.jwk)
            .map_err(|e| CtlError::Usage(format!("pinned key of {}: {e}", self.host)))
    }
}

/// The directory of pinned keys.
pub struct KeyDir {
    dir: PathBuf,
}

impl KeyDir {
    pub fn new(dir: &Path) -> KeyDir {
        KeyDir {
            dir: dir.to_owned(),
        }
    }

    /// The file of `host`: its name readable, with a digest so that two
    /// hosts whose names differ only in punctuation never share one.
    fn file_of(&self, host: &str) -> PathBuf {
        let readable: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .take(100)
            .collect();
        let digest = hex::encode(&Sha256::digest(host.as_bytes())[..6]);
        self.dir.join(format!("{readable}-{digest}.json"))
    }

    /// The pinned key of `host`, if any.
    pub fn get(&self, host: &str) -> Result<Option<Pinned>, CtlError> {
        let path = self.file_of(host);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(CtlError::Usage(format!(
                    "pinned key {}: {e}",
                    path.display()
                )))
            }
        };
        let pinned: Pinned = serde_json::from_slice(&bytes)
            .map_err(|e| CtlError::Usage(format!("pinned key {}: {e}", path.display())))?;
        if pinned.host != host {
            return Err(CtlError::Usage(format!(
                "pinned key {}: names host {:?}, not {host:?}",
                path.display(),
                pinned.host
            )));
        }
        Ok(Some(pinned))
    }

    /// Every pinned key, sorted by host.
    pub fn list(&self) -> Result<Vec<Pinned>, CtlError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(CtlError::Usage(format!(
                    "key directory {}: {e}",
                    self.dir.display()
                )))
            }
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| CtlError::Usage(format!("key directory {}: {e}", self.dir.display())))?
                .path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let bytes = std::fs::read(&path)
                .map_err(|e| CtlError::Usage(format!("pinned key {}: {e}", path.display())))?;
            let pinned: Pinned = serde_json::from_slice(&bytes)
                .map_err(|e| CtlError::Usage(format!("pinned key {}: {e}", path.display())))?;
            out.push(pinned);
        }
        out.sort_by(|a, b| a.host.cmp(&b.host));
        Ok(out)
    }

    /// Pins `jwk` for `host`. A different key already pinned is kept
    /// unless `replace`: a host's genesis key never changes, so a new one
    /// is either a reinstalled host or an attack, and the operator says
    /// which.
    pub fn add(
        &self,
        host: &str,
        jwk: &Value,
        source: Source,
        replace: bool,
    ) -> Result<Pinned, CtlError> {
        validate_host(host)?;
        let public_key = receipt_keys::public_key_from_jwk(jwk)
            .map_err(|e| CtlError::Usage(format!("the key for {host}: {e}")))?;
        let kid = receipt_keys::thumbprint(&public_key);
        if let Some(old) = self.get(host)? {
            if old.kid == kid {
                return Ok(old);
            }
            if !replace {
                return Err(CtlError::Usage(format!(
                    "{host} already has master key {} pinned ({}); a host's genesis master \
                     never changes: pass --replace if it was reinstalled",
                    old.kid,
                    self.file_of(host).display()
                )));
            }
        }
        let pinned = Pinned {
            host: host.to_string(),
            jwk: jwk.clone(),
            kid,
            source,
            pinned_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        };
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| CtlError::Io(format!("key directory {}: {e}", self.dir.display())))?;
        let path = self.file_of(host);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(&pinned)
            .map_err(|e| CtlError::Io(format!("encoding {}: {e}", path.display())))?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| CtlError::Io(format!("pinned key {}: {e}", path.display())))?;
        Ok(pinned)
    }
}

/// A host is a log origin: `<deployer_id>/host/<hostname>`.
pub fn validate_host(host: &str) -> Result<(), CtlError> {
    match host.rsplit_once("/host/") {
        Some((deployer, name))
            if !deployer.is_empty() && !name.is_empty() && !name.contains('/') =>
        {
            Ok(())
        }
        _ => Err(CtlError::Usage(format!(
            "host {host:?}: expected a log origin, <deployer_id>/host/<hostname> (the first \
             line of the host's checkpoints; `observerctl fleet hosts` lists them)"
        ))),
    }
}

/// Reads a JWK file (`observerctl keys export --master` on the host).
pub fn read_jwk(path: &Path) -> Result<Value, CtlError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CtlError::Usage(format!("public key {}: {e}", path.display())))?;
    json::parse_strict(&bytes)
        .map_err(|e| CtlError::Usage(format!("public key {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use observer_receipts::keys::{ChainKey, MasterSeed};

    fn jwk(seed: u8) -> Value {
        ChainKey::master_key(&MasterSeed::from_bytes([seed; 32])).jwk()
    }

    #[test]
    fn a_pinned_key_is_kept_until_replaced_on_purpose() {
        let dir = tempfile::tempdir().unwrap();
        let keys = KeyDir::new(&dir.path().join("fleet-keys"));
        let host = "did:web:example.com/host/web-1";
        assert!(keys.get(host).unwrap().is_none());
        let a = keys.add(host, &jwk(1), Source::Added, false).unwrap();
        assert_eq!(keys.get(host).unwrap().unwrap().kid, a.kid);
        // The same key again is no change.
        keys.add(host, &jwk(1), Source::TrustOnFirstUse, false)
            .unwrap();
        assert_eq!(keys.get(host).unwrap().unwrap().source, Source::Added);
        let e = keys.add(host, &jwk(2), Source::Added, false).unwrap_err();
        assert!(e.to_string().contains("--replace"), "{e}");
        let b = keys.add(host, &jwk(2), Source::Added, true).unwrap();
        assert_ne!(a.kid, b.kid);
        assert_eq!(keys.get(host).unwrap().unwrap().kid, b.kid);
        // Hosts that differ only in punctuation have their own files.
        let other = "did:web:example.com/host/web_1";
        keys.add(other, &jwk(3), Source::Added, false).unwrap();
        assert_eq!(keys.get(host).unwrap().unwrap().kid, b.kid);
        assert_eq!(keys.list().unwrap().len(), 2);
        assert!(keys.add("web-1", &jwk(1), Source::Added, false).is_err());
    }
}
