//! Names for connections: who owns each socket (cgroup connect4/connect6),
//! the TLS ClientHello leaving a TCP socket (cgroup_skb egress) and DNS
//! messages arriving from port 53 (cgroup_skb ingress). Parsing happens in
//! user space; here a packet is only recognised, copied and attributed.
//! Every program here returns 1: traffic is never dropped or changed.
use aya_ebpf::{
    bindings::__sk_buff,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{
            bpf_get_current_cgroup_id, bpf_get_smp_processor_id, bpf_get_socket_cookie,
            bpf_ktime_get_boot_ns, bpf_skb_load_bytes,
        },
    },
    macros::{cgroup_skb, cgroup_sock_addr, map},
    maps::LruHashMap,
    programs::{SkBuffContext, SockAddrContext},
    Global,
};
use observer_common::*;

use crate::{
    emit::{is_excluded, wakeup_flags},
    kernel::{AF_INET, AF_INET6},
    maps::{COUNTERS, EVENTS, SEQ},
};

/// Socket cookie -> the process that connected it.
#[map]
pub static SOCK_OWNERS: LruHashMap<u64, SockOwner> =
    LruHashMap::with_max_entries(SOCK_OWNER_ENTRIES, 0);

#[unsafe(no_mangle)]
pub static NAMES_CONFIG: Global<NamesConfig> = Global::new(NamesConfig::defaults());

/// `htons(ETH_P_IP)` and `htons(ETH_P_IPV6)` as `__sk_buff.protocol` holds them.
const PROTO_IPV4: u32 = 0x0008;
const PROTO_IPV6: u32 = 0xdd86;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const DNS_PORT: u16 = 53;
/// IPv4 header + TCP header + the 6 bytes that identify a ClientHello.
const MIN_HELLO_PACKET: u32 = 20 + 20 + 6;

#[cgroup_sock_addr(connect4)]
pub fn names_connect4(ctx: SockAddrContext) -> i32 {
    record_owner(cookie_of(&ctx));
    1
}

#[cgroup_sock_addr(connect6)]
pub fn names_connect6(ctx: SockAddrContext) -> i32 {
    record_owner(cookie_of(&ctx));
    1
}

#[inline(always)]
fn cookie_of(ctx: &SockAddrContext) -> u64 {
    // SAFETY: the helper accepts the program's own context.
    unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) }
}

/// Unconnected UDP sockets (sendto with an address, as dig and many DNS
/// libraries do) are recorded on their first send; later sends cost one
/// lookup.
#[cgroup_sock_addr(sendmsg4)]
pub fn names_sendmsg4(ctx: SockAddrContext) -> i32 {
    record_owner_once(&ctx);
    1
}

#[cgroup_sock_addr(sendmsg6)]
pub fn names_sendmsg6(ctx: SockAddrContext) -> i32 {
    record_owner_once(&ctx);
    1
}

#[inline(always)]
fn record_owner_once(ctx: &SockAddrContext) {
    let cookie = cookie_of(ctx);
    // SAFETY: only tested for presence.
    if unsafe { SOCK_OWNERS.get(cookie) }.is_none() {
        record_owner(cookie);
    }
}

/// Runs in the connecting task, so the current process is the owner. UDP
/// sockets are recorded too: glibc's resolver connect()s its socket, so the
/// answer it receives is attributed to the process that asked.
#[inline(always)]
fn record_owner(cookie: u64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    let tgid = (pid_tgid >> 32) as u32;
    let owner = SockOwner {
        tgid,
        tid: pid_tgid as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        // SAFETY: no arguments, cannot fail.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        flags: if is_excluded(tgid) {
            SOCK_OWNER_EXCLUDED
        } else {
            0
        },
        _pad: 0,
        comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
    };
    let _ = SOCK_OWNERS.insert(cookie, owner, 0);
}

/// Addresses and ports of a packet, as this host's socket sees them.
struct Flow {
    family: u16,
    protocol: u8,
    ip_len: u32,
    src: [u8; 16],
    dst: [u8; 16],
}

#[inline(always)]
fn load<T>(skb: *mut __sk_buff, offset: u32) -> Option<T> {
    let mut out = core::mem::MaybeUninit::<T>::uninit();
    // SAFETY: the helper bounds-checks the packet and writes size_of::<T>() bytes.
    let rc = unsafe {
        bpf_skb_load_bytes(
            skb.cast(),
            offset,
            out.as_mut_ptr().cast(),
            core::mem::size_of::<T>() as u32,
        )
    };
    // SAFETY: rc == 0 means every byte was written.
    (rc == 0).then(|| unsafe { out.assume_init() })
}

