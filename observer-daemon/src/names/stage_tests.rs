//! The names stage over synthetic decoded events: the DNS answer fills the
//! cache and becomes a record, a connect gets the cached names, waits for
//! its ClientHello and carries its SNI; another process's hello for the
//! same tuple never joins.
use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use observer_common::EventKind;

use super::{config::NamesSection, dns::fixtures, sni, Names};
use crate::{
    enrich::enricher::{Enricher, EnricherOptions, WatchControl},
    event::{Body, Event, Header, Net, Packet},
    record::{Detail, EnrichedEvent},
};

struct NoWatch;
impl WatchControl for NoWatch {
    fn watch(&mut self, _: u32, _: Option<&std::sync::Arc<str>>) {}
}

/// A pid no real process has (above the kernel's pid_max limit).
const PID: u32 = 4_500_000;

fn enricher() -> Enricher {
    Enricher::new(
        EnricherOptions {
            process_table_capacity: 64,
            hash_max_bytes: 0,
            env_patterns: Vec::new(),
            watch_executables: Vec::new(),
            policy: std::sync::Arc::new(crate::policy::Policy::from_config(&[])),
        },
        Box::new(NoWatch),
    )
}

fn header(kind: EventKind, pid: u32, boot_ns: u64) -> Header {
    Header {
        kind,
        cpu: 0,
        seq: 1,
        boot_ns,
        tgid: pid,
        tid: pid,
        uid: 0,
        gid: 0,
        cgroup_id: 1,
        comm: "client".into(),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn packet(kind: EventKind, pid: u32, payload: Vec<u8>, remote_port: u16) -> Event {
    Event {
        header: header(kind, pid, 2_000),
        body: Body::Packet(Packet {
            cookie: 9,
            family: 2,
            protocol: if kind == EventKind::TlsHello { 6 } else { 17 },
            owner_unknown: false,
            local_addr: ip("10.0.0.2"),
            local_port: 40000,
            remote_addr: ip("10.203.0.1"),
            remote_port,
            payload_len: payload.len() as u32,
            payload,
        }),
    }
}

fn connect(pid: u32) -> Event {
    Event {
        header: header(EventKind::Connect, pid, 2_500),
        body: Body::Net(Net {
            fd: 3,
            ret: -115,
            family: 2,
            sock_type: 1,
            local_addr: ip("10.0.0.2"),
            local_port: 40000,
            remote_addr: ip("10.203.0.1"),
            remote_port: 443,
        }),
    }
}

fn names_of(e: &EnrichedEvent) -> Vec<(String, String)> {
    let Detail::Connect(c) = &e.detail else {
        panic!("not a connect: {}", e.event)
    };
    c.dst_names
        .iter()
        .map(|n| {
            let source = serde_json::to_value(n.source).unwrap();
            (n.name.clone(), source.as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn dns_then_connect_then_hello() {
    let mut names = Names::new(&NamesSection::default());
    let mut e = enricher();
    let now = Instant::now();
    let mut out = Vec::new();
    // The fixture answers api.openai.com A 10.203.0.1.
    names.on_event(
        &packet(EventKind::DnsMessage, PID, fixtures::simple_a(), 53),
        &mut e,
        now,
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].event, "dns_answer");
    assert_eq!(out[0].process.pid, PID);
    out.clear();
    names.on_event(&connect(PID), &mut e, now, &mut out);
    assert!(out.is_empty(), "the connect waits for its hello");
    // Another process's hello on the same tuple (another namespace) does
    // not join.
    let hello = sni::fixtures::typical("api.openai.com");
    names.on_event(
        &packet(EventKind::TlsHello, PID + 1, hello.clone(), 443),
        &mut e,
        now,
        &mut out,
    );
    assert!(out.is_empty());
    names.on_event(
        &packet(EventKind::TlsHello, PID, hello, 443),
        &mut e,
        now,
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(
        names_of(&out[0]),
        vec![
            ("api.openai.com".to_string(), "dns".to_string()),
            ("api.openai.com".to_string(), "sni".to_string())
        ]
    );
    let c = names.counters();
    assert_eq!(
        (c["dns_answers"], c["sni_joined"], c["sni_unjoined"]),
        (1, 1, 1)
    );
}

#[test]
fn a_connect_without_hello_leaves_after_the_wait() {
    let mut names = Names::new(&NamesSection {
        sni_wait_ms: 100,
        ..NamesSection::default()
    });
    let mut e = enricher();
    let now = Instant::now();
    let mut out = Vec::new();
    names.on_event(&connect(PID), &mut e, now, &mut out);
    names.flush_due(now + Duration::from_millis(99), &mut out);
    assert!(out.is_empty());
    names.flush_due(now + Duration::from_millis(100), &mut out);
    assert_eq!(out.len(), 1);
    assert!(names_of(&out[0]).is_empty());
    assert_eq!(names.counters()["connect_wait_timeout"], 1);
}
