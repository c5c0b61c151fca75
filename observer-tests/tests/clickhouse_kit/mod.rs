//! A private ClickHouse server for the tests (Debian's clickhouse-server,
//! 18.16): its own data directory, its own config listening on a free
//! port of 127.0.0.1 (HTTP only), the project's shipped schema
//! (deploy/clickhouse/schema.sql) loaded, a child killed and reaped when
//! dropped. Queries go over the same HTTP interface the sink uses.
// Each test binary of the topic compiles this module and uses part of it.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use observer_testkit::child::{terminate, ChildGuard};
use serde_json::Value;

pub mod expected;

/// The server binary of the clickhouse-server package.
pub const SERVER: &str = "/usr/sbin/clickhouse-server";
/// The user the sink logs in as, and its password.
pub const USER: &str = "observer";
pub const PASSWORD: &str = "ch-test-password-7f3a";

pub struct ClickHouse {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<ChildGuard>,
}

/// The schema the project ships.
pub fn schema_sql() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/clickhouse/schema.sql");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl ClickHouse {
    /// Starts a server in `dir` on a free port and loads the schema.
    pub fn start(dir: &Path) -> ClickHouse {
        // A port nobody listens on right now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(PASSWORD));
        let d = dir.display();
        std::fs::write(
            dir.join("config.xml"),
            format!(
                "<?xml version=\"1.0\"?>\n<yandex>\n\
                 <logger><level>information</level><log>{d}/server.log</log><errorlog>{d}/server.err.log</errorlog></logger>\n\
                 <listen_host>127.0.0.1</listen_host>\n<http_port>{port}</http_port>\n\
                 <path>{d}/data/</path>\n<tmp_path>{d}/tmp/</tmp_path>\n\
                 <user_files_path>{d}/user_files/</user_files_path>\n\
                 <format_schema_path>{d}/format_schemas/</format_schema_path>\n\
                 <users_config>{d}/users.xml</users_config>\n\
                 <default_profile>default</default_profile>\n<default_database>default</default_database>\n\
                 <mark_cache_size>5368709</mark_cache_size>\n<timezone>UTC</timezone>\n</yandex>\n"
            ),
        )
        .unwrap();
        let user = |name: &str, password: &str| {
            format!(
                "<{name}>{password}<networks><ip>127.0.0.1</ip></networks>\
                 <profile>default</profile><quota>default</quota></{name}>"
            )
        };
        std::fs::write(
            dir.join("users.xml"),
            format!(
                "<?xml version=\"1.0\"?>\n<yandex><profiles><default/></profiles><users>{}{}</users><quotas><default/></quotas></yandex>\n",
                user("default", "<password></password>"),
                user(USER, &format!("<password_sha256_hex>{sha}</password_sha256_hex>")),
            ),
        )
        .unwrap();
        let mut ch = ClickHouse {
            dir: dir.to_owned(),
            port,
            child: None,
        };
        ch.restart();
        for statement in schema_sql().split(';').filter(|s| !s.trim().is_empty()) {
            ch.query(statement);
        }
        ch
    }

    /// Starts the server again (same data, same port) and waits until it
    /// answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new(SERVER)
            .arg(format!(
                "--config-file={}",
                self.dir.join("config.xml").display()
            ))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("server.stderr")).unwrap())
            .spawn()
            .expect("clickhouse-server (apt install clickhouse-server)");
        self.child = Some(ChildGuard(child));
        let start = Instant::now();
        while !matches!(self.try_query("SELECT 1"), Ok((200, _))) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "clickhouse-server did not answer on {}: {}",
                self.port,
                std::fs::read_to_string(self.dir.join("server.err.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, and waits for the server to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            assert!(terminate(&mut c.0, Duration::from_secs(30)), "clean exit");
        }
    }

    /// (status, body) of `sql` as the default user, or the I/O error.
    pub fn try_query(&self, sql: &str) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        // 64-bit integers as JSON numbers (18.16 quotes them by default).
        write!(
            s,
            "POST /?output_format_json_quote_64bit_integers=0 HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{sql}",
            sql.len()
        )?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let text = String::from_utf8(raw).map_err(std::io::Error::other)?;
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok((status, body.to_string()))
    }

    /// The body of `sql`; panics with ClickHouse's message on an error.
    pub fn query(&self, sql: &str) -> String {
        let (status, body) = self.try_query(sql).unwrap();
        assert_eq!(status, 200, "{sql}: {body}");
        body
    }

    /// The rows of a SELECT, parsed (`FORMAT JSONEachRow` is appended).
    pub fn rows(&self, select: &str) -> Vec<Value> {
        self.query(&format!("{select} FORMAT JSONEachRow"))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// A single number (`SELECT count() ...`).
    pub fn count(&self, select: &str) -> u64 {
        self.query(select).trim().parse().unwrap()
    }

    /// `[sinks.clickhouse]` settings for this server, logging in as
    /// [`USER`] with its password in `password_file` (written 0600).
    pub fn sink_settings(&self, password_file: &Path) -> String {
        std::fs::write(password_file, format!("{PASSWORD}\n")).unwrap();
        std::fs::set_permissions(
            password_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        format!(
            "url = \"http://127.0.0.1:{}\"\nuser = \"{USER}\"\npassword_file = \"{}\"\nallow_password_over_http = true\n",
            self.port,
            password_file.display()
        )
    }
}
