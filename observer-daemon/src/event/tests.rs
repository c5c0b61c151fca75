//! Byte fixtures for `decode`: every event kind, exact fields, and the
//! records it refuses.
use super::*;

/// Little-endian record builder, independent of the Rust struct layout
/// so the fixtures also pin the ABI.
#[derive(Default)]
struct Fixture(Vec<u8>);

impl Fixture {
    fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(mut self, v: &[u8], width: usize) -> Self {
        let mut padded = v.to_vec();
        padded.resize(width, 0);
        self.0.extend_from_slice(&padded);
        self
    }
    fn header(kind: u32) -> Self {
        Fixture::default()
            .u32(kind)
            .u32(1) // cpu
            .u64(42) // seq
            .u64(123_456_789) // boot_ns
            .u32(4000) // tgid
            .u32(4001) // tid
            .u32(1000) // uid
            .u32(1001) // gid
            .u64(77) // cgroup id
            .bytes(b"agent", 16)
    }
}

fn expected_header(kind: EventKind) -> Header {
    Header {
        kind,
        cpu: 1,
        seq: 42,
        boot_ns: 123_456_789,
        tgid: 4000,
        tid: 4001,
        uid: 1000,
        gid: 1001,
        cgroup_id: 77,
        comm: "agent".into(),
    }
}

fn exec_fixture(retval: i32, flags: u32, args: &[u8], argc: u32) -> Vec<u8> {
    Fixture::header(1)
        .u32(3999) // ppid
        .u32(u32::MAX) // loginuid unset
        .u32(retval as u32)
        .u32(argc)
        .u32(13) // filename_len
        .u32(args.len() as u32)
        .u32(flags)
        .u32(0)
        // exe identity: dev 259:300 as the kernel encodes it, mtime ns,
        // inode, size, mtime s; zero for a failed exec.
        .u32(if retval == 0 { (259 << 20) | 300 } else { 0 })
        .u32(if retval == 0 { 999 } else { 0 })
        .u64(if retval == 0 { 131_077 } else { 0 })
        .u64(if retval == 0 { 39_256 } else { 0 })
        .u64(if retval == 0 { 1_700_000_000 } else { 0 })
        .bytes(b"/usr/bin/true", PATH_LEN)
        .bytes(args, ARGS_LEN)
        .0
}

#[test]
fn decodes_exec() {
    let bytes = exec_fixture(0, EXEC_FLAG_EXECVEAT, b"true\0--flag\0x y\0", 3);
    assert_eq!(bytes.len(), std::mem::size_of::<ExecEvent>());
    let ev = decode(&bytes).unwrap();
    assert_eq!(ev.header, expected_header(EventKind::Exec));
    let Body::Exec(e) = ev.body else {
        panic!("not exec")
    };
    assert_eq!(e.ppid, 3999);
    assert_eq!(e.loginuid, None);
    assert_eq!(e.retval, 0);
    assert_eq!(e.filename, "/usr/bin/true");
    assert_eq!(e.argv, vec!["true", "--flag", "x y"]);
    assert!(e.execveat && !e.args_truncated && !e.no_args);
    // st_dev of 259:300 as stat reports it: minor's low byte, major
    // shifted by 8, minor's high bits shifted by 12.
    assert_eq!(
        e.exe,
        Some(FileIdentity {
            dev: 0x11_032c,
            ino: 131_077,
            mtime_sec: 1_700_000_000,
            mtime_nsec: 999,
            size: 39_256,
        })
    );
}

#[test]
fn decodes_failed_exec_error() {
    let ev = decode(&exec_fixture(-2, EXEC_FLAG_ARGS_TRUNCATED, b"nope\0", 1)).unwrap();
    let Body::Exec(e) = ev.body else {
        panic!("not exec")
    };
    assert_eq!(e.retval, -2);
    assert_eq!(e.exe, None);
    assert!(e.args_truncated);
    assert_eq!(e.argv, vec!["nope"]);
}

