//! Writing the OCSF event [`super::read`] mapped: its members in key order
//! (the order serde_json's map writes them), the stored context and
//! signature embedded as stored.
use std::borrow::Cow;

use serde_json::Error;

use super::{
    super::{
        json_out::{push_str_content, Obj},
        ocsf::{self, category_name, severity, EXTENSION, OCSF_VERSION},
        ocsf_fields::{Answer, DnsAnswer, Payload, Process, Question, Raw, Signer},
        ReceiptItem, CAPTURE_TOPOLOGY,
    },
    Actor, Connection, Endpoint, Event, Finding,
};

/// Writes the event's members in key order.
pub(super) fn write_event(o: &mut Obj, r: &ReceiptItem, ev: &Event) -> Result<(), Error> {
    let (class_uid, category_uid, activity_id, class_name, activity_name) = ev.class;
    let m = &ev.members;
    let hash = hex::encode(r.receipt_hash);
    let time_ms = r.issued_ns / 1_000_000;
    o.u64("activity_id", activity_id.into());
    o.str("activity_name", activity_name);
    if let Some(a) = &m.actor {
        write_actor(&mut o.obj("actor"), a, &r.agent_id)?;
    }
    if let Some(a) = &m.dns {
        write_answers(o, a)?;
    }
    o.str("capture_topology", CAPTURE_TOPOLOGY);
    o.str("category_name", category_name(category_uid));
    o.u64("category_uid", category_uid.into());
    o.str("class_name", class_name);
    o.u64("class_uid", class_uid.into());
    if let Some(c) = &m.connection_info {
        write_connection(&mut o.obj("connection_info"), c);
    }
    if let Some(c) = m.count {
        o.u64("count", c);
    }
    if m.device {
        write_device(&mut o.obj("device"), &r.issuer_id);
    }
    if let Some(e) = &m.dst_endpoint {
        write_endpoint(&mut o.obj("dst_endpoint"), e);
    }
    if let Some(c) = m.exit_code.text() {
        o.raw("exit_code", c);
    }
    if let Some(path) = m.file {
        write_file(&mut o.obj("file"), path, None);
    }
    if let Some(f) = &m.finding {
        write_finding(&mut o.obj("finding_info"), f, &ev.payload, &hash, time_ms)?;
    }
    if let Some(msg) = &m.message {
        o.str("message", msg);
    }
    write_metadata(
        &mut o.obj("metadata"),
        r,
        &hash,
        ocsf::has_host_profile(class_uid),
    );
    if let Some(p) = &m.process {
        let mut po = o.obj("process");
        if let Some(p) = p {
            write_process(&mut po, p, &r.agent_id)?;
        }
    }
    if let Some(a) = &m.dns {
        write_query(&mut o.obj("query"), a)?;
    }
    o.str("raw_data", &r.envelope);
    if let Some(a) = &m.dns {
        write_rcode(o, a.rcode);
    }
    let (severity_id, severity_name) = severity(&r.risk_class);
    o.str("severity", severity_name);
    o.u64("severity_id", severity_id.into());
    if let Some(e) = &m.src_endpoint {
        write_endpoint(&mut o.obj("src_endpoint"), e);
    }
    if let Some(s) = m.status {
        o.str("status", s);
    }
    if let Some(s) = m.status_id {
        o.u64("status_id", s.into());
    }
    o.u64("time", time_ms);
    let type_name = o.key("type_name");
    type_name.push(b'"');
    push_str_content(type_name, class_name);
    push_str_content(type_name, ": ");
    push_str_content(type_name, activity_name);
    type_name.push(b'"');
    o.u64(
        "type_uid",
        u64::from(class_uid) * 100 + u64::from(activity_id),
    );
    write_unmapped(&mut o.obj("unmapped"), r, ev, &hash)
}

