//! Tests of [`super`].
use super::*;

#[test]
fn unknown_key_names_key_line_and_column() {
    let text = "[kernel]\nring_buffer_bytes = 4096\nwakeup_byts = 1\n";
    let err = Config::parse(text, Path::new("/etc/observer/observer.toml")).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("/etc/observer/observer.toml: line 3, column 1:"),
        "{msg}"
    );
    assert!(msg.contains("unknown field `wakeup_byts`"), "{msg}");
    assert!(msg.contains("wakeup_bytes"), "lists valid keys: {msg}");
}

#[test]
fn unknown_section_is_an_error() {
    let err = Config::parse("[kernal]\n", Path::new("x.toml")).unwrap_err();
    assert!(err.to_string().contains("unknown field `kernal`"), "{err}");
}

#[test]
fn bad_ring_buffer_size_names_field() {
    let err =
        Config::parse("[kernel]\nring_buffer_bytes = 5000\n", Path::new("x.toml")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "x.toml: invalid value for `kernel.ring_buffer_bytes`: 5000 is not a power of two >= 4096"
    );
}

#[test]
fn defaults_are_documented_values() {
    let c = Config::parse("", Path::new("x.toml")).unwrap();
    assert_eq!(c.kernel.ring_buffer_bytes, 8 << 20);
    assert_eq!(c.kernel.open_dedup_ms, 1000);
    assert!(c.files.suffixes.iter().any(|s| s == ".gguf"));
}

#[test]
fn repo_config_states_the_built_in_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../observer.toml");
    let repo = Config::load(&path).unwrap();
    let builtin = Config::defaults();
    assert_eq!(
        format!("{:?}", repo.kernel),
        format!("{:?}", builtin.kernel)
    );
    assert_eq!(format!("{:?}", repo.files), format!("{:?}", builtin.files));
    assert_eq!(format!("{:?}", repo.watch), format!("{:?}", builtin.watch));
    assert_eq!(
        format!("{:?}", repo.enrich),
        format!("{:?}", builtin.enrich)
    );
    assert_eq!(
        format!("{:?}", repo.pipeline),
        format!("{:?}", builtin.pipeline)
    );
    assert_eq!(
        format!("{:?}", repo.receipts),
        format!("{:?}", builtin.receipts)
    );
    assert!(repo.agents.is_empty());
    assert_eq!(format!("{:?}", repo.names), format!("{:?}", builtin.names));
    // The one difference: the shipped file points at the installed
    // policies; with no file (or no directory there) the built-in set.
    assert_eq!(builtin.policies_dir, None);
    assert!(builtin.builtin_policies && repo.builtin_policies);
    assert_eq!(
        repo.policies_dir.as_deref(),
        Some(Path::new("/etc/observer/policies"))
    );
    assert_eq!(
        format!("{:?}", repo.forwarding),
        format!("{:?}", builtin.forwarding)
    );
    assert_eq!(
        format!("{:?}", repo.metrics),
        format!("{:?}", builtin.metrics)
    );
    assert!(repo.sinks.is_empty());
    assert_eq!(
        format!("{:?}", repo.control),
        format!("{:?}", builtin.control)
    );
    assert_eq!(
        format!("{:?}", repo.plaintext),
        format!("{:?}", builtin.plaintext)
    );
}

#[test]
fn plaintext_bounds_name_their_field() {
    let bad = [
        (
            "capture_bytes = 0",
            "`plaintext.capture_bytes`: 0 is not in 1..=262144",
        ),
        (
            "capture_bytes = 262145",
            "`plaintext.capture_bytes`: 262145 is not in 1..=262144",
        ),
        (
            "ring_buffer_bytes = 10000",
            "`plaintext.ring_buffer_bytes`: 10000 is not a power of two >= 4096",
        ),
        (
            "rescan_interval_ms = 0",
            "`plaintext.rescan_interval_ms`: must be > 0",
        ),
        (
            "libraries = [\"libssl.so.3\"]",
            "`plaintext.libraries`: libssl.so.3 is not an absolute path",
        ),
    ];
    for (line, want) in bad {
        let text = format!("[plaintext]\nenabled = true\n{line}\n");
        let err = Config::parse(&text, Path::new("o.toml")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("o.toml: invalid value for {want}"),
            "{line}"
        );
    }
    let c = Config::parse(
        "[plaintext]\nenabled = true\ncapture_bytes = 512\n",
        Path::new("o.toml"),
    )
    .unwrap();
    assert!(c.plaintext.enabled);
    assert_eq!(c.plaintext.capture_bytes, 512);
}