/// The IP header: family, transport protocol, header length, addresses.
/// Fragments and IPv6 extension headers are not followed.
#[inline(always)]
fn ip_flow(ctx: &SkBuffContext) -> Option<Flow> {
    let skb = ctx.skb.skb;
    // SAFETY: a valid __sk_buff context field.
    let protocol = unsafe { (*skb).protocol };
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    if protocol == PROTO_IPV4 {
        let h: [u8; 20] = load(skb, 0)?;
        let ihl = ((h[0] & 0x0f) as u32) * 4;
        // More-fragments flag or a fragment offset: not a whole datagram.
        if ihl < 20 || (h[6] & 0x3f) != 0 || h[7] != 0 {
            return None;
        }
        src[..4].copy_from_slice(&h[12..16]);
        dst[..4].copy_from_slice(&h[16..20]);
        Some(Flow {
            family: AF_INET,
            protocol: h[9],
            ip_len: ihl,
            src,
            dst,
        })
    } else if protocol == PROTO_IPV6 {
        let h: [u8; 40] = load(skb, 0)?;
        src.copy_from_slice(&h[8..24]);
        dst.copy_from_slice(&h[24..40]);
        Some(Flow {
            family: AF_INET6,
            protocol: h[6],
            ip_len: 40,
            src,
            dst,
        })
    } else {
        None
    }
}

/// TLS ClientHellos leaving TCP sockets. Most packets cost the length
/// check, two small loads and a compare.
#[cgroup_skb]
pub fn names_egress(ctx: SkBuffContext) -> i32 {
    if ctx.len() >= MIN_HELLO_PACKET {
        try_egress(&ctx);
    }
    1
}

#[inline(always)]
fn try_egress(ctx: &SkBuffContext) -> Option<()> {
    let flow = ip_flow(ctx)?;
    if flow.protocol != IPPROTO_TCP {
        return None;
    }
    let skb = ctx.skb.skb;
    let tcp: [u8; 16] = load(skb, flow.ip_len)?;
    let offset = flow.ip_len + ((tcp[12] >> 4) as u32) * 4;
    let hello: [u8; 6] = load(skb, offset)?;
    // Record type handshake, TLS major version 3, handshake ClientHello.
    if hello[0] != 0x16 || hello[1] != 0x03 || hello[5] != 0x01 {
        return None;
    }
    let local_port = u16::from_be_bytes([tcp[0], tcp[1]]);
    let remote_port = u16::from_be_bytes([tcp[2], tcp[3]]);
    let cap = NAMES_CONFIG.load().tls_capture_bytes;
    emit_packet(
        ctx,
        EventKind::TlsHello,
        &flow,
        offset,
        cap,
        (flow.src, local_port),
        (flow.dst, remote_port),
    );
    Some(())
}

/// DNS messages arriving from port 53 over UDP or TCP (for TCP the
/// two-byte length prefix is skipped; a message continued in a later
/// segment arrives truncated and is counted by the parser).
#[cgroup_skb]
pub fn names_ingress(ctx: SkBuffContext) -> i32 {
    let _ = try_ingress(&ctx);
    1
}

#[inline(always)]
fn try_ingress(ctx: &SkBuffContext) -> Option<()> {
    let flow = ip_flow(ctx)?;
    let skb = ctx.skb.skb;
    let offset = match flow.protocol {
        IPPROTO_UDP => flow.ip_len + 8,
        IPPROTO_TCP => {
            let tcp: [u8; 16] = load(skb, flow.ip_len)?;
            flow.ip_len + ((tcp[12] >> 4) as u32) * 4 + 2
        }
        _ => return None,
    };
    let ports: [u8; 4] = load(skb, flow.ip_len)?;
    let remote_port = u16::from_be_bytes([ports[0], ports[1]]);
    if remote_port != DNS_PORT {
        return None;
    }
    let local_port = u16::from_be_bytes([ports[2], ports[3]]);
    // A DNS header is 12 bytes: anything shorter is a bare ACK or noise.
    if ctx.len() < offset + 12 {
        return None;
    }
    let cap = NAMES_CONFIG.load().dns_capture_bytes;
    emit_packet(
        ctx,
        EventKind::DnsMessage,
        &flow,
        offset,
        cap,
        (flow.dst, local_port),
        (flow.src, remote_port),
    );
    Some(())
}

