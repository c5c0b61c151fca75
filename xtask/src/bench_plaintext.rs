//! `cargo xtask bench plaintext`: what TLS plaintext capture costs.
//!
//! - **Agent exec storm.** A registered agent (a copy of sh) runs a tiny
//!   binary N times. Every exec in an agent's tree is a watched process, and
//!   with `[plaintext]` on the daemon attaches its TLS uprobes to each one:
//!   the question is what that costs the agent (its CPU and wall time) and
//!   the daemon (CPU per exec). Daemon with `[plaintext]` off against on,
//!   rounds alternating.
//! - **TLS request storm.** A Python client sends N requests over one TLS
//!   connection (HTTP/1.1 keep-alive, `POST /v1/chat/completions`, 1 KiB and
//!   64 KiB bodies) to a local TLS server. The client's CPU per request and
//!   its request rate: watched with capture against the same client under a
//!   daemon with capture off (target >= 0.95), and an unwatched client under
//!   a capturing daemon against the same baseline (target >= 0.99). The
//!   watched runs also give the end-to-end count: every request must become
//!   an `llm_request` record, with no plaintext dropped.
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _};

use crate::bench_kit::{best_low, median, unpinned, Daemon, DaemonStats, PinToLastCpu};

#[derive(clap::Args)]
pub struct PlaintextArgs {
    /// Execs of a tiny binary by the agent per exec-storm round.
    #[arg(long, default_value_t = 2_000)]
    pub agent_execs: u32,
    /// Requests per TLS request-storm round.
    #[arg(long, default_value_t = 2_000)]
    pub tls_requests: u32,
    /// Alternating rounds of each storm.
    #[arg(long, default_value_t = 3)]
    pub plaintext_rounds: u32,
}

/// A keep-alive TLS server answering every request like a chat completion.
const SERVER: &str = r#"
import socket, ssl, sys, threading
cert, key = sys.argv[1:3]
body = b'{"model":"bench-model","choices":[{"finish_reason":"stop","message":{"role":"assistant","content":"ok"}}],"usage":{"prompt_tokens":11,"completion_tokens":3}}'
answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(64)
print(ls.getsockname()[1], flush=True)
def serve(conn):
    # No Nagle: an answer must not wait for the client's delayed ACK.
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s = ctx.wrap_socket(conn, server_side=True)
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            d = s.recv(262144)
            if not d:
                return
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        n = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                n = int(v)
        while len(rest) < n:
            d = s.recv(262144)
            if not d:
                return
            rest += d
        buf = rest[n:]
        s.sendall(answer)
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// N requests of a given body size over one connection; each answer read
/// whole before the next request.
const CLIENT: &str = r#"
import socket, ssl, sys
ca, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
pad = "x" * max(0, size - 70)
body = ('{"model":"gpt-4o-mini","messages":[{"role":"user","content":"%s"}]}' % pad).encode()
req = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (port, len(body)) + body
ctx = ssl.create_default_context(cafile=ca)
raw = socket.create_connection(("127.0.0.1", port))
raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
buf = b""
for _ in range(n):
    s.sendall(req)
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(rest) < length:
        rest += s.recv(65536)
    buf = rest[length:]
s.close()
"#;

pub fn run(root: &Path, work: &Path, args: &PlaintextArgs) -> anyhow::Result<()> {
    let dir = work.join("plaintext");
    std::fs::create_dir_all(&dir)?;
    let _pinned = PinToLastCpu::new()?;
    println!("plaintext capture: ratios are capture on / capture off, best round of each (median in brackets)");
    exec_storm(root, &dir, args)?;
    request_storm(root, &dir, args)
}

/// observer.toml with its `[plaintext] enabled` line set and `agents`
/// appended.
fn config(root: &Path, enabled: bool, agents: &str) -> anyhow::Result<String> {
    plaintext_config(root, "enabled", enabled, agents)
}