#[test]
fn sinks_are_validated_with_their_defaults() {
    let ok = Config::parse(
        "[[sinks]]\nname = \"siem\"\ntype = \"syslog\"\nformat = \"ocsf\"\n[sinks.syslog]\naddress = \"127.0.0.1:6514\"\ntransport = \"tls\"\n[sinks.filter]\nagents = [\"claude\"]\n",
        Path::new("s.toml"),
    )
    .unwrap();
    let s = &ok.sinks[0];
    assert_eq!(s.format, crate::export::Format::Ocsf);
    assert_eq!(
        (
            s.batch_max(),
            s.max_unconfirmed,
            s.retry_initial_ms,
            s.retry_max_ms
        ),
        (500, 50_000, 200, 30_000)
    );
    let err = Config::parse(
        "[[sinks]]\nname = \"a\"\ntype = \"file\"\nbatch_max = 600\nmax_unconfirmed = 599\n[sinks.file]\npath = \"/x\"\n",
        Path::new("s.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("sinks.max_unconfirmed") && err.contains("599") && err.contains("600"),
        "{err}"
    );
    // ClickHouse wants few large inserts: its default batch is larger,
    // and a set batch_max is kept as set.
    let ch = |extra: &str| {
        Config::parse(
            &format!("[[sinks]]\nname = \"f\"\ntype = \"clickhouse\"\n{extra}[sinks.clickhouse]\nurl = \"http://127.0.0.1:8123\"\n"),
            Path::new("s.toml"),
        )
        .unwrap()
        .sinks[0]
            .batch_max()
    };
    assert_eq!((ch(""), ch("batch_max = 700\n")), (2_000, 700));
    let sl = s.syslog.as_ref().unwrap();
    assert_eq!((sl.facility.as_str(), sl.ack_delay_ms), ("local0", 1000));
    let err = Config::parse(
        "[[sinks]]\nname = \"a\"\ntype = \"http\"\n[sinks.syslog]\naddress = \"x:1\"\n",
        Path::new("s.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("sinks.type") && err.contains("[sinks.http]"),
        "{err}"
    );
    let err = Config::parse(
        "[[sinks]]\nname = \"a\"\ntype = \"file\"\n[sinks.file]\npath = \"/x\"\nmax_byte = 5\n",
        Path::new("s.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("line 6") && err.contains("max_byte"), "{err}");
    let err = Config::parse(
        "[metrics]\nlisten = \"0.0.0.0:9464\"\n",
        Path::new("s.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("metrics.listen") && err.contains("loopback"),
        "{err}"
    );
}

#[test]
fn agents_are_validated() {
    let err = Config::parse(
        "[[agents]]\nid = \"observer\"\nexecutables = [\"/x\"]\n",
        Path::new("a.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("a.toml") && err.contains("agents.id") && err.contains("reserved"),
        "{err}"
    );
    let err = Config::parse(
        "[[agents]]\nid = \"a\"\nexecutables = [\"bin/x\"]\n",
        Path::new("a.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("agents.executables"), "{err}");
    let err = Config::parse(
        "[[agents]]\nid = \"a\"\nexecutable = [\"/x\"]\n",
        Path::new("a.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("executable") && err.contains("line 3"),
        "{err}"
    );
    let ok = Config::parse(
        "[receipts]\nmode = \"hash\"\n[[agents]]\nid = \"claude-code\"\nexecutables = [\"/usr/bin/claude\"]\n",
        Path::new("a.toml"),
    )
    .unwrap();
    assert_eq!(ok.agents[0].id, "claude-code");
    assert_eq!(ok.receipts.mode, crate::receipt::payload::Mode::Hash);
}
