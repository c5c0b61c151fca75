//! A TCP or TLS connection to a receiver, with what the syslog sink needs
//! to know about acknowledgement: whether the peer's TCP stack has acked
//! every byte written (the send queue is empty) and whether the connection
//! is still established.
use std::{
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    os::fd::AsRawFd,
    sync::Arc,
    time::{Duration, Instant},
};

use rustls::{pki_types::ServerName, ClientConfig, ClientConnection, StreamOwned};

pub enum Conn {
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("resolving {0}: {1}")]
    Resolve(String, std::io::Error),
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS server name {0:?}: {1}")]
    ServerName(String, String),
    #[error("TLS handshake with {0}: {1}")]
    Handshake(String, std::io::Error),
}

/// `host` of `host:port` (brackets of an IPv6 literal removed).
pub fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A TCP connection to `address` (the first of its addresses that
/// answers), with `timeout` for connecting and for each read and write.
pub fn tcp(address: &str, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let addrs: Vec<_> = address
        .to_socket_addrs()
        .map_err(|e| ConnectError::Resolve(address.into(), e))?
        .collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    let mut sock = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let sock = sock.ok_or_else(|| ConnectError::Connect(address.into(), last))?;
    let setup = |s: &TcpStream| {
        s.set_nodelay(true)?;
        s.set_write_timeout(Some(timeout))?;
        s.set_read_timeout(Some(timeout))
    };
    setup(&sock).map_err(|e| ConnectError::Connect(address.into(), e))?;
    Ok(sock)
}

impl Conn {
    pub fn connect(
        address: &str,
        tls: Option<(&Arc<ClientConfig>, &str)>,
        timeout: Duration,
    ) -> Result<Conn, ConnectError> {
        Conn::over(tcp(address, timeout)?, address, tls)
    }

    /// TLS with `tls` (if given) over `sock`, already connected to
    /// `address` (directly or through a proxy's CONNECT tunnel).
    pub fn over(
        sock: TcpStream,
        address: &str,
        tls: Option<(&Arc<ClientConfig>, &str)>,
    ) -> Result<Conn, ConnectError> {
        let Some((config, name)) = tls else {
            return Ok(Conn::Tcp(sock));
        };
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|e| ConnectError::ServerName(name.into(), e.to_string()))?;
        let conn = ClientConnection::new(config.clone(), server_name)
            .map_err(|e| ConnectError::ServerName(name.into(), e.to_string()))?;
        let mut stream = StreamOwned::new(conn, sock);
        // Handshake now, so a bad certificate is reported as such.
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| ConnectError::Handshake(address.into(), e))?;
        }
        Ok(Conn::Tls(Box::new(stream)))
    }

    /// Sets the socket's read timeout (the HTTP sink shrinks it to what
    /// is left of a response's deadline before every read).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.sock().set_read_timeout(timeout)
    }

    fn sock(&self) -> &TcpStream {
        match self {
            Conn::Tcp(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }

    /// Bytes written but not yet acknowledged by the peer's TCP stack.
    pub fn unacked_bytes(&self) -> std::io::Result<u32> {
        let mut n: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int through the pointer,
        // which points at a live local of that type.
        let rc = unsafe { libc::ioctl(self.sock().as_raw_fd(), libc::TIOCOUTQ, &mut n) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n.max(0) as u32)
    }

    /// Waits until the peer acked every byte written, or `timeout`.
    pub fn wait_acked(&self, timeout: Duration) -> std::io::Result<()> {
        let start = Instant::now();
        loop {
            if self.unacked_bytes()? == 0 {
                return Ok(());
            }
            if !self.established() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection closed with unacknowledged data",
                ));
            }
            if start.elapsed() > timeout {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the receiver did not acknowledge in time",
                ));
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    /// True while the TCP connection is established with no pending error
    /// (a closed or reset peer turns this false).
    pub fn established(&self) -> bool {
        let fd = self.sock().as_raw_fd();
        // SAFETY: tcp_info is plain integers; getsockopt writes at most
        // `len` bytes into it.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                &mut info as *mut _ as *mut libc::c_void,
                &mut len,
            )
        };
        // TCP_ESTABLISHED is 1 in include/net/tcp_states.h.
        rc == 0 && info.tcpi_state == 1 && matches!(self.sock().take_error(), Ok(None))
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}
