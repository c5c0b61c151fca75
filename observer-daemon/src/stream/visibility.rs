//! Which watched processes' TLS traffic observer can read, and why not
//! where it cannot: kept by the attacher, shown by `observerctl status`.
//! A TLS stack linked into an executable without OpenSSL's symbols (Go's
//! crypto/tls, rustls, Bun's BoringSSL) has nothing to hook; that is said,
//! never passed over.
use std::{collections::BTreeMap, sync::Mutex};

use serde_json::{json, Value};

/// Why a watched process's TLS is not visible.
pub const NO_TLS_SYMBOLS: &str = "no TLS library mapped and the executable defines no SSL_write/SSL_read: TLS linked in statically (Go crypto/tls, rustls, Bun's BoringSSL) or no TLS at all";

/// One watched process as the attacher last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessTls {
    pub agent: Option<String>,
    pub exe: Option<String>,
    /// Hooked files the process has mapped: its TLS is read through them.
    pub visible_through: Vec<String>,
    /// Why not, when examining the executable said more than
    /// [`NO_TLS_SYMBOLS`] (a Bun build whose BoringSSL was not found).
    pub not_visible: Option<String>,
}

/// One agent's executables: visible (through which files) and not (why).
type AgentTls = (BTreeMap<String, Vec<String>>, BTreeMap<String, String>);

#[derive(Default)]
pub struct PlaintextVisibility(Mutex<BTreeMap<u32, ProcessTls>>);

impl PlaintextVisibility {
    pub fn set(&self, pid: u32, p: ProcessTls) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(pid, p);
        }
    }

    pub fn remove(&self, pid: u32) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&pid);
        }
    }

    /// Per agent (or `unregistered` for watched executables outside any
    /// agent): executables whose TLS is visible, with the files it is read
    /// through, and those whose TLS is not, with the reason.
    pub fn to_json(&self) -> Value {
        let Ok(m) = self.0.lock() else {
            return Value::Null;
        };
        let mut agents: BTreeMap<String, AgentTls> = BTreeMap::new();
        for p in m.values() {
            let agent = p.agent.clone().unwrap_or_else(|| "unregistered".into());
            let exe = p.exe.clone().unwrap_or_else(|| "?".into());
            let (visible, hidden) = agents.entry(agent).or_default();
            if p.visible_through.is_empty() {
                if !visible.contains_key(&exe) {
                    let why = p.not_visible.as_deref().unwrap_or(NO_TLS_SYMBOLS);
                    hidden.insert(exe, why.to_string());
                }
            } else {
                hidden.remove(&exe);
                let through = visible.entry(exe).or_default();
                for f in &p.visible_through {
                    if !through.contains(f) {
                        through.push(f.clone());
                    }
                }
            }
        }
        let agents: serde_json::Map<String, Value> = agents
            .into_iter()
            .map(|(agent, (visible, hidden))| {
                let visible: Vec<Value> = visible
                    .into_iter()
                    .map(|(exe, through)| json!({"executable": exe, "through": through}))
                    .collect();
                let hidden: Vec<Value> = hidden
                    .into_iter()
                    .map(|(exe, why)| json!({"executable": exe, "reason": why}))
                    .collect();
                (agent, json!({"visible": visible, "not_visible": hidden}))
            })
            .collect();
        json!({"processes": m.len(), "agents": agents})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_per_agent_and_executable() {
        let v = PlaintextVisibility::default();
        let p = |agent: &str, exe: &str, through: &[&str]| ProcessTls {
            agent: Some(agent.into()),
            exe: Some(exe.into()),
            visible_through: through.iter().map(|s| s.to_string()).collect(),
            not_visible: None,
        };
        v.set(
            1,
            p(
                "claude",
                "/usr/bin/python3",
                &["/usr/lib/x86_64-linux-gnu/libssl.so.3"],
            ),
        );
        v.set(2, p("claude", "/usr/bin/python3", &[]));
        v.set(3, p("claude", "/opt/claude/claude", &[]));
        v.set(4, p("gemini", "/usr/bin/node", &["/usr/bin/node"]));
        v.set(
            5,
            ProcessTls {
                agent: None,
                exe: Some("/usr/bin/curl".into()),
                visible_through: vec![],
                not_visible: None,
            },
        );
        let j = v.to_json();
        assert_eq!(j["processes"], 5);
        assert_eq!(
            j["agents"]["claude"],
            json!({
                "visible": [{"executable": "/usr/bin/python3", "through": ["/usr/lib/x86_64-linux-gnu/libssl.so.3"]}],
                "not_visible": [{"executable": "/opt/claude/claude", "reason": NO_TLS_SYMBOLS}],
            })
        );
        assert_eq!(
            j["agents"]["gemini"]["visible"][0]["through"],
            json!(["/usr/bin/node"])
        );
        assert_eq!(
            j["agents"]["unregistered"]["not_visible"][0]["executable"],
            "/usr/bin/curl"
        );
        v.remove(5);
        assert!(v.to_json()["agents"]["unregistered"].is_null());
    }

    /// An executable whose examination said why (a Bun build whose
    /// BoringSSL signature is not known) shows that reason, not the
    /// generic one.
    #[test]
    fn a_specific_reason_is_shown() {
        let v = PlaintextVisibility::default();
        let why = "Bun executable (Bun v9.9.9, BoringSSL linked in, no symbols): BoringSSL signature for this version not known";
        v.set(
            1,
            ProcessTls {
                agent: Some("claude".into()),
                exe: Some("/opt/claude/claude".into()),
                visible_through: vec![],
                not_visible: Some(why.into()),
            },
        );
        assert_eq!(
            v.to_json()["agents"]["claude"]["not_visible"][0]["reason"],
            why
        );
    }
}
