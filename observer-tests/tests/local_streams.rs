//! Pipe and local socket capture on the real kernel: a watched process's
//! `write`/`read` on pipes, `sendto`/`recvfrom` on a loopback TCP socket
//! and on a Unix stream socket reach the plaintext ring byte for byte,
//! with the descriptor, its kind and the peer; a regular file, a UDP
//! socket and an unwatched process never do; a stream the daemon muted
//! (by tgid and inode) is no longer copied while the others still are; a
//! process that gets the pid of a watched one that exited starts unwatched.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]
mod tls_kit;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    process::{Command, Stdio},
};

use observer_common::IoStreamKey;
use observer_daemon::stream::plaintext::{Call, Channel, ConnId, Descriptor, Plaintext};
use tls_kit::*;

/// Each step waits for a line on stdin, so the test controls the order.
const CHILD: &str = r#"
import os, socket, sys
port, path = int(sys.argv[1]), sys.argv[2]
os.write(1, b"ready\n")                      # before it is watched
first = os.read(0, 100)                      # read on the stdin pipe
os.write(1, b'{"jsonrpc":"2.0","id":1}\n')   # write on the stdout pipe
with open(path, "wb") as f:                  # a regular file: never copied
    f.write(b"file bytes")
tcp = socket.create_connection(("127.0.0.1", port))
tcp.send(b"POST /api/chat HTTP/1.1\r\n\r\n")  # sendto on loopback TCP
answer = tcp.recv(100)                        # recvfrom on loopback TCP
a, b = socket.socketpair()
a.send(b"unix stream bytes")                  # sendto on a Unix socket
b.recv(100)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.sendto(b"udp bytes", ("127.0.0.1", 9))    # UDP: never copied
second = os.read(0, 100)                      # after the stdout pipe is muted
os.write(1, b'{"jsonrpc":"2.0","id":2}\n')
os.write(2, answer + first + second)
"#;

fn of(records: &[Plaintext], call: Call) -> Vec<&Plaintext> {
    records.iter().filter(|r| r.call == call).collect()
}

