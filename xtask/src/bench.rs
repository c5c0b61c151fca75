//! `cargo xtask bench`: what the probes cost the traced workload. Every
//! figure is a ratio against a baseline measured in the same run, with
//! baseline and attached rounds alternating so drift hits both alike. The
//! workload is pinned to one CPU, and the best round of each side is
//! compared: on a shared VM, noise only ever adds time, so the fastest round
//! is the closest to the true cost (medians are printed too).
//!
//! `cargo xtask bench` runs every section; `cargo xtask bench probes` or
//! `cargo xtask bench receipts` runs one (the receipt section is in
//! [`crate::bench_receipts`], the names and policy sections in
//! [`crate::bench_names`], the evidence volume of a reference agent
//! workload in [`crate::bench_workload`], TLS plaintext capture in
//! [`crate::bench_plaintext`], MCP over stdio in [`crate::bench_mcp`], a
//! fleet in ClickHouse in [`crate::bench_fleet`]).
use std::path::Path;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// What the probes cost the traced workload (exec and openat storms).
    Probes,
    /// Signed receipts: pipeline throughput, latency, size, verification,
    /// and the real daemon end to end.
    Receipts,
    /// observerctl over a 1,000,000-receipt store: filtered query latency
    /// and verify throughput.
    Ctl,
    /// Names: a loopback connect storm with TLS ClientHellos (cost and SNI
    /// attribution), and the DNS and SNI parse rates.
    Names,
    /// Forwarding throughput per sink type (syslog TCP and TLS to rsyslog,
    /// HTTP, file) and the catch-up time after a 10-minute backlog.
    Forward,
    /// Rule evaluation cost per event with the shipped policies, against
    /// the JSON serialisation of the same events.
    Policy,
    /// Evidence volume: receipts and store bytes of a reference agent
    /// workload, the layout before folding against today's.
    Workload,
    /// TLS plaintext capture: what attaching per watched process costs an
    /// agent's exec storm, and what capture costs a TLS request storm
    /// (watched and unwatched clients).
    Plaintext,
    /// MCP over stdio: what reading local streams costs a watched and an
    /// unwatched client's round trips, and receipts at 2,000 calls/s.
    Mcp,
    /// What the hook itself costs: empty programs on the openat perf
    /// tracepoint and on the sys_exit raw tracepoint against the daemon's
    /// open path (only when named: `cargo xtask bench floor`).
    Floor,
    /// A fleet in ClickHouse: the clickhouse sink's throughput, `observerctl
    /// fleet verify` against local verify, one rule's findings across all
    /// hosts (only when named: `cargo xtask bench fleet`; needs
    /// clickhouse-server).
    Fleet,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Sections to run (default: all).
    #[arg(value_enum)]
    sections: Vec<Section>,
    #[command(flatten)]
    pub probes: crate::bench_probes::ProbeArgs,
    /// TCP connects (each sending a ClientHello) per connect-storm round.
    #[arg(long, default_value_t = 20_000)]
    pub connects: u32,
    #[command(flatten)]
    pub receipts: crate::bench_receipts::ReceiptArgs,
    #[command(flatten)]
    pub ctl: crate::bench_ctl::CtlArgs,
    #[command(flatten)]
    pub forward: crate::bench_forward::ForwardArgs,
    #[command(flatten)]
    pub floor: crate::bench_floor::FloorArgs,
    #[command(flatten)]
    pub workload: crate::bench_workload::WorkloadArgs,
    #[command(flatten)]
    pub plaintext: crate::bench_plaintext::PlaintextArgs,
    #[command(flatten)]
    pub mcp: crate::bench_mcp::McpArgs,
    #[command(flatten)]
    pub fleet: crate::bench_fleet::FleetArgs,
}

impl BenchArgs {
    pub fn runs(&self, section: Section) -> bool {
        if matches!(section, Section::Floor | Section::Fleet) {
            return self.sections.contains(&section);
        }
        self.sections.is_empty() || self.sections.contains(&section)
    }
}

pub fn run(root: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    let work = std::env::temp_dir().join(format!("observer-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = run_in(root, &work, args);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn run_in(root: &Path, work: &Path, args: &BenchArgs) -> anyhow::Result<()> {
    if args.runs(Section::Probes) {
        crate::bench_probes::run(root, work, &args.probes)?;
    }
    if args.runs(Section::Receipts) {
        crate::bench_receipts::run(root, work, &args.receipts)?;
    }
    if args.runs(Section::Ctl) {
        crate::bench_ctl::run(root, work, &args.ctl)?;
    }
    if args.runs(Section::Names) {
        crate::bench_names::run(root, work, args.connects, args.probes.rounds)?;
    }
    if args.runs(Section::Policy) {
        crate::bench_names::policy(root)?;
    }
    if args.runs(Section::Forward) {
        crate::bench_forward::run(root, work, &args.forward)?;
    }
    if args.runs(Section::Workload) {
        crate::bench_workload::run(root, work, &args.workload)?;
    }
    if args.runs(Section::Plaintext) {
        crate::bench_plaintext::run(root, work, &args.plaintext)?;
    }
    if args.runs(Section::Mcp) {
        crate::bench_mcp::run(root, work, &args.mcp)?;
    }
    if args.runs(Section::Floor) {
        crate::bench_floor::run(root, work, args.probes.opens, &args.floor)?;
    }
    if args.runs(Section::Fleet) {
        crate::bench_fleet::run(root, work, &args.fleet)?;
    }
    Ok(())
}
