//! Connect records waiting for the ClientHello of their socket, joined on
//! (process, local port, remote address, remote port): the connect record
//! has no socket cookie, and within one process that tuple names one
//! socket at a time. Bounded in time and in number.
use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    time::{Duration, Instant},
};

use crate::{
    event::{Body, Event, Packet},
    record::EnrichedEvent,
};

use super::cache::canonical;

const SOCK_STREAM: u16 = 1;
const EINPROGRESS: i32 = -115;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JoinKey {
    pub pid: u32,
    pub local_port: u16,
    pub remote_addr: IpAddr,
    pub remote_port: u16,
}

impl JoinKey {
    /// The key of a TCP connect that succeeded or is in progress; `None`
    /// for every other event (those records never wait).
    pub fn of_connect(ev: &Event) -> Option<JoinKey> {
        let Body::Net(n) = &ev.body else {
            return None;
        };
        let tcp = n.sock_type == SOCK_STREAM;
        let started = n.ret == 0 || n.ret == EINPROGRESS;
        (ev.header.kind == observer_common::EventKind::Connect
            && tcp
            && started
            && n.local_port != 0)
            .then(|| JoinKey {
                pid: ev.header.tgid,
                local_port: n.local_port,
                remote_addr: canonical(n.remote_addr),
                remote_port: n.remote_port,
            })
    }

    pub fn of_packet(pid: u32, p: &Packet) -> JoinKey {
        JoinKey {
            pid,
            local_port: p.local_port,
            remote_addr: canonical(p.remote_addr),
            remote_port: p.remote_port,
        }
    }
}

pub struct Waiting {
    wait: Duration,
    max: usize,
    /// Arrival order: (deadline, key, ticket); a ticket no longer in
    /// `records` was joined already.
    order: VecDeque<(Instant, JoinKey, u64)>,
    records: HashMap<JoinKey, (u64, EnrichedEvent)>,
    next_ticket: u64,
}

impl Waiting {
    pub fn new(wait: Duration, max: usize) -> Waiting {
        Waiting {
            wait,
            max: max.max(1),
            order: VecDeque::new(),
            records: HashMap::new(),
            next_ticket: 0,
        }
    }

    /// Holds `record`; returns a record that must be written now: the
    /// oldest one when the limit is reached, or one this key replaces (the
    /// same socket tuple reused, so the older connect got no hello).
    pub fn push(
        &mut self,
        key: JoinKey,
        record: EnrichedEvent,
        now: Instant,
    ) -> Option<EnrichedEvent> {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let mut early = self
            .records
            .insert(key.clone(), (ticket, record))
            .map(|(_, r)| r);
        self.order.push_back((now + self.wait, key, ticket));
        if early.is_none() && self.records.len() > self.max {
            early = self.pop_oldest();
        }
        early
    }

    fn pop_oldest(&mut self) -> Option<EnrichedEvent> {
        while let Some((_, key, ticket)) = self.order.pop_front() {
            if self.records.get(&key).is_some_and(|(t, _)| *t == ticket) {
                return self.records.remove(&key).map(|(_, r)| r);
            }
        }
        None
    }

    pub fn take(&mut self, key: &JoinKey) -> Option<EnrichedEvent> {
        self.records.remove(key).map(|(_, r)| r)
    }

    /// Records whose deadline passed, oldest first.
    pub fn pop_due(&mut self, now: Instant, out: &mut Vec<EnrichedEvent>) {
        while let Some((deadline, _, _)) = self.order.front() {
            if *deadline > now {
                break;
            }
            if let Some((_, key, ticket)) = self.order.pop_front() {
                if self.records.get(&key).is_some_and(|(t, _)| *t == ticket) {
                    if let Some((_, r)) = self.records.remove(&key) {
                        out.push(r);
                    }
                }
            }
        }
    }

    pub fn pop_all(&mut self, out: &mut Vec<EnrichedEvent>) {
        while let Some(r) = self.pop_oldest() {
            out.push(r);
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}
