//! The OCSF event of a receipt written as text, the same JSON as
//! `ocsf::format` gives (the same bytes for the rows the daemon writes):
//! members in the order serde_json's map writes them (sorted by key), the
//! stored context and signature embedded as stored, the envelope's and
//! context's members read as borrowed text ([`super::ocsf_fields`]). Building
//! each event as a `Value` tree cost an allocation per member and a copy of
//! every string, and was the OCSF export's whole cost. A row the text path
//! does not read the way `Value` would (not JSON, not an object, a member
//! given twice ...) is left to `ocsf::format`.
mod write;

use std::borrow::Cow;

use serde_json::Error;

use super::{
    json_out::Obj,
    ocsf::{self, class_of, BASE_EVENT},
    ocsf_fields::{
        check_strict, Context, DnsAnswer, Envelope, Exec, Exit, FileOpen, ListedOpen, Named,
        Parent, Payload, Process, Raw, Socket,
    },
    ReceiptItem,
};

/// Appends the OCSF event of `r` to `out` as one JSON text.
pub fn push_receipt(out: &mut Vec<u8>, r: &ReceiptItem) {
    let start = out.len();
    if push_mapped(out, r).is_err() {
        out.truncate(start);
        let v = ocsf::receipt_event(r);
        // Writing a Value into a Vec cannot fail; keep the line valid anyway.
        if serde_json::to_writer(&mut *out, &v).is_err() {
            out.truncate(start);
            out.extend_from_slice(b"null");
        }
    }
}

/// The event's class and what the context maps onto it.
struct Event<'a> {
    class: (u32, u32, u32, &'static str, &'static str),
    envelope: Envelope<'a>,
    payload: Payload<'a>,
    /// The context, when stored: an object.
    context: Option<&'a str>,
    members: Members<'a>,
}

/// The class-specific top-level members, in key order.
#[derive(Default)]
struct Members<'a> {
    actor: Option<Actor<'a>>,
    dns: Option<DnsAnswer<'a>>,
    connection_info: Option<Connection>,
    count: Option<u64>,
    device: bool,
    dst_endpoint: Option<Endpoint<'a>>,
    exit_code: Raw<'a>,
    file: Option<Raw<'a>>,
    finding: Option<Finding<'a>>,
    message: Option<Cow<'a, str>>,
    process: Option<Option<Process<'a>>>,
    src_endpoint: Option<Endpoint<'a>>,
    status: Option<&'static str>,
    status_id: Option<u32>,
}

enum Actor<'a> {
    Empty,
    Process(Process<'a>),
    /// A launch's or exit's parent: pid, name, executable.
    Parent(Raw<'a>, Raw<'a>, Raw<'a>),
}

struct Endpoint<'a> {
    hostname: Raw<'a>,
    ip: Raw<'a>,
    port: Raw<'a>,
}

struct Connection {
    direction: (u32, &'static str),
    protocol: Option<(&'static str, u32)>,
}

struct Finding<'a> {
    rule: Cow<'a, str>,
    reason: Cow<'a, str>,
    policy_digest: Option<Cow<'a, str>>,
}

fn push_mapped(out: &mut Vec<u8>, r: &ReceiptItem) -> Result<(), Error> {
    let ev = read(r)?;
    let mut o = Obj::open(out);
    write::write_event(&mut o, r, &ev)
}

/// Reads the row: checked as strictly as `Value` parses it, then the
/// members the class maps.
fn read(r: &ReceiptItem) -> Result<Event<'_>, Error> {
    check_object(&r.envelope)?;
    let envelope: Envelope = serde_json::from_str(&r.envelope)?;
    let payload: Payload = envelope.payload.fields()?;
    let context = match r.context.as_deref() {
        Some(c) => Some(check_object(c)?),
        None => None,
    };
    let class = match context {
        Some(_) => class_of(&r.action_type),
        None => BASE_EVENT,
    };
    let members = match context {
        None => Members {
            message: Some(Cow::Owned(format!(
                "{} receipt without a stored context (hash-only mode or erased)",
                r.action_type
            ))),
            ..Members::default()
        },
        // observer.* receipts stay Base Events: no device, no status.
        Some(_) if class.0 == 0 => Members::default(),
        Some(c) => map_context(class.0, &serde_json::from_str(c)?)?,
    };
    Ok(Event {
        class,
        envelope,
        payload,
        context,
        members,
    })
}

/// `text` trimmed, when it is a JSON object `Value` would parse.
fn check_object(text: &str) -> Result<&str, Error> {
    check_strict(text)?;
    let t = text.trim();
    if t.starts_with('{') {
        Ok(t)
    } else {
        Err(serde::de::Error::custom("not an object"))
    }
}

