//! A private ClickHouse server for `cargo xtask bench fleet`, started as
//! the integration tests start theirs (observer-tests/tests/clickhouse_kit):
//! Debian's clickhouse-server (18.16 or later) with its own config, data
//! directory and a free HTTP port on 127.0.0.1, the shipped schema
//! (deploy/clickhouse/schema.sql) loaded, killed and reaped when dropped.
//! Only the `default` user, without a password, on loopback: the sink and
//! `observerctl fleet` need no credentials flag. Queries go over the same
//! HTTP interface the sink and `observerctl fleet` use.
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use observer_testkit::child::{terminate, ChildGuard};

/// The server binary of the clickhouse-server package.
const SERVER: &str = "/usr/sbin/clickhouse-server";

pub struct ClickHouse {
    dir: PathBuf,
    pub port: u16,
    child: Option<ChildGuard>,
}

impl ClickHouse {
    /// Starts a server in `dir` on a free port, its threads on `cpus`
    /// (see [`crate::bench_kit::on_cpus`]), and loads the schema of
    /// `root`.
    pub fn start(root: &Path, dir: &Path, cpus: usize) -> anyhow::Result<ClickHouse> {
        std::fs::create_dir_all(dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let d = dir.display();
        std::fs::write(
            dir.join("config.xml"),
            format!(
                "<?xml version=\"1.0\"?>\n<yandex>\n\
                 <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/server.err.log</errorlog></logger>\n\
                 <listen_host>127.0.0.1</listen_host>\n<http_port>{port}</http_port>\n\
                 <path>{d}/data/</path>\n<tmp_path>{d}/tmp/</tmp_path>\n\
                 <user_files_path>{d}/user_files/</user_files_path>\n\
                 <format_schema_path>{d}/format_schemas/</format_schema_path>\n\
                 <users_config>{d}/users.xml</users_config>\n\
                 <default_profile>default</default_profile>\n<default_database>default</default_database>\n\
                 <mark_cache_size>5368709120</mark_cache_size>\n<timezone>UTC</timezone>\n</yandex>\n"
            ),
        )?;
        std::fs::write(
            dir.join("users.xml"),
            "<?xml version=\"1.0\"?>\n<yandex><profiles><default/></profiles><users>\
             <default><password></password><networks><ip>127.0.0.1</ip></networks>\
             <profile>default</profile><quota>default</quota></default>\
             </users><quotas><default/></quotas></yandex>\n",
        )?;
        let mut cmd = Command::new(SERVER);
        cmd.arg(format!(
            "--config-file={}",
            dir.join("config.xml").display()
        ));
        let child = crate::bench_kit::on_cpus(&mut cmd, cpus)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("server.stderr"))?)
            .spawn()
            .context("clickhouse-server (apt install clickhouse-server)")?;
        let ch = ClickHouse {
            dir: dir.to_owned(),
            port,
            child: Some(ChildGuard(child)),
        };
        let start = Instant::now();
        while !matches!(ch.try_query("SELECT 1"), Ok((200, _))) {
            if start.elapsed() > Duration::from_secs(60) {
                bail!(
                    "clickhouse-server did not answer on {port}: {}",
                    std::fs::read_to_string(dir.join("server.err.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let schema = root.join("deploy/clickhouse/schema.sql");
        let sql = std::fs::read_to_string(&schema)
            .with_context(|| format!("reading {}", schema.display()))?;
        for statement in sql.split(';').filter(|s| !s.trim().is_empty()) {
            ch.query(statement)?;
        }
        Ok(ch)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// (status, body) of `sql`, or the I/O error.
    pub fn try_query(&self, sql: &str) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(3600)))?;
        // 64-bit integers as JSON numbers (18.16 quotes them by default).
        write!(
            s,
            "POST /?output_format_json_quote_64bit_integers=0 HTTP/1.0\r\nHost: 127.0.0.1\r\n\
             Content-Length: {}\r\n\r\n{sql}",
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

    /// The body of `sql`, or ClickHouse's message as the error.
    pub fn query(&self, sql: &str) -> anyhow::Result<String> {
        let (status, body) = self
            .try_query(sql)
            .with_context(|| format!("ClickHouse on {}", self.port))?;
        if status != 200 {
            bail!("{}: HTTP {status}: {}", sql.trim(), body.trim());
        }
        Ok(body)
    }

    /// A single number (`SELECT count() ...`).
    pub fn count(&self, select: &str) -> anyhow::Result<u64> {
        let body = self.query(select)?;
        body.trim()
            .parse()
            .with_context(|| format!("{select}: not a number: {body}"))
    }

    /// Bytes of the server's data directory (what the fleet store takes).
    pub fn data_bytes(&self) -> u64 {
        fn walk(dir: &Path) -> u64 {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .fold(0, |n, e| match e.file_type() {
                    Ok(t) if t.is_dir() => n + walk(&e.path()),
                    Ok(t) if t.is_file() => n + e.metadata().map_or(0, |m| m.len()),
                    _ => n,
                })
        }
        walk(&self.dir.join("data"))
    }

    /// SIGTERM, and waits for the server to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c.0, Duration::from_secs(30));
        }
    }
}
