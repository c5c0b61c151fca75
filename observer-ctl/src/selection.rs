//! A command line's selection flags (`--agent`, `--since`, ...) as the
//! evidence crate's store [`Query`]: times read in a time zone, relative
//! to now.
use super::{cli::Selection, time::parse_time_in, CtlError};
use observer_daemon::receipt::query::Query;

/// The query of a command line selection, times read in `tz` relative to
/// `now_ns`.
pub fn query_of(
    sel: &Selection,
    limit: Option<u64>,
    now_ns: u64,
    tz: &jiff::tz::TimeZone,
) -> Result<Query, CtlError> {
    let time = |flag: &str, t: &Option<String>| {
        t.as_deref()
            .map(|t| parse_time_in(flag, t, now_ns, tz))
            .transpose()
    };
    Ok(Query {
        since_ns: time("--since", &sel.window.since)?,
        until_ns: time("--until", &sel.window.until)?,
        agent: sel.agent.clone(),
        action: sel.action.clone(),
        user: sel.user.clone(),
        rule: sel.rule.clone(),
        dst: sel.dst.clone(),
        path: sel.path.clone(),
        unit: sel.unit.clone(),
        risk: sel.risk.iter().map(|r| r.as_str().to_string()).collect(),
        pid: sel.pid.clone(),
        exe: sel.exe.clone(),
        chain: sel.chain.clone(),
        limit,
        after_leaf: None,
    })
}