/// What the context maps onto the class (`ocsf::map_context`).
fn map_context<'a>(class_uid: u32, ctx: &Context<'a>) -> Result<Members<'a>, Error> {
    let process = match ctx.process.0 {
        Some(_) => Some(ctx.process.fields::<Process>()?),
        None => None,
    };
    let mut m = Members {
        device: true,
        status_id: Some(1),
        ..Members::default()
    };
    let actor = |p: Option<Process<'a>>| p.map(Actor::Process);
    match class_uid {
        1007 => map_process_activity(&mut m, ctx, process)?,
        4001 => {
            m.actor = actor(process);
            map_network(&mut m, ctx)?;
        }
        1001 => {
            m.actor = Some(actor(process).unwrap_or(Actor::Empty));
            let open = ctx.file_open.fields::<FileOpen>()?;
            m.file = Some(open.path);
            m.count = opens_count(&open)?;
        }
        4003 => {
            m.actor = actor(process);
            map_dns(&mut m, ctx.dns_answer.fields()?);
        }
        2004 => {
            m.actor = actor(process);
            map_finding(&mut m, ctx);
        }
        // The agent's actions (ocsf_agent) are few: `ocsf::format` builds them.
        4002 | 6003 => return Err(serde::de::Error::custom("built by ocsf::format")),
        _ => {}
    }
    Ok(m)
}

fn map_process_activity<'a>(
    m: &mut Members<'a>,
    ctx: &Context<'a>,
    process: Option<Process<'a>>,
) -> Result<(), Error> {
    // The actor of a launch or an exit is the parent process.
    let ppid = process.as_ref().map_or(Raw(None), |p| p.ppid);
    let first = ctx.parents.first()?;
    let (mut name, mut exe) = (Raw(None), Raw(None));
    if first.0.is_some() {
        let parent: Parent = first.fields()?;
        if parent.pid.same(ppid) {
            name = parent.comm;
            exe = parent.exe;
        }
    }
    m.actor = Some(Actor::Parent(ppid, name, exe));
    m.process = Some(process);
    m.exit_code = ctx.exit.fields::<Exit>()?.exit_code;
    // `Value::as_i64`: Rust's integer parse reads exactly the JSON
    // integers that fit in an i64 (the text passed the strict check).
    let result = ctx.exec.fields::<Exec>()?.result;
    if result
        .text()
        .and_then(|t| t.parse::<i64>().ok())
        .is_some_and(|r| r != 0)
    {
        m.status_id = Some(2);
        m.status = Some("Failure");
    }
    Ok(())
}

fn map_network<'a>(m: &mut Members<'a>, ctx: &Context<'a>) -> Result<(), Error> {
    let (n, direction) = [
        (ctx.connect, (2, "Outbound")),
        (ctx.accept, (1, "Inbound")),
        (ctx.listen, (0, "Unknown")),
        (ctx.bind, (0, "Unknown")),
    ]
    .into_iter()
    .find(|(n, _)| n.0.is_some())
    .unwrap_or((Raw(None), (0, "Unknown")));
    let n: Socket = n.fields()?;
    m.src_endpoint = Some(Endpoint {
        hostname: Raw(None),
        ip: n.local_addr,
        port: n.local_port,
    });
    m.dst_endpoint = Some(Endpoint {
        hostname: n.dst_names.first()?.fields::<Named>()?.name,
        ip: n.remote_addr,
        port: n.remote_port,
    });
    let protocol = match n.socket_type.as_str().as_deref() {
        Some("stream") => Some(("tcp", 6)),
        Some("dgram") => Some(("udp", 17)),
        _ => None,
    };
    m.connection_info = Some(Connection {
        direction,
        protocol,
    });
    Ok(())
}

fn map_dns<'a>(m: &mut Members<'a>, a: DnsAnswer<'a>) {
    // A response travels from the server to the local socket.
    m.src_endpoint = Some(Endpoint {
        hostname: Raw(None),
        ip: a.server_addr,
        port: a.server_port,
    });
    m.dst_endpoint = Some(Endpoint {
        hostname: Raw(None),
        ip: a.local_addr,
        port: a.local_port,
    });
    let protocol = match a.transport.as_str().as_deref() {
        Some("udp") => Some(("udp", 17)),
        Some("tcp") => Some(("tcp", 6)),
        _ => None,
    };
    m.connection_info = protocol.map(|p| Connection {
        direction: (1, "Inbound"),
        protocol: Some(p),
    });
    m.dns = Some(a);
}

/// The opens a `file.open` receipt covers: the sum of its list's counts,
/// else its one path's `count`; as [`ocsf::opens_count`] reads them.
fn opens_count(open: &FileOpen) -> Result<Option<u64>, Error> {
    let as_u64 = |r: Raw| {
        r.non_null()
            .and_then(|t| serde_json::from_str::<u64>(t).ok())
    };
    if !open.paths.text().is_some_and(|t| t.starts_with('[')) {
        return Ok(as_u64(open.count));
    }
    let mut entries = Vec::new();
    open.paths.each(|e| entries.push(e))?;
    let mut sum = Some(0u64);
    for e in entries {
        let count = as_u64(e.fields::<ListedOpen>()?.count);
        sum = sum.zip(count).and_then(|(a, b)| a.checked_add(b));
    }
    Ok(sum)
}

fn map_finding<'a>(m: &mut Members<'a>, ctx: &Context<'a>) {
    let rule = ctx.rule_id.as_str().unwrap_or(Cow::Borrowed(""));
    let reason = ctx.reason.as_str().unwrap_or_else(|| rule.clone());
    m.message = Some(reason.clone());
    m.status = Some("New");
    m.finding = Some(Finding {
        rule,
        reason,
        policy_digest: ctx.policy_digest.as_str(),
    });
}

#[cfg(test)]
mod tests;