#[test]
fn pipes_and_local_sockets_of_a_watched_process_reach_the_ring_exactly() {
    let mut probes = load_io(observer_common::TLS_CAPTURE_DEFAULT, 65536);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    // The interpreter itself, not a wrapper (a pyenv shim is a shell
    // script whose children would be watched too).
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", CHILD])
        .arg(port.to_string())
        .arg(dir.path().join("file"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    watch(&mut probes.process_flags, pid);
    stdin.write_all(b"go one\n").unwrap();
    // The unwatched side (this test) answers on the socket.
    let (mut conn, _) = listener.accept().unwrap();
    let mut got = [0u8; 27];
    conn.read_exact(&mut got).unwrap();
    conn.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "{\"jsonrpc\":\"2.0\",\"id\":1}\n");

    let first = drain(&mut probes.plaintext);
    assert!(first.iter().all(|r| r.header.tgid == pid), "{first:?}");
    let read = of(&first, Call::Read);
    assert_eq!(read.len(), 1, "{first:?}");
    assert_eq!(read[0].data, b"go one\n");
    assert_eq!(
        read[0].descriptor,
        Some(Descriptor {
            fd: 0,
            channel: Channel::Pipe
        })
    );
    let written = of(&first, Call::Write);
    assert_eq!(written.len(), 1, "{first:?}");
    assert_eq!(written[0].data, b"{\"jsonrpc\":\"2.0\",\"id\":1}\n");
    assert_eq!(written[0].descriptor.unwrap().fd, 1);
    assert_eq!(written[0].descriptor.unwrap().channel, Channel::Pipe);
    assert_eq!((written[0].len, written[0].offset), (25, 0));
    // Two pipes, two inodes.
    assert_ne!(read[0].conn, written[0].conn);
    let ConnId::Io(stdout_ino) = written[0].conn else {
        panic!("{:?}", written[0].conn)
    };

    // Mute the stdout pipe, as the daemon does with a stream it does not
    // parse, then let the child go on.
    probes
        .io_muted
        .insert(
            IoStreamKey {
                tgid: pid,
                _pad: 0,
                ino: stdout_ino,
            },
            1,
            0,
        )
        .unwrap();
    stdin.write_all(b"go two\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Vec<Plaintext> = first
        .into_iter()
        .chain(drain(&mut probes.plaintext))
        .collect();

    let tcp = Channel::Tcp {
        remote: format!("127.0.0.1:{port}").parse().unwrap(),
        local_port: match of(&all, Call::SendTo)[0].descriptor.unwrap().channel {
            Channel::Tcp { local_port, .. } => local_port,
            other => panic!("{other:?}"),
        },
    };
    let sent = of(&all, Call::SendTo);
    assert_eq!(sent.len(), 2, "{all:?}");
    assert_eq!(sent[0].data, got);
    assert_eq!(sent[0].descriptor.unwrap().channel, tcp);
    assert_eq!(sent[1].data, b"unix stream bytes");
    assert_eq!(sent[1].descriptor.unwrap().channel, Channel::Unix);
    let received = of(&all, Call::RecvFrom);
    // The answer on TCP, and the other end of the socket pair.
    assert_eq!(received.len(), 2, "{all:?}");
    assert_eq!(received[0].data, b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(received[0].descriptor.unwrap().channel, tcp);
    assert_eq!(received[0].conn, sent[0].conn);
    assert_eq!(received[1].data, b"unix stream bytes");
    // The second read of stdin is copied; the second write to the muted
    // stdout is not, while stderr (another pipe) still is.
    let reads: Vec<&[u8]> = of(&all, Call::Read).iter().map(|r| &r.data[..]).collect();
    assert_eq!(reads, [&b"go one\n"[..], b"go two\n"]);
    let writes: Vec<(i32, &[u8])> = of(&all, Call::Write)
        .iter()
        .map(|r| (r.descriptor.unwrap().fd, &r.data[..]))
        .collect();
    assert_eq!(
        writes,
        [
            (1, &b"{\"jsonrpc\":\"2.0\",\"id\":1}\n"[..]),
            (2, b"HTTP/1.1 200 OK\r\n\r\ngo one\ngo two\n"),
        ]
    );
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"{\"jsonrpc\":\"2.0\",\"id\":2}\n");
    assert!(out.stdout.is_empty());
    assert!(all
        .iter()
        .all(|r| !r.data.windows(4).any(|w| w == b"file" || w == b"udp ")));
}

/// writev and readv: each iovec's bytes in turn, as pieces of one call
/// whose offsets run on across them (what a writer that gathers a message
/// from several buffers sends, read back into two).
const VECTORED: &str = r#"
import os, sys
os.write(1, b"ready\n")
sys.stdin.readline()
r, w = os.pipe()
os.writev(w, [b'{"jsonrpc":', b'', b'"2.0"}', b"\n"])
head, tail = bytearray(4), bytearray(64)
n = os.readv(r, [head, tail])
os.write(2, bytes(head) + bytes(tail[:n - 4]))
"#;

#[test]
fn writev_and_readv_reach_the_ring_iovec_by_iovec() {
    let mut probes = load_io(observer_common::TLS_CAPTURE_DEFAULT, 65536);
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", VECTORED])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    watch(&mut probes.process_flags, pid);
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.stderr, b"{\"jsonrpc\":\"2.0\"}\n");
    let all = drain(&mut probes.plaintext);
    let pieces = |call: Call| -> Vec<(u32, u32, Vec<u8>)> {
        of(&all, call)
            .iter()
            .map(|r| (r.len, r.offset, r.data.clone()))
            .collect()
    };
    assert_eq!(
        pieces(Call::Writev),
        [
            (18, 0, b"{\"jsonrpc\":".to_vec()),
            (18, 11, b"\"2.0\"}".to_vec()),
            (18, 17, b"\n".to_vec()),
        ],
        "{all:?}"
    );
    assert_eq!(
        pieces(Call::Readv),
        [
            (18, 0, b"{\"js".to_vec()),
            (18, 4, b"onrpc\":\"2.0\"}\n".to_vec()),
        ],
        "{all:?}"
    );
    let (w, r) = (of(&all, Call::Writev), of(&all, Call::Readv));
    assert_eq!(w[0].conn, r[0].conn, "one pipe, one inode");
    assert_eq!(w[0].descriptor.unwrap().channel, Channel::Pipe);
}

/// The daemon marks a process watched when it reads the exec, which may
/// be after the process exited (the exit program clears the byte before
/// the daemon sets it). The next process to get that pid must still start
/// with its parent's flags, not the stale one: its pipes are not copied.
#[test]
fn a_new_process_never_inherits_a_stale_watched_flag_of_its_pid() {
    let mut probes = load_io(observer_common::TLS_CAPTURE_DEFAULT, 65536);
    // A freed pid is taken again by the next fork once ns_last_pid points
    // just below it; another process on the host may fork first, so try
    // until this test's child gets it.
    for _ in 0..100 {
        let pid = freed_pid();
        watch(&mut probes.process_flags, pid); // what a late daemon does
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let mut child = Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import os, sys; sys.stdin.readline(); os.write(1, b'{\"jsonrpc\":\"2.0\",\"id\":1}\\n')",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        if child.id() != pid {
            drop(child.stdin.take());
            child.wait().unwrap();
            continue;
        }
        let flags = probes.process_flags.get(&pid, 0).unwrap();
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.stdout, b"{\"jsonrpc\":\"2.0\",\"id\":1}\n");
        assert_eq!(flags, 0, "pid {pid} started with a stale watched flag");
        let records = drain(&mut probes.plaintext);
        assert!(
            records.iter().all(|r| r.header.tgid != pid),
            "an unwatched process's pipe was copied: {records:?}"
        );
        return;
    }
    panic!("no child got a reused pid in 100 tries");
}

/// The pid of a process that ran and was reaped: free again.
fn freed_pid() -> u32 {
    let mut child = Command::new("/bin/true").spawn().unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    pid
}