#[test]
fn decodes_exec_record_cut_after_its_argv() {
    let args = b"sh\0-c\0\0echo hi\0";
    let full = exec_fixture(0, 0, args, 0);
    let short = &full[..EXEC_FIXED_LEN + args.len()];
    let Body::Exec(e) = decode(short).unwrap().body else {
        panic!("not exec")
    };
    assert_eq!(
        e.argv,
        vec!["sh", "-c", "", "echo hi"],
        "an empty argument is kept"
    );
    assert_eq!(e.filename, "/usr/bin/true");
    // A record that does not hold the bytes args_len claims is refused.
    assert_eq!(
        decode(&full[..EXEC_FIXED_LEN + 3]),
        Err(DecodeError::Length {
            kind: "exec",
            field: "args_len",
            value: args.len() as u32,
            max: 3
        })
    );
    assert_eq!(
        decode(&full[..EXEC_FIXED_LEN - 1]),
        Err(DecodeError::Short {
            kind: "exec",
            need: EXEC_FIXED_LEN,
            got: EXEC_FIXED_LEN - 1
        })
    );
}

#[test]
fn decodes_argument_area_cut_at_the_buffer_end() {
    let full = exec_fixture(0, EXEC_FLAG_ARGS_TRUNCATED, b"prog\0very-long-argu", 0);
    let Body::Exec(e) = decode(&full).unwrap().body else {
        panic!("not exec")
    };
    assert_eq!(e.argv, vec!["prog", "very-long-argu"]);
    assert!(e.args_truncated);
    let none = exec_fixture(0, 0, b"", 0);
    let Body::Exec(e) = decode(&none[..EXEC_FIXED_LEN]).unwrap().body else {
        panic!("not exec")
    };
    assert!(e.argv.is_empty());
    let one_empty = exec_fixture(0, 0, b"\0", 0);
    let Body::Exec(e) = decode(&one_empty).unwrap().body else {
        panic!("not exec")
    };
    assert_eq!(e.argv, vec![""]);
}

#[test]
fn rejects_exec_length_beyond_buffer() {
    let mut bytes = exec_fixture(0, 0, b"a\0", 1);
    bytes[64 + 20..64 + 24].copy_from_slice(&(ARGS_LEN as u32 + 1).to_le_bytes());
    assert_eq!(
        decode(&bytes),
        Err(DecodeError::Length {
            kind: "exec",
            field: "args_len",
            value: ARGS_LEN as u32 + 1,
            max: ARGS_LEN
        })
    );
}

#[test]
fn decodes_fork_and_exit() {
    let fork = Fixture::header(2).u32(4000).u32(4100).0;
    assert_eq!(
        decode(&fork).unwrap().body,
        Body::Fork {
            parent_tgid: 4000,
            child_tgid: 4100
        }
    );
    let exit = Fixture::header(3).u32(3 << 8).u32(1).0;
    let ev = decode(&exit).unwrap();
    assert_eq!(ev.header.kind, EventKind::Exit);
    assert_eq!(
        ev.body,
        Body::Exit {
            exit_code: 0x300,
            ppid: 1
        }
    );
}

