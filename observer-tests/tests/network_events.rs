//! connect, accept, bind and listen from the real kernel.
// Test code: an unwrap that fails is a test that fails, with its message.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};

use observer_testkit::*;

fn check_connect(listen_on: &str, family: &str) {
    let mut d = Daemon::start(&config(&[], ""));
    let listener = TcpListener::bind(listen_on).expect("bind");
    let port = listener.local_addr().unwrap().port();
    let stream = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let local_port = stream.local_addr().unwrap().port();
    let (_accepted, _) = listener.accept().expect("accept");
    let me = std::process::id();
    let ip = listener.local_addr().unwrap().ip().to_string();
    let ev = d.wait_for(|r| {
        is_event(r, "connect") && r["connect"]["remote_port"] == port && r["process"]["pid"] == me
    });
    let c = &ev["connect"];
    assert_eq!(c["result"], 0);
    assert_eq!(c["error"], serde_json::Value::Null);
    assert_eq!(c["family"], family);
    assert_eq!(c["socket_type"], "stream");
    assert_eq!(c["remote_addr"], ip.as_str());
    assert_eq!(c["local_addr"], ip.as_str());
    assert_eq!(c["local_port"], local_port);
    let acc = d.wait_for(|r| {
        is_event(r, "accept") && r["accept"]["local_port"] == port && r["process"]["pid"] == me
    });
    assert_eq!(
        acc["accept"]["remote_port"], local_port,
        "the peer is the connecting socket"
    );
    assert_eq!(acc["accept"]["remote_addr"], ip.as_str());
    assert_eq!(acc["accept"]["family"], family);
}

#[test]
fn connect_and_accept_on_ipv4_loopback() {
    check_connect("127.0.0.1:0", "inet");
}

#[test]
fn connect_and_accept_on_ipv6_loopback() {
    check_connect("[::1]:0", "inet6");
}

#[test]
fn refused_connect_is_recorded_with_econnrefused() {
    let mut d = Daemon::start(&config(&[], ""));
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = TcpStream::connect(("127.0.0.1", port)).expect_err("nothing listens");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let me = std::process::id();
    let ev = d.wait_for(|r| {
        is_event(r, "connect")
            && r["connect"]["remote_port"] == port
            && r["process"]["pid"] == me
            && r["connect"]["result"] != 0
    });
    assert_eq!(ev["connect"]["result"], -111);
    assert_eq!(ev["connect"]["error"], "ECONNREFUSED");
    assert_eq!(ev["connect"]["remote_addr"], "127.0.0.1");
}

#[test]
fn listen_by_a_named_process_is_recorded_with_its_port() {
    let mut d = Daemon::start(&config(&[], ""));
    // The thread name becomes the task's comm, which is what the kernel reports.
    let listener = std::thread::Builder::new()
        .name("obs-inference".into())
        .spawn(|| TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))).expect("bind"))
        .unwrap()
        .join()
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let ev = d.wait_for(|r| is_event(r, "listen") && r["listen"]["local_port"] == port);
    assert_eq!(ev["process"]["comm"], "obs-inference");
    assert_eq!(ev["process"]["pid"], std::process::id());
    assert_eq!(
        ev["process"]["exe"],
        std::env::current_exe().unwrap().display().to_string()
    );
    assert_eq!(ev["listen"]["local_addr"], "::");
    assert_eq!(ev["listen"]["family"], "inet6");
    assert_eq!(ev["listen"]["result"], 0);
    let bind = d.wait_for(|r| is_event(r, "bind") && r["process"]["comm"] == "obs-inference");
    assert_eq!(
        bind["bind"]["local_port"], 0,
        "bind asked for an ephemeral port"
    );
    assert_eq!(bind["bind"]["result"], 0);
}