fn write_metadata(o: &mut Obj, r: &ReceiptItem, hash: &str, host_profile: bool) {
    let (name, ext_uid, version) = EXTENSION;
    {
        let mut exts = o.arr("extensions");
        let mut e = exts.obj();
        e.str("name", name);
        e.str("uid", ext_uid);
        e.str("version", version);
    }
    o.str("log_name", &r.issuer_id);
    {
        let mut p = o.obj("product");
        p.str("name", "observer");
        p.str("vendor_name", "observer");
        p.str("version", env!("CARGO_PKG_VERSION"));
    }
    if host_profile {
        o.arr("profiles").str("host");
    }
    o.u64("sequence", r.seq);
    o.str("uid", hash);
    o.str("version", OCSF_VERSION);
}

fn write_unmapped(o: &mut Obj, r: &ReceiptItem, ev: &Event, hash: &str) -> Result<(), Error> {
    let mut u = o.obj("observer");
    u.str("action_type", &r.action_type);
    u.str("agent_id", &r.agent_id);
    u.str("chain", &r.issuer_id);
    u.raw("context", ev.context.unwrap_or("null"));
    u.u64("log_index", r.leaf_index);
    u.raw(
        "previous_receipt_hash",
        ev.payload.previousReceiptHash.text().unwrap_or("null"),
    );
    u.str("receipt_hash", hash);
    u.str("risk_class", &r.risk_class);
    u.u64("seq", r.seq);
    write_signer(&mut u, ev.envelope.signature)
}

/// `ocsf::signer_of`: the signature's `alg` and `kid`, its value being in
/// `raw_data`.
fn write_signer(o: &mut Obj, signature: Raw) -> Result<(), Error> {
    match signature.text() {
        Some(t) if t.starts_with('{') => {
            let signer: Signer = signature.fields()?;
            let mut s = o.obj("signer");
            for (key, member) in [("alg", signer.alg), ("kid", signer.kid)] {
                if let Some(text) = member.text() {
                    s.raw(key, text);
                }
            }
        }
        other => o.raw("signer", other.unwrap_or("null")),
    }
    Ok(())
}

/// The host as an OCSF device (`ocsf::device`).
fn write_device(o: &mut Obj, issuer_id: &str) {
    if let Some(h) = ocsf::host_of(issuer_id) {
        o.str("hostname", h);
    }
    o.str("type", "Unknown");
    o.u64("type_id", 0);
}

fn write_actor(o: &mut Obj, a: &Actor, agent: &str) -> Result<(), Error> {
    match a {
        Actor::Empty => {}
        Actor::Process(p) => write_process(&mut o.obj("process"), p, agent)?,
        Actor::Parent(pid, name, exe) => {
            let mut p = o.obj("process");
            if exe.is_string() {
                write_file(&mut p.obj("file"), *exe, None);
            }
            put(&mut p, "name", *name);
            put(&mut p, "pid", *pid);
        }
    }
    Ok(())
}

/// Writes `key: value` when the member is present and not null (`put`).
fn put(o: &mut Obj, key: &str, v: Raw) {
    if let Some(t) = v.non_null() {
        o.raw(key, t);
    }
}

/// The OCSF `process` of the context's process (`ocsf::process_obj`).
fn write_process(o: &mut Obj, p: &Process, agent: &str) -> Result<(), Error> {
    if p.argv.text().is_some_and(|t| t.starts_with('[')) {
        let cmd_line = o.key("cmd_line");
        cmd_line.push(b'"');
        // The string elements joined by spaces: escaping is per character,
        // so the pieces are escaped one by one.
        let mut sep = "";
        p.argv.each(|w| {
            if let Some(w) = w.as_str() {
                push_str_content(cmd_line, sep);
                push_str_content(cmd_line, &w);
                sep = " ";
            }
        })?;
        cmd_line.push(b'"');
    }
    if p.exe.is_string() {
        write_file(&mut o.obj("file"), p.exe, p.exe_sha256.as_str());
    }
    put(o, "name", p.comm);
    if let Some(ppid) = p.ppid.non_null() {
        o.obj("parent_process").raw("pid", ppid);
    }
    put(o, "pid", p.pid);
    put(o, "tid", p.tid);
    if p.uid.0.is_some() || p.user.non_null().is_some() {
        let mut user = o.obj("user");
        put(&mut user, "name", p.user);
        if let Some(uid) = p.uid.0.map(|_| p.uid.compact()) {
            let uid = uid.ok_or_else(|| serde::de::Error::custom("uid"))?;
            user.str("uid", &uid);
        }
    }
    let mut x = o.obj("xattributes");
    x.str("agent_id", agent);
    put(&mut x, "cgroup", p.cgroup);
    put(&mut x, "unit", p.unit);
    Ok(())
}

