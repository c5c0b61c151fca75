//! Checks of `[[sinks]]` that need the sinks' own parsers (syslog
//! facilities, HTTP and proxy URLs). Kept out of `config` so the section
//! types stay a leaf that the sinks import.
use super::config::{ClickHouseConfig, HttpConfig, SinkEntry, SinkType, TlsConfig};
use crate::export::Format;

/// Checks a sink list; returns (field, reason) for the first problem.
pub fn sinks(sinks: &[SinkEntry]) -> Result<(), (&'static str, String)> {
    let mut names = std::collections::HashSet::new();
    for s in sinks {
        let ok = !s.name.is_empty()
            && s.name.len() <= 64
            && s.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
        if !ok {
            return Err((
                "sinks.name",
                format!("{:?}: 1..64 letters, digits, '-' or '_'", s.name),
            ));
        }
        if !names.insert(s.name.as_str()) {
            return Err(("sinks.name", format!("{:?} is used twice", s.name)));
        }
        let batch_max = s.batch_max();
        if batch_max == 0 || s.retry_initial_ms == 0 || s.retry_max_ms < s.retry_initial_ms {
            return Err((
                "sinks.batch_max",
                format!(
                    "sink {:?}: batch_max and retry_initial_ms must be > 0, retry_max_ms >= retry_initial_ms",
                    s.name
                ),
            ));
        }
        if s.max_unconfirmed < batch_max {
            return Err((
                "sinks.max_unconfirmed",
                format!(
                    "sink {:?}: max_unconfirmed ({}) must be at least batch_max ({})",
                    s.name, s.max_unconfirmed, batch_max
                ),
            ));
        }
        for r in &s.filter.risks {
            if !["low", "medium", "high", "unknown"].contains(&r.as_str()) {
                return Err((
                    "sinks.filter.risks",
                    format!(
                        "sink {:?}: {r:?} is not low, medium, high or unknown",
                        s.name
                    ),
                ));
            }
        }
        let (has, table) = match s.kind {
            SinkType::Syslog => (s.syslog.is_some(), "syslog"),
            SinkType::Http => (s.http.is_some(), "http"),
            SinkType::File => (s.file.is_some(), "file"),
            SinkType::Clickhouse => (s.clickhouse.is_some(), "clickhouse"),
        };
        let tables = [
            s.syslog.is_some(),
            s.http.is_some(),
            s.file.is_some(),
            s.clickhouse.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if !has || tables != 1 {
            return Err((
                "sinks.type",
                format!(
                    "sink {:?} of type {table} needs exactly one settings table, [sinks.{table}]",
                    s.name
                ),
            ));
        }
        if let Some(sl) = &s.syslog {
            if super::syslog::facility_code(&sl.facility).is_none() {
                return Err((
                    "sinks.syslog.facility",
                    format!("sink {:?}: unknown facility {:?}", s.name, sl.facility),
                ));
            }
            if sl.address.rsplit_once(':').is_none() {
                return Err((
                    "sinks.syslog.address",
                    format!("sink {:?}: {:?} is not host:port", s.name, sl.address),
                ));
            }
            check_tls(&s.name, &sl.tls)?;
        }
        if let Some(h) = &s.http {
            if let Err(e) = super::http::Url::parse(&h.url) {
                return Err(("sinks.http.url", format!("sink {:?}: {e}", s.name)));
            }
            check_tls(&s.name, &h.tls)?;
            check_http_secrets(&s.name, h)?;
        }
        if let Some(c) = &s.clickhouse {
            check_clickhouse(s, c)?;
        }
        if let Some(f) = &s.file {
            if f.max_bytes < 4096 || f.max_files == 0 {
                return Err((
                    "sinks.file.max_bytes",
                    format!(
                        "sink {:?}: max_bytes must be >= 4096 and max_files >= 1",
                        s.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_tls(name: &str, t: &TlsConfig) -> Result<(), (&'static str, String)> {
    if t.cert_file.is_some() != t.key_file.is_some() {
        return Err((
            "sinks.tls.cert_file",
            format!("sink {name:?}: cert_file and key_file go together"),
        ));
    }
    Ok(())
}

/// A token never goes over plain http:// unless the sink opts in; a proxy
/// URL must parse (its error never shows the credentials).
fn check_http_secrets(name: &str, h: &HttpConfig) -> Result<(), (&'static str, String)> {
    if h.token_file.is_some() && h.url.starts_with("http://") && !h.allow_token_over_http {
        return Err((
            "sinks.http.token_file",
            format!(
                "sink {name:?}: a token would be sent in the clear to {:?}, to whatever listens there; use https://, or set allow_token_over_http = true in [sinks.http] to accept that",
                h.url
            ),
        ));
    }
    check_proxy(name, h.proxy.as_deref(), "sinks.http.proxy")
}

/// A proxy URL must parse (its error never shows the credentials).
fn check_proxy(
    name: &str,
    proxy: Option<&str>,
    field: &'static str,
) -> Result<(), (&'static str, String)> {
    if let Some(p) = proxy.filter(|p| *p != super::http::proxy::DIRECT) {
        if let Err(e) = super::http::proxy::Proxy::parse(p) {
            return Err((field, format!("sink {name:?}: {e}, or \"direct\"")));
        }
    }
    Ok(())
}

/// A clickhouse sink stores the whole log as the store holds it: `fleet
/// verify` checks every receipt and reports what is missing, so a filter
/// or another record format would only make it report gaps.
fn check_clickhouse(s: &SinkEntry, c: &ClickHouseConfig) -> Result<(), (&'static str, String)> {
    let name = &s.name;
    let f = &s.filter;
    if !(f.agents.is_empty() && f.actions.is_empty() && f.risks.is_empty()) {
        return Err((
            "sinks.filter",
            format!(
                "sink {name:?}: a clickhouse sink forwards every receipt (fleet verify would report the filtered ones as missing); remove [sinks.filter]"
            ),
        ));
    }
    if s.format != Format::Receipt {
        return Err((
            "sinks.format",
            format!(
                "sink {name:?}: a clickhouse sink stores receipts as signed; format must be \"receipt\" (the default)"
            ),
        ));
    }
    match super::http::Url::parse(&c.url) {
        Err(e) => return Err(("sinks.clickhouse.url", format!("sink {name:?}: {e}"))),
        Ok(u) if u.path.contains('#') => {
            return Err((
                "sinks.clickhouse.url",
                format!("sink {name:?}: {:?} has a fragment", c.url),
            ))
        }
        Ok(_) => {}
    }
    let ident = |v: &str| {
        !v.is_empty()
            && v.len() <= 64
            && !v.as_bytes()[0].is_ascii_digit()
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    if !ident(&c.database) {
        return Err((
            "sinks.clickhouse.database",
            format!(
                "sink {name:?}: {:?}: 1..64 letters, digits or '_', not starting with a digit",
                c.database
            ),
        ));
    }
    if let Some(u) = &c.user {
        // Basic authentication joins user and password with ':'.
        if u.is_empty() || u.contains(':') || u.chars().any(char::is_control) {
            return Err((
                "sinks.clickhouse.user",
                format!("sink {name:?}: {u:?}: not empty, no ':' and no control characters"),
            ));
        }
    }
    if c.password_file.is_some() && c.url.starts_with("http://") && !c.allow_password_over_http {
        return Err((
            "sinks.clickhouse.password_file",
            format!(
                "sink {name:?}: the password would be sent in the clear to {:?}, to whatever listens there; use https://, or set allow_password_over_http = true in [sinks.clickhouse] to accept that",
                c.url
            ),
        ));
    }
    check_proxy(name, c.proxy.as_deref(), "sinks.clickhouse.proxy")?;
    check_tls(name, &c.tls)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn http_sink(extra: &str) -> String {
        format!(
            "[[sinks]]\nname = \"hec\"\ntype = \"http\"\n[sinks.http]\nencoding = \"splunk_hec\"\n{extra}"
        )
    }

    fn error(text: &str) -> String {
        Config::parse(text, Path::new("/etc/observer/observer.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_token_over_plain_http_needs_the_opt_in() {
        let plain = "url = \"http://10.1.2.3:8088/services/collector\"\ntoken_file = \"/etc/observer/hec.token\"\n";
        assert_eq!(
            error(&http_sink(plain)),
            "/etc/observer/observer.toml: invalid value for `sinks.http.token_file`: sink \"hec\": \
             a token would be sent in the clear to \"http://10.1.2.3:8088/services/collector\", to whatever \
             listens there; use https://, or set allow_token_over_http = true in [sinks.http] to accept that"
        );
        let path = Path::new("/x.toml");
        let opted_in = http_sink(&format!("{plain}allow_token_over_http = true\n"));
        assert!(Config::parse(&opted_in, path).is_ok());
        // No token, or https://: nothing to refuse.
        let no_token = http_sink("url = \"http://10.1.2.3:8088/x\"\n");
        assert!(Config::parse(&no_token, path).is_ok());
        let https = http_sink("url = \"https://siem:8088/x\"\ntoken_file = \"/t\"\n");
        assert!(Config::parse(&https, path).is_ok());
    }

    #[test]
    fn a_bad_proxy_is_refused_without_its_password() {
        let text =
            http_sink("url = \"https://siem:8088/x\"\nproxy = \"https://u:hunter2@proxy:3128\"\n");
        assert_eq!(
            error(&text),
            "/etc/observer/observer.toml: invalid value for `sinks.http.proxy`: sink \"hec\": \
             a proxy URL must start with http://, or \"direct\""
        );
        for ok in ["http://u:p@proxy:3128", "direct"] {
            let text = http_sink(&format!(
                "url = \"https://siem:8088/x\"\nproxy = \"{ok}\"\n"
            ));
            assert!(Config::parse(&text, Path::new("/x.toml")).is_ok(), "{ok}");
        }
    }

    fn clickhouse_sink(extra: &str, settings: &str) -> String {
        format!(
            "[[sinks]]\nname = \"fleet\"\ntype = \"clickhouse\"\n{extra}[sinks.clickhouse]\n{settings}"
        )
    }

    #[test]
    fn clickhouse_settings_are_checked_with_the_field_named() {
        let url = "url = \"http://ch.example:8123\"\n";
        assert!(Config::parse(&clickhouse_sink("", url), Path::new("/x.toml")).is_ok());
        let cases = [
            (
                clickhouse_sink("", &format!("{url}database = \"obs-1\"\n")),
                "`sinks.clickhouse.database`: sink \"fleet\": \"obs-1\": 1..64 letters, digits or '_', not starting with a digit",
            ),
            (
                clickhouse_sink("", "url = \"tcp://ch:9000\"\n"),
                "`sinks.clickhouse.url`: sink \"fleet\": \"tcp://ch:9000\": only http:// and https:// URLs",
            ),
            (
                clickhouse_sink("", &format!("{url}user = \"a:b\"\n")),
                "`sinks.clickhouse.user`: sink \"fleet\": \"a:b\": not empty, no ':' and no control characters",
            ),
            (
                clickhouse_sink("", &format!("{url}password_file = \"/etc/observer/ch.pw\"\n")),
                "`sinks.clickhouse.password_file`: sink \"fleet\": the password would be sent in the clear to \"http://ch.example:8123\"",
            ),
            (
                clickhouse_sink("[sinks.filter]\nrisks = [\"high\"]\n", url),
                "`sinks.filter`: sink \"fleet\": a clickhouse sink forwards every receipt",
            ),
            (
                clickhouse_sink("format = \"ocsf\"\n", url),
                "`sinks.format`: sink \"fleet\": a clickhouse sink stores receipts as signed",
            ),
            (
                clickhouse_sink("", &format!("{url}proxy = \"https://u:hunter2@p:3128\"\n")),
                "`sinks.clickhouse.proxy`: sink \"fleet\": a proxy URL must start with http://, or \"direct\"",
            ),
        ];
        for (text, want) in cases {
            let e = error(&text);
            assert!(
                e.starts_with(&format!(
                    "/etc/observer/observer.toml: invalid value for {want}"
                )),
                "{e}"
            );
            assert!(!e.contains("hunter2"), "{e}");
        }
        // Over https://, or opted in, a password file is fine.
        let https = clickhouse_sink(
            "",
            "url = \"https://ch:8443\"\nuser = \"observer\"\npassword_file = \"/p\"\n",
        );
        assert!(Config::parse(&https, Path::new("/x.toml")).is_ok());
        // A key the sink does not know names its line.
        let e = error(&clickhouse_sink("", &format!("{url}table = \"r\"\n")));
        assert!(e.contains("line 6") && e.contains("table"), "{e}");
        // The settings table must match the type.
        let e =
            error("[[sinks]]\nname = \"f\"\ntype = \"clickhouse\"\n[sinks.file]\npath = \"/x\"\n");
        assert!(
            e.contains("needs exactly one settings table, [sinks.clickhouse]"),
            "{e}"
        );
    }
}