#[test]
fn decodes_ipv4_connect() {
    let mut remote = [0u8; 16];
    remote[..4].copy_from_slice(&[127, 0, 0, 1]);
    let mut local = [0u8; 16];
    local[..4].copy_from_slice(&[127, 0, 0, 2]);
    let bytes = Fixture::header(4)
        .u32(5) // fd
        .u32(-111i32 as u32) // ECONNREFUSED
        .u16(2)
        .u16(1)
        .u16(40000)
        .u16(8080)
        .bytes(&local, 16)
        .bytes(&remote, 16)
        .0;
    let Body::Net(n) = decode(&bytes).unwrap().body else {
        panic!("not net")
    };
    assert_eq!(n.ret, -111);
    assert_eq!(n.remote_addr, "127.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(n.local_addr, "127.0.0.2".parse::<IpAddr>().unwrap());
    assert_eq!((n.local_port, n.remote_port, n.sock_type), (40000, 8080, 1));
}

#[test]
fn decodes_ipv6_listen() {
    let bytes = Fixture::header(7)
        .u32(3)
        .u32(0)
        .u16(10)
        .u16(1)
        .u16(11434)
        .u16(0)
        .bytes(&Ipv6Addr::LOCALHOST.octets(), 16)
        .bytes(&[0; 16], 16)
        .0;
    let ev = decode(&bytes).unwrap();
    assert_eq!(ev.header.kind, EventKind::Listen);
    let Body::Net(n) = ev.body else {
        panic!("not net")
    };
    assert_eq!(n.local_addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert_eq!(n.local_port, 11434);
}

#[test]
fn decodes_file_open() {
    let path = b"/models/llama.gguf";
    let bytes = Fixture::header(8)
        .u32(7)
        .u32(0o2000000) // O_CLOEXEC
        .u32(0)
        .u32(-100i32 as u32)
        .u32(path.len() as u32)
        .u32(OPEN_REASON_SUFFIX)
        .u32(OPEN_SOURCE_OPENAT2)
        .u32(0)
        .bytes(path, PATH_LEN)
        .0;
    let Body::FileOpen(o) = decode(&bytes).unwrap().body else {
        panic!("not open")
    };
    assert_eq!(o.path, "/models/llama.gguf");
    assert_eq!(
        (o.ret, o.dfd, o.reason, o.openat2),
        (7, -100, OPEN_REASON_SUFFIX, true)
    );
}

fn packet_fixture(kind: u32, flags: u8, captured: u32, payload: &[u8]) -> Vec<u8> {
    let mut local = [0u8; 16];
    local[..4].copy_from_slice(&[10, 203, 0, 2]);
    let mut remote = [0u8; 16];
    remote[..4].copy_from_slice(&[10, 203, 0, 1]);
    Fixture::header(kind)
        .u64(0xc00c1e)
        .u16(2)
        .0
        .into_iter()
        .chain([6u8, flags])
        .chain(40000u16.to_le_bytes())
        .chain(443u16.to_le_bytes())
        .chain(local)
        .chain(remote)
        .chain(1500u32.to_le_bytes())
        .chain(captured.to_le_bytes())
        .chain({
            let mut p = payload.to_vec();
            p.resize(PACKET_PAYLOAD_LEN, 0);
            p
        })
        .collect()
}

#[test]
fn decodes_tls_hello_packet() {
    let bytes = packet_fixture(9, 0, 3, b"\x16\x03\x01");
    assert_eq!(bytes.len(), std::mem::size_of::<PacketEvent>());
    let ev = decode(&bytes).unwrap();
    assert_eq!(ev.header, expected_header(EventKind::TlsHello));
    assert_eq!(
        ev.body,
        Body::Packet(Packet {
            cookie: 0xc00c1e,
            family: 2,
            protocol: 6,
            owner_unknown: false,
            local_addr: "10.203.0.2".parse().unwrap(),
            local_port: 40000,
            remote_addr: "10.203.0.1".parse().unwrap(),
            remote_port: 443,
            payload_len: 1500,
            payload: vec![0x16, 3, 1],
        })
    );
}

#[test]
fn decodes_dns_packet_and_rejects_bad_capture_length() {
    let ev = decode(&packet_fixture(10, PACKET_FLAG_OWNER_UNKNOWN, 0, b"")).unwrap();
    let Body::Packet(p) = ev.body else {
        panic!("not a packet")
    };
    assert!(p.owner_unknown && p.payload.is_empty());
    assert_eq!(ev.header.kind, EventKind::DnsMessage);
    let bad = packet_fixture(10, 0, PACKET_PAYLOAD_LEN as u32 + 1, b"");
    assert_eq!(
        decode(&bad),
        Err(DecodeError::Length {
            kind: "dns_message",
            field: "captured_len",
            value: PACKET_PAYLOAD_LEN as u32 + 1,
            max: PACKET_PAYLOAD_LEN
        })
    );
}

#[test]
fn rejects_short_and_unknown_records() {
    assert_eq!(decode(&[0u8; 10]), Err(DecodeError::ShortHeader(10)));
    assert_eq!(
        decode(&Fixture::header(99).0),
        Err(DecodeError::UnknownKind(99))
    );
    assert_eq!(
        decode(&Fixture::header(2).u32(1).0),
        Err(DecodeError::Short {
            kind: "fork",
            need: 72,
            got: 68
        })
    );
}