/// An OCSF `file` of a path (`ocsf::file_obj`).
fn write_file(o: &mut Obj, path: Raw, sha256: Option<Cow<str>>) {
    if let Some(h) = sha256 {
        let mut hashes = o.arr("hashes");
        let mut h0 = hashes.obj();
        h0.str("algorithm", "SHA-256");
        h0.u64("algorithm_id", 3);
        h0.str("value", h.trim_start_matches("sha256:"));
    }
    if let Some(p) = path.as_str() {
        o.str("name", ocsf::base_name(&p));
        o.str("path", &p);
    }
    o.str("type", "Regular File");
    o.u64("type_id", 1);
}

fn write_endpoint(o: &mut Obj, e: &Endpoint) {
    if let Some(h) = e.hostname.text() {
        o.raw("hostname", h);
    }
    put(o, "ip", e.ip);
    put(o, "port", e.port);
}

fn write_connection(o: &mut Obj, c: &Connection) {
    o.str("direction", c.direction.1);
    o.u64("direction_id", c.direction.0.into());
    if let Some((name, num)) = c.protocol {
        o.str("protocol_name", name);
        o.u64("protocol_num", num.into());
    }
}

fn write_answers(o: &mut Obj, a: &DnsAnswer) -> Result<(), Error> {
    let mut answers = o.arr("answers");
    let mut result = Ok(());
    a.answers.each(|x| {
        let x: Answer = match x.fields() {
            Ok(x) => x,
            Err(e) => {
                result = Err(e);
                return;
            }
        };
        let mut ao = answers.obj();
        ao.str("class", "IN");
        put(&mut ao, "packet_uid", a.id);
        put(&mut ao, "rdata", x.data);
        put(&mut ao, "ttl", x.ttl);
        put(&mut ao, "type", x.r#type);
    })?;
    result
}

fn write_query(o: &mut Obj, a: &DnsAnswer) -> Result<(), Error> {
    let q: Question = a.question.fields()?;
    o.str("class", "IN");
    if let Some(name) = q.name.as_str() {
        o.str("hostname", name.trim_end_matches('.'));
    }
    put(o, "packet_uid", a.id);
    put(o, "type", q.r#type);
    Ok(())
}

fn write_rcode(o: &mut Obj, rcode: Raw) {
    if let Some(name) = rcode.as_str() {
        let (id, caption) = ocsf::rcode(&name);
        o.str("rcode", caption);
        o.u64("rcode_id", id.into());
    }
}

fn write_finding(
    o: &mut Obj,
    f: &Finding,
    payload: &Payload,
    hash: &str,
    time_ms: u64,
) -> Result<(), Error> {
    {
        let mut a = o.obj("analytic");
        a.str("name", &f.rule);
        a.str("type", "Rule");
        a.u64("type_id", 1);
        a.str("uid", &f.rule);
        if let Some(d) = &f.policy_digest {
            a.str("version", d);
        }
    }
    o.u64("created_time", time_ms);
    o.str("title", &f.reason);
    {
        // ATLAS and OWASP LLM ids are not ATT&CK: they go with the
        // finding's types, named by their framework.
        let mut types = o.arr("types");
        types.str("shadow_ai");
        for (ids, prefix) in [
            (payload.mitre_atlas, "mitre_atlas:"),
            (payload.owasp_llm_top10, "owasp_llm_top10:"),
        ] {
            ids.each(|id| {
                if let Some(id) = id.as_str() {
                    let t = types.next();
                    t.push(b'"');
                    push_str_content(t, prefix);
                    push_str_content(t, &id);
                    t.push(b'"');
                }
            })?;
        }
    }
    o.str("uid", hash);
    Ok(())
}
