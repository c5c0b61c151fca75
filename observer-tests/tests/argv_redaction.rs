//! Secrets on command lines end to end: a registered agent (a copy of sh)
//! runs with credentials of several kinds in its argv under the real
//! daemon, and not one of them reaches the `--events-jsonl` output or the
//! bytes of the receipt store, while the arguments around them do.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::{path::Path, process::Command};

use observer_testkit::*;
use serde_json::Value;

/// A credential of the given shape that no other test or process uses,
/// built at run time so no token-looking literal sits in the source.
fn secret(prefix: &str, len: usize) -> String {
    let seed = unique("s").replace(['-', '_'], "");
    let alphabet: Vec<char> = format!("aB3dE5gH7jK9mN1pQ2sT4vW6yZ8{seed}")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let body: String = (0..len)
        .map(|i| alphabet[(i * 7 + seed.len()) % alphabet.len()])
        .collect();
    format!("{prefix}{body}")
}

/// The agent's argv after `sh -c 'exit 0'`: positional parameters the
/// shell ignores, recorded with the exec all the same.
fn run_agent(agent: &Path, args: &[&str]) {
    let status = Command::new(agent)
        .args(["-c", "exit 0"])
        .args(args)
        .status()
        .expect("run agent");
    assert!(status.success());
}

/// Every byte the store left on disk: the database and its journal files.
fn store_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("observer.db") {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn argv_secrets_reach_neither_events_nor_store() {
    let dir = tempfile::tempdir().unwrap();
    let agent = copy_executable("/bin/sh", dir.path(), &unique("agent"));
    let d = Daemon::start_in(
        StateDir::Shared(dir.path().to_owned()),
        &agent_config("test-agent", &agent, ""),
    );

    let sshpass_pw = secret("Pw1", 16);
    let mysql_pw = secret("My2", 16);
    let curl_pw = secret("Cu3", 16);
    let glpat = secret("glpat-", 20);
    let value_pw = secret("Mv4", 16);
    let groq = secret("gsk_", 52);
    let aws_secret = secret("Aw5", 40);
    let dbpass = secret("Db6", 16);
    let ghp = secret("ghp_", 36);
    let keep = unique("keep");
    let mysql_arg = format!("-p{mysql_pw}");
    let curl_arg = format!("bob:{curl_pw}");
    let url = format!("https://{glpat}@gitlab.example/{keep}.git");
    let assignment = format!("MY_SECRET_VALUE={value_pw}");
    // Ordinary words, then a token that the end of the captured argument
    // area (ARGS_LEN bytes: the agent's path, "-c", "exit 0", this
    // argument, each with its NUL) cuts to its first nine characters.
    let before = agent.as_os_str().len() + 1 + "-c\0exit 0\0".len();
    let filler = format!("{keep} {}", "word ".repeat(500));
    let filler = &filler[..observer_common::ARGS_LEN - before - 1 - 9];
    let cut = format!("{filler} {ghp}");

    let runs: Vec<Vec<&str>> = vec![
        vec!["sshpass", "-p", &sshpass_pw, "ssh", &keep],
        vec!["mysql", "-uroot", &mysql_arg, &keep],
        vec!["curl", "-u", &curl_arg, "https://keep.example/"],
        vec![&url, &assignment, &groq],
        vec![
            "aws",
            "configure",
            "set",
            "aws_secret_access_key",
            &aws_secret,
        ],
        vec!["app", "--dbpass", &dbpass, &keep],
        vec![&cut],
    ];
    for args in &runs {
        run_agent(&agent, args);
    }
    let agent_path = agent.display().to_string();
    let execs_seen = |records: &[Value]| {
        records
            .iter()
            .filter(|r| is_event(r, "exec") && r["exec"]["filename"] == agent_path.as_str())
            .count()
    };
    let start = std::time::Instant::now();
    while execs_seen(&d.records()) < runs.len() {
        assert!(start.elapsed() < WAIT, "not every agent exec was recorded");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let events_path = d.events.clone();
    let records = d.stop();

    let argvs: Vec<Vec<String>> = records
        .iter()
        .filter(|r| is_event(r, "exec") && r["exec"]["filename"] == agent_path.as_str())
        .map(|r| serde_json::from_value(r["exec"]["argv"].clone()).unwrap())
        .collect();
    let tail = |argv: &Vec<String>| argv[3..].to_vec();
    let stored: Vec<Vec<String>> = argvs.iter().map(tail).collect();
    let r = "[REDACTED]";
    let expected: Vec<Vec<String>> = [
        vec!["sshpass", "-p", r, "ssh", &keep],
        vec!["mysql", "-uroot", "-p[REDACTED]", &keep],
        vec!["curl", "-u", "bob:[REDACTED]", "https://keep.example/"],
        vec![
            &format!("https://[REDACTED]@gitlab.example/{keep}.git"),
            "MY_SECRET_VALUE=[REDACTED]",
            r,
        ],
        vec!["aws", "configure", "set", "aws_secret_access_key", r],
        vec!["app", "--dbpass", r, &keep],
        vec![&format!("{filler} [REDACTED]")],
    ]
    .iter()
    .map(|v| v.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(stored, expected);
    let cut_exec = records
        .iter()
        .find(|r| {
            is_event(r, "exec")
                && r["exec"]["argv"][3]
                    .as_str()
                    .is_some_and(|a| a.starts_with(filler))
        })
        .unwrap();
    assert_eq!(cut_exec["exec"]["argv_truncated"], true);

    let events = std::fs::read(&events_path).unwrap();
    let store = store_bytes(dir.path());
    assert!(contains(&store, &keep), "the store holds the agent's argv");
    let secrets = [
        &sshpass_pw,
        &mysql_pw,
        &curl_pw,
        &glpat,
        &value_pw,
        &groq,
        &aws_secret,
        &dbpass,
    ];
    for s in secrets {
        assert!(!contains(&events, s), "{s} in the events output");
        assert!(!contains(&store, s), "{s} in the store");
    }
    // Not even the part of the cut token the kernel captured (its first
    // nine characters). The check is on those nine, not on "ghp_" alone:
    // the store (6.6 MB here) holds about 4 MB of base64url signatures,
    // where four given characters turn up by chance in one run in five.
    let captured_prefix = &ghp[..9];
    assert!(
        !contains(&events, captured_prefix),
        "{captured_prefix}... in the events output"
    );
    assert!(
        !contains(&store, captured_prefix),
        "{captured_prefix}... in the store"
    );
}