#[inline(always)]
fn count(kind: EventKind, emitted: bool) {
    let Some(c) = COUNTERS.get_ptr_mut(kind as u32) else {
        return;
    };
    // SAFETY: a valid per-CPU map value. A softirq run of the ingress
    // program may interrupt a process-context egress run on one CPU; the
    // window is a few instructions and the BPF target has no atomic
    // read-modify-write in `core`, so a rare lost increment is accepted.
    unsafe {
        let field: *mut u64 = if emitted {
            &raw mut (*c).emitted
        } else {
            &raw mut (*c).dropped_ringbuf_full
        };
        *field += 1;
    }
}

/// Copies the packet's payload from `offset` (up to `cap` bytes) into a
/// ring-buffer entry attributed to the socket's owner.
#[inline(always)]
fn emit_packet(
    ctx: &SkBuffContext,
    kind: EventKind,
    flow: &Flow,
    offset: u32,
    cap: u32,
    local: ([u8; 16], u16),
    remote: ([u8; 16], u16),
) {
    let skb = ctx.skb.skb;
    // SAFETY: the helper accepts the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(skb.cast()) };
    // SAFETY: copied out at once.
    let owner = unsafe { SOCK_OWNERS.get(cookie).copied() };
    if owner.is_some_and(|o| o.flags & SOCK_OWNER_EXCLUDED != 0) {
        return;
    }
    // The sequence number is taken even when the write fails, so a gap
    // shows the loss as for every other kind.
    let seq = match SEQ.get_ptr_mut(0) {
        // SAFETY: valid per-CPU value; a nested run may at worst repeat a
        // number, never skip one.
        Some(p) => unsafe {
            *p += 1;
            *p
        },
        None => 0,
    };
    let Some(mut entry) = EVENTS.reserve::<PacketEvent>(0) else {
        count(kind, false);
        return;
    };
    let ev = entry.as_mut_ptr();
    let payload_len = ctx.len().saturating_sub(offset);
    let mut want = payload_len;
    if want > cap {
        want = cap;
    }
    // SAFETY: `ev` points at a reserved entry of size_of::<PacketEvent>();
    // every field is written before submit.
    unsafe {
        let h = &raw mut (*ev).header;
        (*h).kind = kind as u32;
        (*h).cpu = bpf_get_smp_processor_id();
        (*h).seq = seq;
        (*h).boot_ns = bpf_ktime_get_boot_ns();
        match owner {
            Some(o) => {
                (*h).tgid = o.tgid;
                (*h).tid = o.tid;
                (*h).uid = o.uid;
                (*h).gid = o.gid;
                (*h).cgroup_id = o.cgroup_id;
                (*h).comm = o.comm;
                (*ev).flags = 0;
            }
            None => {
                (*h).tgid = 0;
                (*h).tid = 0;
                (*h).uid = 0;
                (*h).gid = 0;
                (*h).cgroup_id = 0;
                (*h).comm = [0; COMM_LEN];
                (*ev).flags = PACKET_FLAG_OWNER_UNKNOWN;
            }
        }
        (*ev).cookie = cookie;
        (*ev).family = flow.family;
        (*ev).protocol = flow.protocol;
        (*ev).local_addr = local.0;
        (*ev).local_port = local.1;
        (*ev).remote_addr = remote.0;
        (*ev).remote_port = remote.1;
        (*ev).payload_len = payload_len;
        (*ev).captured_len = 0;
        let buf = &raw mut (*ev).payload;
        if want > 0 {
            // For want in 1..=PACKET_PAYLOAD_LEN this is want itself, written
            // so the verifier sees a length in 1..=PACKET_PAYLOAD_LEN
            // (compilers fold a plain range check into a form it cannot use).
            let len = ((want - 1) & (PACKET_PAYLOAD_LEN as u32 - 1)) + 1;
            let rc = bpf_skb_load_bytes(skb.cast(), offset, buf.cast(), len);
            if rc == 0 {
                (*ev).captured_len = len;
            }
        }
    }
    entry.submit(wakeup_flags());
    count(kind, true);
}
