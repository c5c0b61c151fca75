//! A name for every connection (docs/names.md). DNS answers seen by the
//! kernel fill an IP -> names cache and become `dns_answer` records; each
//! `connect` record gets the cached names of its remote address (source
//! `dns`) and the server name of the TLS ClientHello the same socket sent
//! (source `sni`). The ClientHello leaves after connect(2) returns, so TCP
//! connect records wait for it, for a bounded time and in bounded number.
pub mod cache;
pub mod config;
pub mod dns;
pub mod join;
pub mod sni;

#[cfg(test)]
mod mutation_tests;
#[cfg(test)]
mod stage_tests;

use std::{collections::BTreeMap, time::Instant};

use observer_common::EventKind;

use crate::{
    enrich::enricher::Enricher,
    event::{Body, Event, Packet},
    record::{Detail, DnsAnswerDetail, DstName, EnrichedEvent, NameSource},
};

pub use cache::NameCache;
pub use join::{JoinKey, Waiting};

/// Every counter the stage keeps, reported in `observer_stop.names`.
pub const COUNTERS: &[&str] = &[
    "dns_answers",
    "dns_owner_unknown",
    "dns_short",
    "dns_truncated",
    "dns_not_response",
    "dns_no_question",
    "dns_bad_name",
    "dns_bad_rdata",
    "sni_joined",
    "sni_unjoined",
    "sni_owner_unknown",
    "sni_truncated",
    "sni_not_client_hello",
    "sni_malformed",
    "sni_absent",
    "connect_waited",
    "connect_wait_timeout",
    "connect_wait_overflow",
];

/// The stage's counters as last published, for the metrics endpoint.
pub type SharedCounters = std::sync::Arc<std::sync::Mutex<BTreeMap<&'static str, u64>>>;

pub struct Names {
    cache: NameCache,
    waiting: Waiting<EnrichedEvent>,
    counters: BTreeMap<&'static str, u64>,
    shared: SharedCounters,
}

impl Names {
    pub fn new(cfg: &config::NamesSection) -> Names {
        Names {
            cache: NameCache::new(
                cfg.cache_addresses,
                cfg.cache_names_per_address,
                cfg.min_ttl_s,
                cfg.max_ttl_s,
            ),
            waiting: Waiting::new(
                std::time::Duration::from_millis(cfg.sni_wait_ms),
                cfg.sni_wait_max,
            ),
            counters: COUNTERS.iter().map(|c| (*c, 0)).collect(),
            shared: SharedCounters::default(),
        }
    }

    /// Where [`Names::publish`] copies the counters (the metrics endpoint
    /// reads them there).
    pub fn with_shared(mut self, shared: SharedCounters) -> Names {
        self.shared = shared;
        self
    }

    /// Copies the counters to the shared map (on the processor's tick:
    /// not per event).
    pub fn publish(&self) {
        if let Ok(mut g) = self.shared.lock() {
            g.clone_from(&self.counters);
        }
    }

    fn count(&mut self, what: &'static str) {
        *self.counters.entry(what).or_default() += 1;
    }

    pub fn counters(&self) -> BTreeMap<&'static str, u64> {
        self.counters.clone()
    }

    /// Takes one kernel event; pushes the records that are ready, in
    /// order, to `out` (connect records may come out later, from
    /// `flush_due`, once their ClientHello arrived or the wait ended).
    pub fn on_event(
        &mut self,
        ev: &Event,
        enricher: &mut Enricher,
        now: Instant,
        out: &mut Vec<EnrichedEvent>,
    ) {
        self.flush_due(now, out);
        match &ev.body {
            Body::Packet(p) if ev.header.kind == EventKind::TlsHello => self.on_hello(ev, p, out),
            Body::Packet(p) => self.on_dns(ev, p, enricher, out),
            _ => {
                let Some(mut enriched) = enricher.enrich(ev) else {
                    return;
                };
                let Detail::Connect(c) = &mut enriched.detail else {
                    out.push(enriched);
                    return;
                };
                if let Ok(addr) = c.remote_addr.parse() {
                    c.dst_names = self
                        .cache
                        .names(addr, ev.header.boot_ns)
                        .into_iter()
                        .map(|name| DstName {
                            name,
                            source: NameSource::Dns,
                        })
                        .collect();
                }
                match JoinKey::of_connect(ev) {
                    Some(key) => {
                        self.count("connect_waited");
                        if let Some(early) = self.waiting.push(key, enriched, now) {
                            self.count("connect_wait_overflow");
                            out.push(early);
                        }
                    }
                    None => out.push(enriched),
                }
            }
        }
    }

    /// Connect records whose wait ended.
    pub fn flush_due(&mut self, now: Instant, out: &mut Vec<EnrichedEvent>) {
        let before = out.len();
        self.waiting.pop_due(now, out);
        for _ in before..out.len() {
            self.count("connect_wait_timeout");
        }
    }

    /// Every waiting record (at stop).
    pub fn flush_all(&mut self, out: &mut Vec<EnrichedEvent>) {
        self.waiting.pop_all(out);
    }

    fn on_hello(&mut self, ev: &Event, p: &Packet, out: &mut Vec<EnrichedEvent>) {
        let name = match sni::server_name(&p.payload) {
            Ok(name) => name,
            Err(e) => {
                self.count(e.reason());
                return;
            }
        };
        if p.owner_unknown {
            // Without the owner the 4-tuple alone could match a socket of
            // another network namespace: never guess.
            self.count("sni_owner_unknown");
            return;
        }
        let key = JoinKey::of_packet(ev.header.tgid, p);
        match self.waiting.take(&key) {
            Some(mut enriched) => {
                if let Detail::Connect(c) = &mut enriched.detail {
                    c.dst_names.push(DstName {
                        name,
                        source: NameSource::Sni,
                    });
                }
                self.count("sni_joined");
                out.push(enriched);
            }
            None => self.count("sni_unjoined"),
        }
    }

    fn on_dns(
        &mut self,
        ev: &Event,
        p: &Packet,
        enricher: &mut Enricher,
        out: &mut Vec<EnrichedEvent>,
    ) {
        let response = match dns::parse_response(&p.payload) {
            Ok(r) => r,
            Err(e) => {
                self.count(e.reason());
                return;
            }
        };
        let chain = response.chain();
        let resolved = response.addresses();
        for r in &resolved {
            self.cache.insert(r.addr, &chain, r.ttl, ev.header.boot_ns);
        }
        let truncated = response.truncated || p.payload_len as usize > p.payload.len();
        if truncated {
            self.count("dns_truncated");
        }
        if p.owner_unknown {
            // The names are kept; a record needs the process that asked.
            self.count("dns_owner_unknown");
            return;
        }
        self.count("dns_answers");
        let detail = DnsAnswerDetail {
            transport: if p.protocol == 6 { "tcp" } else { "udp" },
            server_addr: cache::canonical(p.remote_addr).to_string(),
            server_port: p.remote_port,
            local_addr: cache::canonical(p.local_addr).to_string(),
            local_port: p.local_port,
            id: response.id,
            rcode: response.rcode,
            truncated,
            question: response.question,
            answers: response.answers,
            cname_chain: chain,
            addresses: resolved.iter().map(|r| r.addr.to_string()).collect(),
        };
        out.push(enricher.enrich_with(&ev.header, "dns_answer", Detail::DnsAnswer(detail)));
    }
}
