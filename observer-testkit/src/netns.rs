//! A network namespace with a real DNS server (dnsmasq) and a real TLS
//! server (`openssl s_server`) whose certificate comes from a test CA: the
//! AI API names resolve, inside the namespace only, to local addresses.
//! Each test uses its own subnet so concurrently running daemons (which
//! see every socket on the host) cannot mix up their names.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::{unique, write_file, WAIT};

/// A child process killed (and reaped) when the guard drops.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A network namespace whose `lo` also holds `<subnet>.1`, `.2` and `.3`
/// (this kernel has no dummy interfaces; local addresses on lo behave
/// the same for sockets), and /etc/netns files pointing its resolver
/// at `<subnet>.1`. Deleted, with its files, on drop.
pub struct Netns {
    pub name: String,
    etc: PathBuf,
}

pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    pub fn new(subnet: &str) -> Netns {
        let name = unique("names");
        let etc = PathBuf::from("/etc/netns").join(&name);
        run(Command::new("ip").args(["netns", "add", &name]));
        // From here on the guard deletes whatever was made.
        let ns = Netns { name, etc };
        std::fs::create_dir_all(&ns.etc).expect("mkdir /etc/netns/<ns>");
        write_file(
            &ns.etc.join("resolv.conf"),
            &format!("nameserver {subnet}.1\n"),
        );
        write_file(&ns.etc.join("hosts"), "127.0.0.1 localhost\n");
        let n = ns.name.as_str();
        run(Command::new("ip").args(["-n", n, "link", "set", "lo", "up"]));
        for host in 1..=3 {
            run(Command::new("ip").args([
                "-n",
                n,
                "addr",
                "add",
                &format!("{subnet}.{host}/24"),
                "dev",
                "lo",
            ]));
        }
        run(Command::new("ip").args([
            "-n",
            n,
            "addr",
            "add",
            &format!("{}::1/64", v6_prefix(subnet)),
            "dev",
            "lo",
            "nodad",
        ]));
        ns
    }

    /// `ip netns exec <ns> <args>`: ip execs the program, so the child's
    /// pid is the program's.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    /// Waits until something listens on `port` (`proto` "t" or "u").
    pub fn wait_listening(&self, proto: &str, port: u16) {
        let start = Instant::now();
        loop {
            let out = self
                .command(&["ss", &format!("-l{proto}nH"), &format!("sport = :{port}")])
                .output()
                .expect("ss");
            if !out.stdout.is_empty() {
                return;
            }
            assert!(start.elapsed() < WAIT, "nothing listens on {proto} {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}

/// The namespace's IPv6 prefix: fd00: plus the subnet's last two octets.
pub fn v6_prefix(subnet: &str) -> String {
    let parts: Vec<&str> = subnet.split('.').collect();
    format!("fd00:{}:{}", parts[1], parts[2])
}

/// A test CA and a server certificate for the AI API names and `ip`.
pub fn make_certs(dir: &Path, ip: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-x509"])
        .args(ec)
        .args(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"])
        .args(["-subj", "/CN=observer names test CA"]));
    run(Command::new("openssl")
        .current_dir(dir)
        .arg("req")
        .args(ec)
        .args(["-keyout", "server.key", "-out", "server.csr"])
        .args(["-subj", "/CN=api.openai.com"]));
    write_file(
        &dir.join("san.ext"),
        &format!(
            "subjectAltName=DNS:api.openai.com,DNS:api.anthropic.com,DNS:huggingface.co,IP:{ip}\n"
        ),
    );
    run(Command::new("openssl").current_dir(dir).args([
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]));
}

/// dnsmasq answering api.openai.com and huggingface.co (a model hub) with
/// `.1` and api.anthropic.com with a CNAME to edge.anthropic-cdn.test,
/// which has `.3`.
pub fn start_dnsmasq(ns: &Netns, dir: &Path, subnet: &str) -> Proc {
    let child = ns
        .command(&[
            "dnsmasq",
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            &format!("--listen-address={subnet}.1"),
            "--user=root",
            &format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
            &format!("--log-facility={}", dir.join("dnsmasq.log").display()),
            "--log-queries",
            &format!("--address=/api.openai.com/{subnet}.1"),
            &format!("--address=/huggingface.co/{subnet}.1"),
            &format!("--host-record=edge.anthropic-cdn.test,{subnet}.3"),
            "--cname=api.anthropic.com,edge.anthropic-cdn.test",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dnsmasq");
    let p = Proc(child);
    ns.wait_listening("u", 53);
    p
}

pub fn start_tls_server(ns: &Netns, dir: &Path) -> Proc {
    let child = ns
        .command(&[
            "openssl",
            "s_server",
            "-accept",
            "443",
            "-cert",
            "server.pem",
            "-key",
            "server.key",
            "-www",
            "-quiet",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn openssl s_server");
    let p = Proc(child);
    ns.wait_listening("t", 443);
    p
}

/// Runs curl in the namespace with `extra` arguments; returns its pid.
pub fn curl_with(ns: &Netns, dir: &Path, extra: &[&str], url: &str) -> u32 {
    run_curl(ns, dir, "curl", extra, url)
}

/// Runs `program` (a curl) in the namespace; returns its pid.
pub fn run_curl(ns: &Netns, dir: &Path, program: &str, extra: &[&str], url: &str) -> u32 {
    let mut args = vec![program, "-sS", "--cacert", "ca.pem", "-o", "/dev/null"];
    args.extend_from_slice(extra);
    args.push(url);
    let child = ns
        .command(&args)
        .current_dir(dir)
        .spawn()
        .expect("spawn curl");
    let pid = child.id();
    let out = child.wait_with_output().expect("curl");
    assert!(out.status.success(), "curl {url}: {}", out.status);
    pid
}