/// observer.toml with the `[plaintext]` line `key` set to `value` and
/// `agents` appended.
pub(crate) fn plaintext_config(
    root: &Path,
    key: &str,
    value: bool,
    agents: &str,
) -> anyhow::Result<String> {
    let shipped = std::fs::read_to_string(root.join("observer.toml"))?;
    let mut out = String::new();
    let (mut in_plaintext, mut set) = (false, false);
    for line in shipped.lines() {
        if line.starts_with('[') {
            in_plaintext = line.trim() == "[plaintext]";
        }
        if in_plaintext && line.split('=').next().map(str::trim) == Some(key) {
            out.push_str(&format!("{key} = {value}\n"));
            set = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !set {
        bail!("observer.toml has no `{key}` line under [plaintext]");
    }
    Ok(format!("{out}\n{agents}"))
}

fn exec_storm(root: &Path, dir: &Path, args: &PlaintextArgs) -> anyhow::Result<()> {
    let tiny = dir.join("tiny-true");
    std::fs::copy("/bin/true", &tiny)?;
    let agent = dir.join("bench-agent-sh");
    std::fs::copy("/bin/sh", &agent)?;
    let agents = format!(
        "[[agents]]\nid = \"bench-agent\"\nexecutables = [{:?}]\n",
        agent.display().to_string()
    );
    let script = format!(
        "i=0; while [ $i -lt {} ]; do {}; i=$((i+1)); done",
        args.agent_execs,
        tiny.display()
    );
    let (mut off, mut on) = (Rounds::default(), Rounds::default());
    for _ in 0..args.plaintext_rounds.max(1) {
        for (enabled, rounds) in [(false, &mut off), (true, &mut on)] {
            let d = Daemon::start(root, dir, &config(root, enabled, &agents)?, false)?;
            let cpu0 = d.cpu_secs()?;
            let (cpu, wall) = measured(Command::new(&agent).arg("-c").arg(&script))?;
            // The attacher works behind the execs: let it finish.
            settle(&d)?;
            let daemon = d.cpu_secs()? - cpu0;
            let stats = d.stop()?;
            rounds.push(cpu, wall, daemon, &stats);
        }
    }
    let n = f64::from(args.agent_execs);
    println!(
        "agent exec storm ({} execs of a tiny binary by a registered agent): agent CPU ratio {:.3} [{:.3}], \
         wall ratio {:.3} [{:.3}] (target <= 1.03); daemon CPU per exec {:.0} us off, {:.0} us on; \
         exec events {} off, {} on; drops {}",
        args.agent_execs,
        best_low(&on.cpu) / best_low(&off.cpu),
        median(&on.cpu) / median(&off.cpu),
        best_low(&on.wall) / best_low(&off.wall),
        median(&on.wall) / median(&off.wall),
        median(&off.daemon) * 1e6 / n,
        median(&on.daemon) * 1e6 / n,
        off.events,
        on.events,
        off.drops + on.drops
    );
    Ok(())
}

fn request_storm(root: &Path, dir: &Path, args: &PlaintextArgs) -> anyhow::Result<()> {
    observer_testkit::pki::make_pki(dir);
    let python = which("python3")?;
    let watched = dir.join("bench-llm-watched");
    let unwatched = dir.join("bench-llm-unwatched");
    for path in [&watched, &unwatched] {
        observer_testkit::write_executable(path, &format!("#!{}\n{CLIENT}", python.display()));
    }
    let agents = format!(
        "[[agents]]\nid = \"bench-llm\"\nexecutables = [{:?}]\n",
        watched.display().to_string()
    );
    let server = TlsServer::start(&python, dir)?;
    let ca = dir.join("ca.pem");
    let n = args.tls_requests;
    for size in [1024u32, 65536] {
        let client = |path: &Path| -> anyhow::Result<(f64, f64)> {
            measured(
                Command::new(path)
                    .arg(&ca)
                    .arg(server.port.to_string())
                    .arg(n.to_string())
                    .arg(size.to_string()),
            )
        };
        let (mut base, mut watched_on, mut unwatched_on) =
            (Rounds::default(), Rounds::default(), Rounds::default());
        let mut llm_calls = Vec::new();
        for _ in 0..args.plaintext_rounds.max(1) {
            let d = Daemon::start(root, dir, &config(root, false, &agents)?, false)?;
            let (cpu, wall) = client(&watched)?;
            let stats = d.stop()?;
            base.push(cpu, wall, 0.0, &stats);

            let d = Daemon::start(root, dir, &config(root, true, &agents)?, false)?;
            let cpu0 = d.cpu_secs()?;
            let (cpu, wall) = client(&watched)?;
            settle(&d)?;
            let daemon = d.cpu_secs()? - cpu0;
            let (u_cpu, u_wall) = client(&unwatched)?;
            let stats = d.stop()?;
            watched_on.push(cpu, wall, daemon, &stats);
            unwatched_on.push(u_cpu, u_wall, 0.0, &stats);
            llm_calls.push(logged_llm_calls(&dir.join("observerd.stderr"))?);
        }
        let rate = |r: &Rounds| f64::from(n) / best_low(&r.wall);
        println!(
            "TLS request storm ({n} requests of {size} B bodies on one connection): baseline {:.0} req/s, \
             {:.0} us client CPU per request",
            rate(&base),
            best_low(&base.cpu) * 1e6 / f64::from(n)
        );
        println!(
            "  watched, capture on: {:.0} req/s, rate ratio {:.3} [{:.3}] (target >= 0.95), client CPU ratio {:.3}; \
             daemon {:.0} us CPU per request; llm_request records {:?} of {n} per round; plaintext drops {}",
            rate(&watched_on),
            rate(&watched_on) / rate(&base),
            median(&base.wall) / median(&watched_on.wall),
            best_low(&watched_on.cpu) / best_low(&base.cpu),
            median(&watched_on.daemon) * 1e6 / f64::from(n),
            llm_calls,
            watched_on.tls_drops
        );
        println!(
            "  unwatched, capture on: {:.0} req/s, rate ratio {:.3} [{:.3}] (target >= 0.99), client CPU ratio {:.3}",
            rate(&unwatched_on),
            rate(&unwatched_on) / rate(&base),
            median(&base.wall) / median(&unwatched_on.wall),
            best_low(&unwatched_on.cpu) / best_low(&base.cpu)
        );
    }
    Ok(())
}

#[derive(Default)]
struct Rounds {
    cpu: Vec<f64>,
    wall: Vec<f64>,
    daemon: Vec<f64>,
    events: u64,
    drops: u64,
    tls_drops: u64,
}

impl Rounds {
    fn push(&mut self, cpu: f64, wall: f64, daemon: f64, stats: &DaemonStats) {
        self.cpu.push(cpu);
        self.wall.push(wall);
        self.daemon.push(daemon);
        self.events += stats.emitted(&["exec"]);
        self.drops += stats.kernel_drops() + stats.all_user_drops();
        self.tls_drops += stats.dropped(&["tls_data"]);
    }
}

/// CPU seconds (user + system, the command and what it waited for) and
/// wall seconds of one run of `cmd`.
pub(crate) fn measured(cmd: &mut Command) -> anyhow::Result<(f64, f64)> {
    let before = crate::bench_probes::children_cpu();
    let start = Instant::now();
    let status = cmd.status().context("running the workload")?;
    let wall = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok((crate::bench_probes::children_cpu() - before, wall))
}

/// Waits until the daemon's CPU stops rising (its queues are drained).
pub(crate) fn settle(d: &Daemon) -> anyhow::Result<()> {
    let mut last = d.cpu_secs()?;
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let now = d.cpu_secs()?;
        if now - last < 0.005 {
            return Ok(());
        }
        last = now;
    }
    Ok(())
}

/// The LLM API calls the daemon's stop line counts.
fn logged_llm_calls(stderr: &Path) -> anyhow::Result<u64> {
    logged_count(stderr, "HTTP requests, ", " LLM API calls")
}

/// The number between `before` and `after` in the daemon's plaintext stop
/// line.
pub(crate) fn logged_count(stderr: &Path, before: &str, after: &str) -> anyhow::Result<u64> {
    let log = std::fs::read_to_string(stderr)?;
    log.lines()
        .find_map(|l| {
            let (_, rest) = l.split_once(before)?;
            rest.split_once(after)?.0.parse().ok()
        })
        .with_context(|| format!("observerd logged no `{before}N{after}`"))
}

fn which(name: &str) -> anyhow::Result<PathBuf> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()?;
    let path = String::from_utf8(out.stdout)?.trim().to_string();
    if path.is_empty() {
        bail!("{name} not found");
    }
    // The real file: an agent's executable is matched by its path.
    Ok(std::fs::canonicalize(path)?)
}

struct TlsServer {
    child: Child,
    port: u16,
}

impl TlsServer {
    fn start(python: &Path, dir: &Path) -> anyhow::Result<TlsServer> {
        let mut cmd = Command::new(python);
        cmd.arg("-c")
            .arg(SERVER)
            .arg(dir.join("server.pem"))
            .arg(dir.join("server.key"))
            .stdout(Stdio::piped());
        // The server runs where the scheduler puts it, not on the pinned CPU.
        unpinned(&mut cmd);
        let mut child = cmd.spawn().context("starting the TLS server")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("server stdout")?).read_line(&mut line)?;
        let port = line.trim().parse().context("the TLS server's port")?;
        Ok(TlsServer { child, port })
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
