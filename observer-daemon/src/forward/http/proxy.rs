//! The HTTP proxy an http sink goes through: the sink's `proxy` key, else
//! HTTPS_PROXY (https:// receivers) or HTTP_PROXY (http:// receivers) unless
//! NO_PROXY names the receiver. https:// receivers are reached through a
//! CONNECT tunnel (TLS end to end, the proxy sees only the host name);
//! http:// receivers get the request in absolute form through the proxy.
//! Proxy credentials (`http://user:password@host:port`) are sent as Basic
//! authentication and never appear in a log line or error.
use std::{io::Write, net::TcpStream, time::Duration};

use base64::Engine;

use super::{response, Url};

/// The `proxy` value that means: connect directly, whatever the environment says.
pub const DIRECT: &str = "direct";

#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// host:port of the proxy.
    pub authority: String,
    /// `Basic <base64(user:password)>`, if the URL had credentials.
    authorization: Option<String>,
}

// Hand-written so the credentials never reach a Debug print.
impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("authority", &self.authority)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// %XX escapes of a URL's user information.
fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a bad %-escape in the credentials")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "credentials that are not UTF-8".to_string())
}

impl Proxy {
    /// `http://[user[:password]@]host[:port][/]` (port 80 by default).
    /// Errors name the problem, never the credentials.
    pub fn parse(url: &str) -> Result<Proxy, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("a proxy URL must start with http://")?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        if hostport.is_empty() || hostport.contains('/') {
            return Err("a proxy URL is http://[user:password@]host[:port]".into());
        }
        let authority = match Url::parse(&format!("http://{hostport}/")) {
            Ok(u) => u.authority,
            Err(_) => return Err("a proxy URL is http://[user:password@]host[:port]".into()),
        };
        let authorization = match userinfo {
            Some(u) => {
                let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                let creds = format!("{}:{}", percent_decode(user)?, percent_decode(pass)?);
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(creds)
                ))
            }
            None => None,
        };
        Ok(Proxy {
            authority,
            authorization,
        })
    }

    /// The Proxy-Authorization header line (with CRLF), or "".
    pub fn authorization_header(&self) -> String {
        self.authorization
            .as_ref()
            .map_or(String::new(), |a| format!("Proxy-Authorization: {a}\r\n"))
    }

    /// Opens a CONNECT tunnel to `target` (host:port) over `sock`, a
    /// connection to the proxy. The proxy's answer is read with the same
    /// bounds and deadline as a receiver's.
    pub fn tunnel(
        &self,
        sock: &mut TcpStream,
        target: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let request = format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: observerd/{}\r\n{}\r\n",
            env!("CARGO_PKG_VERSION"),
            self.authorization_header()
        );
        sock.write_all(request.as_bytes())
            .and_then(|()| sock.flush())
            .map_err(|e| format!("proxy {}: {e}", self.authority))?;
        let mut input = response::Input::new(sock, timeout);
        let head = response::read_head(&mut input)
            .map_err(|e| format!("proxy {}: {e}", self.authority))?;
        if !(200..300).contains(&head.status) {
            return Err(format!(
                "proxy {} answered {} to CONNECT {target}{}",
                self.authority,
                head.status,
                if head.status == 407 {
                    " (proxy authentication required: give user:password in the proxy URL)"
                } else {
                    ""
                }
            ));
        }
        // A proxy that speaks first inside the tunnel is not one.
        if input.leftover() > 0 {
            return Err(format!(
                "proxy {} sent data after its CONNECT answer",
                self.authority
            ));
        }
        // Reading the answer shortened the read timeout; the TLS handshake
        // and the requests through the tunnel get the whole one again.
        sock.set_read_timeout(Some(timeout))
            .map_err(|e| format!("proxy {}: {e}", self.authority))
    }
}

/// True when NO_PROXY's comma-separated list names `host` (port `port`):
/// `*`, the host itself, or a domain it is in (`example.com` and
/// `.example.com` both match `a.example.com`), optionally with `:port`.
pub fn no_proxy_matches(list: &str, host: &str, port: &str) -> bool {
    let host = host.to_ascii_lowercase();
    list.split(',').map(str::trim).any(|entry| {
        if entry == "*" {
            return true;
        }
        let entry = entry.trim_start_matches('[');
        let (name, entry_port) = match entry.rsplit_once(':') {
            // An IPv6 literal without a port has several colons.
            Some((n, p)) if !n.contains(':') || n.ends_with(']') => (n, Some(p)),
            _ => (entry, None),
        };
        let name = name
            .trim_end_matches(']')
            .trim_start_matches('.')
            .to_ascii_lowercase();
        if name.is_empty() || entry_port.is_some_and(|p| p != port) {
            return false;
        }
        host == name || host.ends_with(&format!(".{name}"))
    })
}

