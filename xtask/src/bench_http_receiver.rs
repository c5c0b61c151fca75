//! The HTTP receiver of `cargo xtask bench forward`: a keep-alive
//! HTTP/1.1 server in the bench's process that gunzips bodies and counts
//! the records of the HTTP sink (Splunk HEC events, `_bulk` documents).
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

/// An HTTP/1.1 receiver for the HTTP sink: keep-alive, gzip bodies,
/// counts Splunk HEC events (one per line) and `_bulk` documents (every
/// second line), answers 200.
pub struct HttpReceiver {
    pub port: u16,
    pub records: Arc<AtomicU64>,
}

impl HttpReceiver {
    pub fn start() -> anyhow::Result<HttpReceiver> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let records = Arc::new(AtomicU64::new(0));
        let counter = records.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve(conn, &counter) {
                        eprintln!("bench http receiver: {e:#}");
                    }
                });
            }
        });
        Ok(HttpReceiver { port, records })
    }
}

fn serve(conn: TcpStream, records: &AtomicU64) -> anyhow::Result<()> {
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request)? == 0 {
            return Ok(());
        }
        let (mut len, mut gzip) = (0usize, false);
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse()?;
            } else if lower.starts_with("content-encoding:") && lower.contains("gzip") {
                gzip = true;
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        if gzip {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain)?;
            body = plain;
        }
        let lines = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count() as u64;
        let (n, answer) = if request.contains("/_bulk") {
            (lines / 2, r#"{"took":1,"errors":false,"items":[]}"#)
        } else {
            (lines, r#"{"text":"Success","code":0}"#)
        };
        records.fetch_add(n, Ordering::Relaxed);
        write!(
            writer,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        )?;
        writer.flush()?;
    }
}
