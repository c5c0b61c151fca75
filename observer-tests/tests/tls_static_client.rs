//! A statically linked TLS client (a real OpenSSL client, `gcc -static`
//! against Debian's libssl.a and libcrypto.a, stripped): observer has no
//! SSL_write/SSL_read to hook, and says so instead of passing over it.
//! `observerctl status` lists the running agent as not visible with the
//! reason while its connect still becomes a record and a receipt, and
//! `observerctl doctor` judges the file on disk before it runs.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod tls_kit;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use observer_testkit as common;
use tls_kit::*;

/// The Python client's protocol in C: CA, port and request file as
/// arguments; waits for a line on stdin, sends the request over TLS,
/// writes the answer to stdout.
const STATIC_CLIENT: &str = r#"
#include <arpa/inet.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    static char req[1 << 16], buf[1 << 16];
    if (argc != 4) return 2;
    FILE *f = fopen(argv[3], "rb");
    if (!f) return 3;
    size_t n = fread(req, 1, sizeof req, f);
    fclose(f);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_load_verify_locations(ctx, argv[1], NULL) != 1) return 4;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (!fgets(buf, sizeof buf, stdin)) return 5;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) return 6;
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set1_host(ssl, "127.0.0.1");
    if (SSL_connect(ssl) != 1 || SSL_write(ssl, req, (int)n) != (int)n) return 7;
    int r;
    while ((r = SSL_read(ssl, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)r, stdout);
    return 0;
}
"#;

/// Builds the static client in `dir` and strips it (gcc, libssl-dev and
/// binutils come from `cargo xtask test`).
fn build_static_client(dir: &Path) -> PathBuf {
    let src = dir.join("static-client.c");
    std::fs::write(&src, STATIC_CLIENT).unwrap();
    let exe = dir.join("static-tls-client");
    let gcc = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&exe)
        .arg(&src)
        .args(["-lssl", "-lcrypto", "-lpthread"])
        .output()
        .unwrap();
    assert!(
        gcc.status.success(),
        "{}",
        String::from_utf8_lossy(&gcc.stderr)
    );
    assert!(Command::new("strip").arg(&exe).status().unwrap().success());
    let readelf = Command::new("readelf")
        .arg("-d")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&readelf.stdout).contains("no dynamic section"),
        "not static"
    );
    exe
}

/// The static agent really talks TLS to the test server; status lists it
/// as not visible, with the reason; its connect is still a record and a
/// `network.connect` receipt on its chain; no `llm_request` is invented.
#[test]
fn a_static_tls_client_is_listed_not_visible_and_its_connect_is_kept() {
    let fx = Fixture::new(ANSWER);
    let (_server, port) = fx.server();
    let exe = build_static_client(&fx.path(""));
    let body = br#"{"model":"gpt-4o","messages":[]}"#;
    let mut request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    std::fs::write(fx.path("request"), &request).unwrap();
    let config = format!(
        "[plaintext]\nenabled = true\n[[agents]]\nid = \"static-agent\"\nexecutables = [{:?}]\n",
        exe.display().to_string()
    );
    let state = fx.path("daemon");
    std::fs::create_dir(&state).unwrap();
    let mut d = common::Daemon::start_in(common::StateDir::Shared(state), &config);
    let child = client(&fx, port, &mut Command::new(&exe));
    let pid = child.id();
    let socket = d.socket();
    let deadline = Instant::now() + Duration::from_secs(20);
    let hidden = loop {
        let r = common::ctl(common::CtlTarget::Socket(&socket), &["status", "--json"]);
        let h = r.json()["plaintext"]["agents"]["static-agent"]["not_visible"][0].clone();
        if !h.is_null() {
            break h;
        }
        assert!(Instant::now() < deadline, "never listed: {}", r.stdout);
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(hidden["executable"], exe.display().to_string());
    assert!(
        hidden["reason"]
            .as_str()
            .unwrap()
            .contains("defines no SSL_write/SSL_read"),
        "{hidden}"
    );
    let table = common::ctl(common::CtlTarget::Socket(&socket), &["status"]);
    assert!(
        table.stdout.contains(&format!(
            "static-agent     {} NOT visible: no TLS library mapped",
            exe.display()
        )),
        "{}",
        table.stdout
    );
    assert_eq!(release(child), ANSWER);
    assert_eq!(fx.server_got(), request);
    let connect = d.wait_for(|r| common::is_event(r, "connect") && r["process"]["pid"] == pid);
    assert_eq!(connect["process"]["agent"], "static-agent");
    assert_eq!(connect["connect"]["remote_port"], port);
    let db = d.store();
    let records = d.stop();
    assert!(
        !records
            .iter()
            .any(|r| common::is_event(r, "llm_request") && r["process"]["pid"] == pid),
        "an llm_request from a client whose TLS is not visible"
    );
    let connects = common::stored_receipts_of(&db, "network.connect");
    assert!(
        connects
            .iter()
            .any(|c| c.payload["agent_id"] == "static-agent"
                && c.context.as_ref().unwrap()["process"]["pid"] == pid),
        "no network.connect receipt of the static agent"
    );
}

/// `observerctl doctor` judges each registered agent's executable on disk:
/// curl links libssl (through libcurl) and is visible; the static client
/// is not, and the check says why (a warning, not a failure).
#[test]
fn doctor_says_which_agents_tls_would_be_visible() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build_static_client(dir.path());
    let config = dir.path().join("observer.toml");
    std::fs::write(
        &config,
        format!(
            "builtin_policies = false\n[[agents]]\nid = \"static-agent\"\nexecutables = [{:?}]\n[[agents]]\nid = \"curl-agent\"\nexecutables = [\"/usr/bin/curl\"]\n[[agents]]\nid = \"gone-agent\"\nexecutables = [\"/nonexistent/agent\"]\n",
            exe.display().to_string()
        ),
    )
    .unwrap();
    let mut c = Command::new(common::observerctl());
    c.arg("--config").arg(&config).args(["doctor", "--json"]);
    let v = common::run(c).json();
    let check = |name: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .cloned()
    };
    let curl = check("tls_visible:curl-agent").unwrap_or_else(|| panic!("{v}"));
    assert_eq!(
        (curl["ok"].as_bool(), curl["warn"].as_bool()),
        (Some(true), Some(false))
    );
    let detail = curl["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("/usr/bin/curl: TLS visible through /")
            && detail.contains(
                "libssl.so.3 (links libssl.so.3 dynamically (DT_NEEDED of libcurl.so.4))"
            ),
        "{detail}"
    );
    let stat = check("tls_visible:static-agent").unwrap();
    assert_eq!(
        (stat["ok"].as_bool(), stat["warn"].as_bool()),
        (Some(true), Some(true))
    );
    assert!(
        stat["detail"].as_str().unwrap().starts_with(&format!(
            "{}: TLS NOT visible: links no libssl (DT_NEEDED, also through its libraries) and defines no SSL_write/SSL_read",
            exe.display()
        )),
        "{stat}"
    );
    assert!(
        check("tls_visible:gone-agent").is_none(),
        "a missing file is not judged"
    );
    let mut c = Command::new(common::observerctl());
    c.arg("--config").arg(&config).arg("doctor");
    let table = common::run(c).stdout;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("warn   tls_visible:static-agent")),
        "{table}"
    );
}
