//! Forwarding to a Splunk HEC / Elastic `_bulk` HTTP receiver (token,
//! gzip) and to the rotating file sink: the store's stream arrives whole
//! and in order.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod forwarding_kit;

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    sync::{Arc, Mutex},
};

use forwarding_kit::*;
use observer_testkit::{
    scrape::{metrics, sample},
    *,
};
use serde_json::Value;

/// What the HTTP receiver saw.
#[derive(Default)]
struct HttpLog {
    /// (path, gunzipped body) of every accepted request.
    accepted: Vec<(String, Vec<u8>)>,
    refused: u64,
    gzip_seen: bool,
}

/// A real HTTP/1.1 server (keep-alive) taking Splunk HEC and Elastic
/// `_bulk`: checks the token, gunzips, answers like the real ones.
struct HttpReceiver {
    port: u16,
    token: Arc<Mutex<String>>,
    log: Arc<Mutex<HttpLog>>,
}

impl HttpReceiver {
    fn start(token: &str) -> HttpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let token = Arc::new(Mutex::new(token.to_string()));
        let log = Arc::new(Mutex::new(HttpLog::default()));
        let (t, l) = (token.clone(), log.clone());
        // The listener thread ends with the test process.
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (t, l) = (t.clone(), l.clone());
                std::thread::spawn(move || serve_http(conn, &t, &l));
            }
        });
        HttpReceiver { port, token, log }
    }
}

