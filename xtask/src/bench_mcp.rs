//! `cargo xtask bench mcp`: what reading MCP stdio traffic costs.
//!
//! A stdio MCP client (observer-tests/mcp/echo_bench.py, raw JSON-RPC, no
//! SDK, so its own cost per call is small) makes N sequential `tools/call`
//! round trips to echo_server.py over pipes:
//! - watched (a registered agent) under a daemon that reads local streams
//!   (`[plaintext] local_streams = true`, the default) against the same
//!   client under a daemon that does not (target >= 0.95);
//! - unwatched under the reading daemon against the same baseline: what
//!   the write/read tracepoints cost a process they filter out in the
//!   kernel (target >= 0.99);
//! - watched at a steady 2,000 calls/s: every call an `mcp.tool_call`
//!   receipt in the store, nothing dropped, and the daemon's CPU per call.
//!
//! The client and its server share the last CPU; the daemon is kept off
//! it, so the ratios show what the kernel side costs the agent, and the
//! daemon's own work (signing a receipt per call) shows as its CPU per
//! call. On this 2-core machine an unpinned daemon would take that time
//! from the echo server instead.
use std::path::Path;

use anyhow::Context as _;

use crate::{
    bench_kit::{best_low, median, Daemon, PinToLastCpu},
    bench_plaintext::{logged_count, measured, plaintext_config, settle},
};

#[derive(clap::Args)]
pub struct McpArgs {
    /// Round trips per round (a round trip is tens of microseconds: fewer
    /// and the round is noise).
    #[arg(long, default_value_t = 20_000)]
    pub mcp_calls: u32,
    /// Alternating rounds.
    #[arg(long, default_value_t = 5)]
    pub mcp_rounds: u32,
}

/// Runs the client N times (optionally at a rate): its own timing of the
/// calls and its CPU seconds.
type Client<'a> = &'a dyn Fn(&Path, Option<u32>) -> anyhow::Result<(f64, f64)>;

/// The steady rate the receipt check runs at (issue #20's target).
const PACED_RATE: u32 = 2_000;

