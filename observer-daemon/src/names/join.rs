//! Connect records waiting for the ClientHello of their socket, joined on
//! (process, local port, remote address, remote port): the connect record
//! has no socket cookie, and within one process that tuple names one
//! socket at a time. Bounded in time and in number.
use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    time::{Duration, Instant},
};

use crate::event::{Body, Event, Packet};

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

/// Records (`T`: an enriched connect record) waiting for their hello.
pub struct Waiting<T> {
    wait: Duration,
    max: usize,
    /// Arrival order: (deadline, key, ticket); a ticket no longer in
    /// `records` was joined already.
    order: VecDeque<(Instant, JoinKey, u64)>,
    records: HashMap<JoinKey, (u64, T)>,
    next_ticket: u64,
}

impl<T> Waiting<T> {
    pub fn new(wait: Duration, max: usize) -> Waiting<T> {
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
    pub fn push(&mut self, key: JoinKey, record: T, now: Instant) -> Option<T> {
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

    fn pop_oldest(&mut self) -> Option<T> {
        while let Some((_, key, ticket)) = self.order.pop_front() {
            if self.records.get(&key).is_some_and(|(t, _)| *t == ticket) {
                return self.records.remove(&key).map(|(_, r)| r);
            }
        }
        None
    }

    pub fn take(&mut self, key: &JoinKey) -> Option<T> {
        self.records.remove(key).map(|(_, r)| r)
    }

    /// Records whose deadline passed, oldest first.
    pub fn pop_due(&mut self, now: Instant, out: &mut Vec<T>) {
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

    pub fn pop_all(&mut self, out: &mut Vec<T>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> JoinKey {
        JoinKey {
            pid: 7,
            local_port: port,
            remote_addr: "::ffff:10.0.0.1".parse::<IpAddr>().map(canonical).unwrap(),
            remote_port: 443,
        }
    }

    #[test]
    fn joined_records_leave_at_once_others_at_their_deadline() {
        let t0 = Instant::now();
        let mut w = Waiting::new(Duration::from_millis(500), 10);
        assert_eq!(w.push(key(1), "a", t0), None);
        assert_eq!(w.push(key(2), "b", t0 + Duration::from_millis(100)), None);
        assert_eq!(w.take(&key(1)), Some("a"));
        assert_eq!(w.take(&key(1)), None);
        let mut out = Vec::new();
        w.pop_due(t0 + Duration::from_millis(599), &mut out);
        assert!(out.is_empty(), "b waits until 600 ms; a was joined");
        w.pop_due(t0 + Duration::from_millis(600), &mut out);
        assert_eq!(out, vec!["b"]);
        assert!(w.is_empty());
    }

    #[test]
    fn the_limit_and_a_reused_tuple_release_early() {
        let t0 = Instant::now();
        let mut w = Waiting::new(Duration::from_secs(5), 2);
        assert_eq!(w.push(key(1), "a", t0), None);
        assert_eq!(w.push(key(2), "b", t0), None);
        assert_eq!(w.push(key(3), "c", t0), Some("a"), "oldest goes");
        assert_eq!(w.push(key(3), "d", t0), Some("c"), "same tuple again");
        assert_eq!(w.len(), 2);
        let mut out = Vec::new();
        w.pop_all(&mut out);
        assert_eq!(out, vec!["b", "d"]);
    }

    #[test]
    fn mapped_and_plain_ipv4_join() {
        let p = Packet {
            cookie: 1,
            family: 2,
            protocol: 6,
            owner_unknown: false,
            local_addr: "10.0.0.2".parse().unwrap(),
            local_port: 1,
            remote_addr: "10.0.0.1".parse().unwrap(),
            remote_port: 443,
            payload_len: 0,
            payload: Vec::new(),
        };
        assert_eq!(JoinKey::of_packet(7, &p), key(1));
    }
}