/// The proxy for `target`: `configured` (the sink's `proxy` key) wins over
/// the environment; `configured = "direct"` means none. `env` looks up a
/// variable (lower case is tried before upper case, like curl).
pub fn select(
    target: &Url,
    configured: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Proxy>, String> {
    match configured {
        Some(DIRECT) => return Ok(None),
        Some(url) => {
            return Proxy::parse(url)
                .map(Some)
                .map_err(|e| format!("proxy: {e}"))
        }
        None => {}
    }
    let var = |name: &str| {
        env(&name.to_ascii_lowercase())
            .or_else(|| env(name))
            .filter(|v| !v.trim().is_empty())
    };
    let name = if target.https {
        "HTTPS_PROXY"
    } else {
        "HTTP_PROXY"
    };
    let Some(url) = var(name) else {
        return Ok(None);
    };
    let port = target.authority.rsplit_once(':').map_or("", |(_, p)| p);
    if var("NO_PROXY").is_some_and(|list| no_proxy_matches(&list, &target.host, port)) {
        return Ok(None);
    }
    Proxy::parse(url.trim())
        .map(Some)
        .map_err(|e| format!("{name} (from the environment): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn parses_proxy_urls_without_leaking_credentials() {
        let p = Proxy::parse("http://alice:p%40ss@proxy.corp:3128/").unwrap();
        assert_eq!(p.authority, "proxy.corp:3128");
        // base64("alice:p@ss")
        assert_eq!(
            p.authorization_header(),
            "Proxy-Authorization: Basic YWxpY2U6cEBzcw==\r\n"
        );
        assert!(!format!("{p:?}").contains("YWxp"));
        assert_eq!(Proxy::parse("http://proxy").unwrap().authority, "proxy:80");
        assert_eq!(
            Proxy::parse("http://proxy").unwrap().authorization_header(),
            ""
        );
        for bad in [
            "https://secret@proxy:1",
            "socks5://proxy:1",
            "http://secret@",
            "http://u:secret@h/x",
        ] {
            let e = Proxy::parse(bad).unwrap_err();
            assert!(!e.contains("secret"), "{e}");
        }
    }

    #[test]
    fn config_wins_over_the_environment_and_no_proxy_applies_to_the_environment() {
        let https = Url::parse("https://siem.corp.example:8088/x").unwrap();
        let http = Url::parse("http://10.0.0.5:9200/_bulk").unwrap();
        let vars = [
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:2"),
            ("HTTP_PROXY", "http://plain:3"),
        ];
        let got = |u: &Url, c: Option<&str>, v: &[(&str, &str)]| {
            select(u, c, env(v)).unwrap().map(|p| p.authority)
        };
        assert_eq!(got(&https, None, &vars).as_deref(), Some("lower:2"));
        assert_eq!(got(&http, None, &vars).as_deref(), Some("plain:3"));
        assert_eq!(
            got(&https, Some("http://cfg:4"), &vars).as_deref(),
            Some("cfg:4")
        );
        assert_eq!(got(&https, Some(DIRECT), &vars), None);
        assert_eq!(got(&https, None, &[]), None);
        for no in [
            "corp.example",
            ".corp.example",
            "siem.corp.example:8088",
            "*",
            "x, CORP.example",
        ] {
            let v = [("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", no)];
            assert_eq!(got(&https, None, &v), None, "{no}");
            // The configured proxy is used whatever NO_PROXY says.
            assert_eq!(
                got(&https, Some("http://cfg:4"), &v).as_deref(),
                Some("cfg:4")
            );
        }
        for no in ["example.org", "siem.corp.example:443", "ample", "10.0.0.50"] {
            let v = [
                ("HTTPS_PROXY", "http://p:1"),
                ("HTTP_PROXY", "http://p:1"),
                ("no_proxy", no),
            ];
            assert_eq!(got(&https, None, &v).as_deref(), Some("p:1"), "{no}");
        }
        let v = [("HTTP_PROXY", "http://p:1"), ("NO_PROXY", "10.0.0.5")];
        assert_eq!(got(&http, None, &v), None);
        let e = select(
            &https,
            None,
            env(&[("HTTPS_PROXY", "https://u:secret@p:1")]),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "HTTPS_PROXY (from the environment): a proxy URL must start with http://"
        );
    }
}