pub fn run(root: &Path, work: &Path, args: &McpArgs) -> anyhow::Result<()> {
    let dir = work.join("mcp");
    std::fs::create_dir_all(&dir)?;
    let _pinned = PinToLastCpu::new()?;
    let scripts = root.join("observer-tests/mcp");
    let bench = std::fs::read_to_string(scripts.join("echo_bench.py"))?;
    let server = scripts.join("echo_server.py").display().to_string();
    let watched = dir.join("bench-mcp-watched");
    let unwatched = dir.join("bench-mcp-unwatched");
    for path in [&watched, &unwatched] {
        observer_testkit::write_executable(path, &format!("#!/usr/bin/python3\n{bench}"));
    }
    let agents = format!(
        "[[agents]]\nid = \"bench-mcp\"\nexecutables = [{:?}]\n",
        watched.display().to_string()
    );
    let config = |on: bool| plaintext_config(root, "local_streams", on, &agents);
    let n = args.mcp_calls;
    // (client seconds as it timed its calls, client CPU) per round.
    let client = |exe: &Path, rate: Option<u32>| -> anyhow::Result<(f64, f64)> {
        let out = dir.join("client.json");
        let mut cmd = std::process::Command::new(exe);
        cmd.arg(n.to_string());
        if let Some(r) = rate {
            cmd.args(["--rate", &r.to_string()]);
        }
        cmd.args(["/usr/bin/python3", &server])
            .stdout(std::fs::File::create(&out)?);
        let (cpu, _) = measured(&mut cmd)?;
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
        let secs = v["seconds"]
            .as_f64()
            .context("echo_bench printed no seconds")?;
        Ok((secs, cpu))
    };
    let (mut base, mut on, mut unwatched_on) = (Vec::new(), Vec::new(), Vec::new());
    let (mut daemon_cpu, mut recorded, mut drops) = (Vec::new(), Vec::new(), 0);
    for _ in 0..args.mcp_rounds.max(1) {
        let d = Daemon::start(root, &dir, &config(false)?, false)?;
        d.keep_off_last_cpu()?;
        base.push(client(&watched, None)?);
        d.stop()?;

        let d = Daemon::start(root, &dir, &config(true)?, false)?;
        d.keep_off_last_cpu()?;
        let cpu0 = d.cpu_secs()?;
        on.push(client(&watched, None)?);
        settle(&d)?;
        daemon_cpu.push(d.cpu_secs()? - cpu0);
        unwatched_on.push(client(&unwatched, None)?);
        let stats = d.stop()?;
        drops += stats.dropped(&["io_data"]);
        recorded.push(logged_tool_calls(&dir.join("observerd.stderr"))?);
    }
    let rate =
        |r: &[(f64, f64)]| f64::from(n) / best_low(&r.iter().map(|x| x.0).collect::<Vec<_>>());
    let med = |r: &[(f64, f64)]| median(&r.iter().map(|x| x.0).collect::<Vec<_>>());
    let cpu = |r: &[(f64, f64)]| best_low(&r.iter().map(|x| x.1).collect::<Vec<_>>());
    println!(
        "MCP stdio round trips ({n} sequential tools/call to an echo server over pipes): baseline {:.0} calls/s \
         (daemon not reading local streams)",
        rate(&base)
    );
    println!(
        "  watched agent, local streams read: {:.0} calls/s, rate ratio {:.3} [{:.3}] (target >= 0.95), \
         client CPU ratio {:.3}; daemon {:.0} us CPU per call; mcp_tool_call records {recorded:?} of {n} per round; \
         io_data drops {drops}",
        rate(&on),
        rate(&on) / rate(&base),
        med(&base) / med(&on),
        cpu(&on) / cpu(&base),
        median(&daemon_cpu) * 1e6 / f64::from(n),
    );
    println!(
        "  unwatched client, local streams read: {:.0} calls/s, rate ratio {:.3} [{:.3}] (target >= 0.99), \
         client CPU ratio {:.3}",
        rate(&unwatched_on),
        rate(&unwatched_on) / rate(&base),
        med(&base) / med(&unwatched_on),
        cpu(&unwatched_on) / cpu(&base),
    );
    paced(root, &dir, &config(true)?, &client, n)
}

/// The watched client at a steady rate: every call a receipt, none lost.
fn paced(root: &Path, dir: &Path, config: &str, client: Client, n: u32) -> anyhow::Result<()> {
    let store = dir.join("state/observer.db");
    let _ = std::fs::remove_file(&store);
    let d = Daemon::start(root, dir, config, false)?;
    d.keep_off_last_cpu()?;
    let cpu0 = d.cpu_secs()?;
    let (secs, _) = client(&dir.join("bench-mcp-watched"), Some(PACED_RATE))?;
    settle(&d)?;
    let daemon = d.cpu_secs()? - cpu0;
    let stats = d.stop()?;
    let receipts: u64 = rusqlite::Connection::open(&store)?.query_row(
        "SELECT COUNT(*) FROM receipts WHERE action_type = 'mcp.tool_call'",
        [],
        |r| r.get(0),
    )?;
    println!(
        "  watched at {PACED_RATE} calls/s: {:.0} calls/s achieved; mcp.tool_call receipts {receipts} of {n}; \
         io_data drops {}; all drops {}; daemon {:.0} us CPU per call",
        f64::from(n) / secs,
        stats.dropped(&["io_data"]),
        stats.kernel_drops() + stats.all_user_drops(),
        daemon * 1e6 / f64::from(n)
    );
    Ok(())
}

/// The MCP tool calls the daemon's stop line counts.
fn logged_tool_calls(stderr: &Path) -> anyhow::Result<u64> {
    logged_count(stderr, "MCP sessions, ", " MCP tool calls")
}
