//! File rules, registry matchers, chain ids, and the cost of the no-match
//! path.
use super::*;

#[test]
fn file_rules() {
    let p = default_policy();
    let by = |comm: &str, agent: Option<&str>, path: &str| {
        hits(
            &p,
            &event(
                process(comm, &format!("/usr/bin/{comm}"), &[comm], agent),
                open(path),
            ),
        )
        .into_iter()
        .map(|h| (h.0, h.1))
        .collect::<Vec<_>>()
    };
    assert_eq!(
        by("python3", None, "/srv/m/llama.gguf"),
        vec![("model-weights-unregistered".into(), RiskClass::Medium)]
    );
    assert_eq!(by("python3", Some("a"), "/srv/m/llama.gguf"), vec![]);
    assert_eq!(by("python3", None, "/srv/m/llama.bin"), vec![]);
    assert_eq!(
        by("ollama", None, "/home/u/.ollama/models/blobs/sha256-1234"),
        vec![("model-weights-unregistered".into(), RiskClass::Medium)]
    );
    assert_eq!(
        by("cat", None, "/home/u/.claude/.credentials.json"),
        vec![("ai-credential-read-by-non-owner".into(), RiskClass::High)]
    );
    assert_eq!(
        by("claude", None, "/home/u/.claude/.credentials.json"),
        vec![]
    );
    assert_eq!(
        by("claude", Some("cc"), "/home/u/.ssh/id_ed25519"),
        vec![("agent-reads-other-secrets".into(), RiskClass::High)]
    );
    assert_eq!(by("ssh", None, "/home/u/.ssh/id_ed25519"), vec![]);
    assert_eq!(
        by(
            "python3",
            None,
            "/usr/lib/python3/site-packages/openai/__init__.py"
        ),
        vec![("ai-sdk-loaded".into(), RiskClass::Low)]
    );
    assert_eq!(
        by("python3", None, "/dev/nvidia-uvm"),
        vec![("gpu-compute-unregistered".into(), RiskClass::Low)]
    );
}

#[test]
fn registry_matchers() {
    let dir = copy_with("agents.toml", |t| {
        format!(
            "{t}\n[[agent]]\nid = \"node-agent\"\ninterpreters = [\"node\"]\nscripts = [\"/opt/agent/*.js\"]\n\n\
             [[agent]]\nid = \"by-hash\"\nsha256 = [\"{}\"]\n\n\
             [[agent]]\nid = \"by-glob\"\nexecutables = [\"/opt/*/bin/agent\"]\n\n\
             [[agent]]\nid = \"by-unit\"\nunits = [\"agent-*.service\"]\n\n\
             [[agent]]\nid = \"by-argv\"\nargv = [\"^python3 -m my_agent( |$)\"]\n",
            "cd".repeat(32)
        )
    });
    let p = Policy::load(dir.path(), &[]).unwrap();
    let m = |f: agents::ImageFacts| p.registry.match_image(&f).map(|a| a.to_string());
    let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let node = argv(&["node", "/opt/agent/main.js"]);
    assert_eq!(
        m(agents::ImageFacts {
            exe: Some("/usr/bin/node"),
            argv: &node,
            ..Default::default()
        })
        .as_deref(),
        Some("node-agent")
    );
    assert_eq!(
        m(agents::ImageFacts {
            exe: Some("/usr/bin/python3"),
            argv: &node,
            ..Default::default()
        }),
        None,
        "wrong interpreter"
    );
    let hash = format!("sha256:{}", "cd".repeat(32));
    assert_eq!(
        m(agents::ImageFacts {
            sha256: Some(&hash),
            ..Default::default()
        })
        .as_deref(),
        Some("by-hash")
    );
    assert_eq!(
        m(agents::ImageFacts {
            exe: Some("/opt/x/bin/agent"),
            ..Default::default()
        })
        .as_deref(),
        Some("by-glob")
    );
    assert_eq!(
        m(agents::ImageFacts {
            unit: Some("agent-7.service"),
            ..Default::default()
        })
        .as_deref(),
        Some("by-unit")
    );
    let py = argv(&["python3", "-m", "my_agent"]);
    assert_eq!(
        m(agents::ImageFacts {
            argv: &py,
            ..Default::default()
        })
        .as_deref(),
        Some("by-argv")
    );
    assert_eq!(
        m(agents::ImageFacts {
            exe: Some("/usr/bin/ls"),
            ..Default::default()
        }),
        None
    );
    assert_eq!(
        p.kernel.watched_executables,
        Vec::<String>::new(),
        "globs are not pushed"
    );
}

#[test]
fn unregistered_chain_id_is_16_hex() {
    assert_eq!(
        unregistered_agent_id(Some(&format!("sha256:{}", "0123456789abcdef".repeat(4)))),
        "unregistered:0123456789abcdef"
    );
    assert_eq!(unregistered_agent_id(None), "unregistered:0000000000000000");
}

#[test]
fn no_match_path_is_cheap() {
    let p = default_policy();
    let ev = event(
        process("make", "/usr/bin/make", &["make", "-j8"], None),
        open("/usr/include/stdio.h"),
    );
    let per_event = bench_evaluate(&p, &ev, 20_000);
    // Not a speed assertion (that is `cargo xtask bench`): the helper runs
    // and reports a finite cost.
    assert!(per_event.as_nanos() > 0);
}

/// Counts this thread's heap allocations, to prove the no-match path
/// allocates nothing.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: CountingAlloc = CountingAlloc;

#[test]
fn the_no_match_path_allocates_nothing() {
    let p = default_policy();
    let events = [
        event(
            process("make", "/usr/bin/make", &["make", "-j8"], None),
            open("/usr/include/stdio.h"),
        ),
        event(
            process("gcc", "/usr/bin/gcc", &["gcc", "-c", "x.c"], None),
            exec(&["gcc", "-c", "x.c"]),
        ),
        event(
            process(
                "curl",
                "/usr/bin/curl",
                &["curl", "https://example.com"],
                None,
            ),
            Detail::Connect(net(
                "93.184.216.34",
                443,
                &[("example.com", NameSource::Sni)],
            )),
        ),
        event(
            process("nginx", "/usr/sbin/nginx", &["nginx"], None),
            listen("0.0.0.0", 80),
        ),
    ];
    let mut argv = String::new();
    let mut out = Vec::new();
    // Warm up: the argv buffer grows once, the regex caches fill.
    for ev in &events {
        p.evaluate(ev, &mut argv, &mut out);
    }
    assert!(out.is_empty());
    let before = ALLOCATIONS.with(|c| c.get());
    for _ in 0..100 {
        for ev in &events {
            p.evaluate(ev, &mut argv, &mut out);
        }
    }
    assert_eq!(ALLOCATIONS.with(|c| c.get()) - before, 0);
    assert!(out.is_empty());
}
