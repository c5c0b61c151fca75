//! The truncated-argument rule: an argument the capture cut loses its last
//! value when that could be the start of a secret, never keeps a prefix.

use super::*;

/// An argument of exactly the captured length (255 bytes) ending in `end`.
fn cut_arg(end: &str) -> String {
    let filler = "echo ".repeat(60);
    let keep = observer_common::ARG_CHUNK - 1 - end.len();
    format!("{}{end}", &filler[..keep])
}

fn captured(args: &[&str], truncated: bool) -> Vec<String> {
    redact_captured_argv(&strings(args), truncated)
}

#[test]
fn a_cut_token_prefix_is_dropped() {
    for end in [
        " sk-pr",
        " ghp_aB3d",
        " AKIA12",
        " gsk_aB3dE",
        " glpat-x",
        " xo",
        " eyJhbGci",
    ] {
        let arg = cut_arg(end);
        assert_eq!(arg.len(), 255);
        let out = captured(&["sh", "-c", &arg], true);
        let kept = &arg[..=(arg.len() - end.len())];
        assert_eq!(out[2], format!("{kept}{REDACTED}"), "end {end:?}");
    }
}

#[test]
fn a_cut_value_after_a_name_or_in_a_url_is_dropped() {
    let rows = [
        // Random-looking text after `=` of a name no rule knows.
        (" X=aB3dE5gH7jK9mN1pQ2", " X=[REDACTED]"),
        // A URL cut inside its authority: user and password may be there.
        (" https://bob:hunte", " https://[REDACTED]"),
        (" https://aB3dE5", " https://[REDACTED]"),
        // A secret name's value is masked by the name rules, cut or not.
        (" TOKEN=ab", " TOKEN=[REDACTED]"),
        (" --password hu", " --password [REDACTED]"),
    ];
    for (end, stored_end) in rows {
        let arg = cut_arg(end);
        let out = captured(&["bash", "-c", &arg], true);
        let kept = &arg[..arg.len() - end.len()];
        assert_eq!(out[2], format!("{kept}{stored_end}"), "end {end:?}");
    }
}

#[test]
fn a_cut_argument_of_ordinary_words_is_kept() {
    for end in [
        " done",
        " /usr/lib/x86_64-linux-gnu",
        " https://a.example/path",
        " s",
    ] {
        let arg = cut_arg(end);
        assert_eq!(captured(&["sh", "-c", &arg], true)[2], arg, "end {end:?}");
    }
}

#[test]
fn only_a_cut_argument_of_a_truncated_exec_loses_its_end() {
    let arg = cut_arg(" sk-pr");
    // Not truncated: a complete argument that happens to end like this.
    assert_eq!(captured(&["sh", "-c", &arg], false)[2], arg);
    // Truncated, but this argument is shorter than the capture: not cut.
    let short = &arg[10..];
    assert_eq!(captured(&["sh", "-c", short], true)[2], short);
}

#[test]
fn the_cut_rule_adds_nothing_to_redacted_arguments() {
    let arg = format!("--api-key={}", "a".repeat(245));
    assert_eq!(
        captured(&["t", &arg], true),
        strings(&["t", "--api-key=[REDACTED]"])
    );
}