fn serve_http(conn: TcpStream, token: &Mutex<String>, log: &Mutex<HttpLog>) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut w = conn;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
        }
        let len: usize = headers["content-length"].parse().unwrap();
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        let want = token.lock().unwrap().clone();
        let scheme = if path.starts_with("/services/collector") {
            "Splunk"
        } else {
            "Bearer"
        };
        let authorized = headers.get("authorization") == Some(&format!("{scheme} {want}"));
        let (status, answer) = if !authorized {
            log.lock().unwrap().refused += 1;
            (
                "401 Unauthorized",
                r#"{"text":"Invalid token","code":4}"#.to_string(),
            )
        } else {
            let gz = headers.get("content-encoding").map(String::as_str) == Some("gzip");
            let mut plain = Vec::new();
            if gz {
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut plain)
                    .unwrap();
            } else {
                plain = body;
            }
            let mut l = log.lock().unwrap();
            l.gzip_seen |= gz;
            let answer = if path == "/_bulk" {
                let n = plain
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .count()
                    / 2;
                let items: Vec<Value> = (0..n)
                    .map(|_| serde_json::json!({"create": {"status": 201}}))
                    .collect();
                serde_json::json!({"took": 1, "errors": false, "items": items}).to_string()
            } else {
                r#"{"text":"Success","code":0}"#.to_string()
            };
            l.accepted.push((path, plain));
            ("200 OK", answer)
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// The records a receiver got for one sink, as `Rec`s (receipt format).
fn http_recs(log: &HttpLog, path: &str) -> Vec<Rec> {
    let mut out = Vec::new();
    for (p, body) in log.accepted.iter().filter(|(p, _)| p == path) {
        let text = String::from_utf8(body.clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let docs: Vec<&Value> = if p == "/_bulk" {
            for pair in lines.chunks(2) {
                let id = pair[0]["create"]["_id"].as_str().unwrap();
                let doc = &pair[1];
                let expect = doc["receipt_hash"].as_str().map_or_else(
                    || format!("checkpoint-{}", doc["checkpoint"]["size"]),
                    String::from,
                );
                assert_eq!(id, expect);
                assert_eq!(pair[0]["create"]["_index"], "observer");
            }
            lines.iter().skip(1).step_by(2).collect()
        } else {
            for ev in &lines {
                assert_eq!(ev["sourcetype"], "observer:receipt");
                assert!(ev["time"].as_f64().unwrap() > 1.7e9);
            }
            lines.iter().map(|l| &l["event"]).collect()
        };
        for d in docs {
            assert_eq!(d["capture_topology"], "passive_telemetry");
            out.push(match d["record"].as_str().unwrap() {
                "receipt" => Rec::Receipt {
                    index: d["log_index"].as_u64().unwrap(),
                    hash: d["receipt_hash"].as_str().unwrap().into(),
                    chain: d["receipt"]["payload"]["issuer_id"]
                        .as_str()
                        .unwrap()
                        .into(),
                    seq: d["receipt"]["payload"]["seq"].as_u64().unwrap(),
                    risk: d["receipt"]["payload"]["risk_class"]
                        .as_str()
                        .unwrap()
                        .into(),
                },
                _ => Rec::Checkpoint {
                    size: d["checkpoint"]["size"].as_u64().unwrap(),
                    root: d["checkpoint"]["root"].as_str().unwrap().into(),
                },
            });
        }
    }
    out
}

#[test]
fn http_splunk_hec_and_elastic_bulk_with_token_and_gzip() {
    let recv = HttpReceiver::start("the-right-token");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "a-stale-token\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mport = free_port();
    let sinks = format!(
        "[metrics]\nlisten = \"127.0.0.1:{mport}\"\n[forwarding]\nflush_timeout_ms = 15000\n\
         [[sinks]]\nname = \"hec\"\ntype = \"http\"\nbatch_max = 7\nretry_initial_ms = 100\nretry_max_ms = 400\n\
         [sinks.http]\nurl = \"http://127.0.0.1:{port}/services/collector/event\"\nencoding = \"splunk_hec\"\ntoken_file = \"{t}\"\nallow_token_over_http = true\n\
         [[sinks]]\nname = \"bulk\"\ntype = \"http\"\nretry_initial_ms = 100\nretry_max_ms = 400\n\
         [sinks.http]\nurl = \"http://127.0.0.1:{port}/_bulk\"\nencoding = \"elastic_bulk\"\ntoken_file = \"{t}\"\nallow_token_over_http = true\nindex = \"observer\"\n",
        port = recv.port,
        t = token.display()
    );
    let (exe, d) = agent_with_sinks(dir.path(), &sinks);
    agent_execs(&exe, 20);
    // The receiver refuses the stale token: retried, counted, and the
    // cursors do not move.
    wait_until("401s", WAIT, || recv.log.lock().unwrap().refused >= 6);
    // Six refusals in all may still be five of one sink and one of the
    // other: wait until each has been refused and retried twice.
    let refused_twice = |m: &str, s: &str| {
        sample(
            m,
            &format!(
                "observer_sink_errors_total{{sink=\"{s}\",type=\"http\",reason=\"unauthorized\"}}"
            ),
        ) >= 2
            && sample(
                m,
                &format!("observer_sink_retries_total{{sink=\"{s}\",type=\"http\"}}"),
            ) >= 2
    };
    wait_until("two 401s per sink", WAIT, || {
        let m = metrics(mport);
        refused_twice(&m, "hec") && refused_twice(&m, "bulk")
    });
    let m = metrics(mport);
    for s in ["hec", "bulk"] {
        assert!(
            sample(&m, &format!("observer_sink_errors_total{{sink=\"{s}\",type=\"http\",reason=\"unauthorized\"}}")) >= 2,
            "{m}"
        );
        assert!(
            sample(
                &m,
                &format!("observer_sink_retries_total{{sink=\"{s}\",type=\"http\"}}")
            ) >= 2
        );
        assert_eq!(
            sample(
                &m,
                &format!("observer_sink_delivered_total{{sink=\"{s}\",type=\"http\"}}")
            ),
            0
        );
        assert_eq!(
            sample(
                &m,
                &format!("observer_sink_cursor{{sink=\"{s}\",type=\"http\"}}")
            ),
            0
        );
        assert!(!dir.path().join(format!("sinks/{s}.cursor")).exists());
    }
    assert!(recv.log.lock().unwrap().accepted.is_empty());
    // The receiver now takes the token the daemon has (a rotated token).
    *recv.token.lock().unwrap() = "a-stale-token".into();
    agent_execs(&exe, 5);
    let db = d.store();
    d.stop();
    let (want, _) = expected(&db);
    wait_until("both sinks delivered", WAIT, || {
        let l = recv.log.lock().unwrap();
        http_recs(&l, "/services/collector/event").len() >= want.len()
            && http_recs(&l, "/_bulk").len() >= want.len()
    });
    let l = recv.log.lock().unwrap();
    assert!(l.gzip_seen);
    assert_eq!(http_recs(&l, "/services/collector/event"), want);
    assert_eq!(http_recs(&l, "/_bulk"), want);
    // HEC batches hold at most batch_max receipts (plus the checkpoints
    // they complete).
    assert!(l
        .accepted
        .iter()
        .filter(|(p, _)| p.starts_with("/services"))
        .all(|(_, b)| String::from_utf8_lossy(b)
            .lines()
            .filter(|l| l.contains(r#""record":"receipt""#))
            .count()
            <= 7));
}

#[test]
fn file_sink_rotates_and_keeps_max_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/receipts.jsonl");
    let sinks = format!(
        "[forwarding]\nflush_timeout_ms = 15000\n[[sinks]]\nname = \"file\"\ntype = \"file\"\nbatch_max = 50\n\
         [sinks.file]\npath = \"{}\"\nmax_bytes = 65536\nmax_files = 3\n",
        out.display()
    );
    // A cursor left by another store, far past this log's end: reset to
    // the start (counted), so this log is forwarded whole.
    std::fs::create_dir_all(dir.path().join("sinks")).unwrap();
    std::fs::write(
        dir.path().join("sinks/file.cursor"),
        "next_leaf=1000000\ncheckpoint_size=999999\n",
    )
    .unwrap();
    let (exe, d) = agent_with_sinks(dir.path(), &sinks);
    agent_execs(&exe, 150);
    let db = d.store();
    let stderr = d.stderr.clone();
    d.stop();
    assert!(std::fs::read_to_string(&stderr)
        .unwrap()
        .contains("cursor 1000000 is past the end of the log"),);
    let (want, bodies) = expected(&db);
    let size = stored_receipts(&db).len();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sinks/file.cursor")).unwrap(),
        format!("next_leaf={size}\ncheckpoint_size={size}\n")
    );
    let rotated = |n: u32| PathBuf::from(format!("{}.{n}", out.display()));
    assert!(rotated(3).exists(), "enough receipts for three rotations");
    assert!(!rotated(4).exists(), "max_files = 3");
    let mut kept = Vec::new();
    for p in [rotated(3), rotated(2), rotated(1), out.clone()] {
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.len() as u64 <= 65536,
            "{} is {} bytes",
            p.display(),
            text.len()
        );
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["capture_topology"], "passive_telemetry");
            let rec = if v["record"] == "receipt" {
                let hash = v["receipt_hash"].as_str().unwrap();
                assert_eq!(v["receipt"], bodies[hash]["receipt"]);
                assert_eq!(v["context"], bodies[hash]["context"]);
                Rec::Receipt {
                    index: v["log_index"].as_u64().unwrap(),
                    hash: hash.into(),
                    chain: v["receipt"]["payload"]["issuer_id"]
                        .as_str()
                        .unwrap()
                        .into(),
                    seq: v["receipt"]["payload"]["seq"].as_u64().unwrap(),
                    risk: v["receipt"]["payload"]["risk_class"]
                        .as_str()
                        .unwrap()
                        .into(),
                }
            } else {
                Rec::Checkpoint {
                    size: v["checkpoint"]["size"].as_u64().unwrap(),
                    root: v["checkpoint"]["root"].as_str().unwrap().into(),
                }
            };
            kept.push(rec);
        }
    }
    // What is kept is exactly the newest part of the stream; the oldest
    // file went away.
    assert!(kept.len() < want.len());
    assert_eq!(kept[..], want[want.len() - kept.len()..]);
}

use std::os::unix::fs::PermissionsExt;
