//! Borrowed views of a stored envelope and context, for the OCSF text
//! path: only the members the mapping reads, each as its JSON text inside
//! the stored row (no tree, no copies). Every view reads a member the way
//! `serde_json::Value::get` / `pointer` does on the parsed row, so the text
//! path maps exactly what the `Value` path maps.
use std::borrow::Cow;

use serde::{
    de::{self, Deserializer, MapAccess, SeqAccess, Visitor},
    Deserialize,
};
use serde_json::{value::RawValue, Error, Value};

/// A member as stored: absent (`None`) or its JSON text, `null` included.
/// (`Option<&RawValue>` would read `null` as absent; the mapping tells the
/// two apart, as `Value::get` does.)
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Raw<'a>(pub Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Raw<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(|r| Raw(Some(r)))
    }
}

impl<'a> Raw<'a> {
    /// The member's JSON text, when present (also `null`).
    pub fn text(self) -> Option<&'a str> {
        self.0.map(RawValue::get)
    }

    /// The member's JSON text when present and not `null`.
    pub fn non_null(self) -> Option<&'a str> {
        self.text().filter(|t| *t != "null")
    }

    pub fn is_string(self) -> bool {
        self.text().is_some_and(|t| t.starts_with('"'))
    }

    /// The member as a string (`Value::as_str`): borrowed from the row
    /// unless it has escapes to decode.
    pub fn as_str(self) -> Option<Cow<'a, str>> {
        let t = self.text().filter(|t| t.starts_with('"'))?;
        match t.get(1..t.len() - 1) {
            Some(inner) if !inner.contains('\\') => Some(Cow::Borrowed(inner)),
            _ => serde_json::from_str::<String>(t).ok().map(Cow::Owned),
        }
    }

    /// The member's own members: `T`'s fields read from it when it is an
    /// object, all absent otherwise (`Value::get` on a non-object).
    pub fn fields<T: Deserialize<'a> + Default>(self) -> Result<T, Error> {
        match self.text() {
            Some(t) if t.starts_with('{') => serde_json::from_str(t),
            _ => Ok(T::default()),
        }
    }

    /// Element 0 (`pointer("/x/0")`): of an array, its first element.
    /// An object's member named "0" is not read here: an error sends the
    /// record to the `Value` path, which reads it.
    pub fn first(self) -> Result<Raw<'a>, Error> {
        let mut first = Raw(None);
        match self.text() {
            Some(t) if t.starts_with('[') => self.each(|e| {
                if first.0.is_none() {
                    first = e;
                }
            })?,
            Some(t) if t.starts_with('{') => {
                return Err(de::Error::custom("pointer into an object by index"))
            }
            _ => {}
        }
        Ok(first)
    }

    /// Calls `f` on each element of an array member (nothing for any other
    /// value).
    pub fn each(self, f: impl FnMut(Raw<'a>)) -> Result<(), Error> {
        match self.text() {
            Some(t) if t.starts_with('[') => {
                let mut d = serde_json::Deserializer::from_str(t);
                d.deserialize_seq(EachVisitor(f))
            }
            _ => Ok(()),
        }
    }

    /// `Value::to_string` of the member: its compact JSON text. The stored
    /// text is that already for the values the daemon writes (integers,
    /// strings without escapes, literals); anything else is re-serialised.
    pub fn compact(self) -> Option<Cow<'a, str>> {
        let t = self.text()?;
        let plain_int = t.len() <= 19 && t.bytes().all(|b| b.is_ascii_digit());
        let plain_str = t.starts_with('"') && !t.contains('\\');
        if plain_int || plain_str || matches!(t, "null" | "true" | "false") {
            return Some(Cow::Borrowed(t));
        }
        serde_json::from_str::<Value>(t)
            .ok()
            .map(|v| Cow::Owned(v.to_string()))
    }

    /// Whether two members are equal as `Value`s (both absent counts).
    pub fn same(self, other: Raw<'_>) -> bool {
        match (self.text(), other.text()) {
            (None, None) => true,
            (Some(a), Some(b)) if a == b => true,
            (Some(a), Some(b)) => {
                let parse = serde_json::from_str::<Value>;
                matches!((parse(a), parse(b)), (Ok(a), Ok(b)) if a == b)
            }
            _ => false,
        }
    }
}

struct EachVisitor<F>(F);

impl<'de, F: FnMut(Raw<'de>)> Visitor<'de> for EachVisitor<F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(e) = seq.next_element::<&'de RawValue>()? {
            (self.0)(Raw(Some(e)));
        }
        Ok(())
    }
}

/// Checks JSON text as strictly as parsing it into a `Value` does, without
/// building the tree. `RawValue` and skipped members are checked more
/// loosely (lone UTF-16 surrogates in `\u` escapes, numbers out of the f64
/// range, nesting deeper than 128), and a row `Value` rejects must take the
/// `Value` path: it is forwarded as a string there. Text that cannot hold
/// any of the three (nearly every stored row) needs no second pass.
pub(crate) fn check_strict(text: &str) -> Result<(), Error> {
    if may_be_loose(text.as_bytes()) {
        serde_json::from_str::<Strict>(text).map(|_| ())
    } else {
        Ok(())
    }
}

/// Whether `text` may hold what only the strict check rejects: a `\u`
/// escape, more than 100 brackets (nesting), or a number with an exponent
/// or over 300 digits. Conservative: a number always follows `:`, `,` or
/// `[` (and whitespace), so every such number is found; a hit inside a
/// string only costs the strict pass.
fn may_be_loose(text: &[u8]) -> bool {
    let escape_or_number = memchr::memchr3_iter(b'\\', b':', b',', text).any(|i| match text[i] {
        b'\\' => text.get(i + 1) == Some(&b'u'),
        _ => risky_number(&text[i + 1..]),
    });
    escape_or_number
        || memchr::memchr2_iter(b'[', b'{', text)
            .enumerate()
            .any(|(n, i)| n >= 100 || (text[i] == b'[' && risky_number(&text[i + 1..])))
}

/// Whether `rest` starts (after whitespace and signs) with a number that
/// has an exponent or over 300 digits.
fn risky_number(rest: &[u8]) -> bool {
    let start = rest
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'-'))
        .unwrap_or(rest.len());
    let digits = rest[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .count();
    digits > 300 || matches!(rest.get(start + digits), Some(b'e' | b'E') if digits > 0)
}

struct Strict;

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_str<E>(self, _: &str) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        while seq.next_element::<Strict>()?.is_some() {}
        Ok(Strict)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        while map.next_entry::<Strict, Strict>()?.is_some() {}
        Ok(Strict)
    }
}

/// A view struct of `Raw` members: absent members stay `Raw(None)`, other
/// members are skipped, a member given twice is an error (the row then
/// takes the `Value` path, which keeps the last).
macro_rules! raw_fields {
    ($(#[$doc:meta])* $name:ident { $($field:ident),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Default, Deserialize)]
        #[serde(default)]
        #[allow(non_snake_case)]
        pub(crate) struct $name<'a> {
            $(#[serde(borrow)] pub $field: Raw<'a>,)*
        }
    };
}

raw_fields!(
    /// The signed envelope.
    Envelope { payload, signature }
);
raw_fields!(
    /// The envelope's signature, less its value.
    Signer { alg, kid }
);
raw_fields!(
    /// The envelope's payload, for the chain link and the finding's types.
    Payload { previousReceiptHash, mitre_atlas, owasp_llm_top10 }
);
raw_fields!(
    /// The stored context (docs/events.md).
    Context {
        process, parents, exec, exit, connect, accept, listen, bind, file_open,
        dns_answer, rule_id, reason, policy_digest,
    }
);
raw_fields!(
    /// The context's process.
    Process { pid, tid, comm, argv, exe, exe_sha256, uid, user, ppid, cgroup, unit }
);
raw_fields!(
    /// An ancestor in `parents`.
    Parent { pid, comm, exe }
);
raw_fields!(Exec { result });
raw_fields!(Exit { exit_code });
raw_fields!(
    /// `file_open`: its first path, the opens of that path (`count`, a
    /// folded path's), and a folded list's entries (`paths`).
    FileOpen { path, count, paths }
);
raw_fields!(
    /// An entry of `file_open.paths`.
    ListedOpen { count }
);
raw_fields!(
    /// `connect`, `accept`, `listen` or `bind`.
    Socket { local_addr, local_port, remote_addr, remote_port, dst_names, socket_type }
);
raw_fields!(Named { name });
raw_fields!(
    /// `dns_answer`.
    DnsAnswer { server_addr, server_port, local_addr, local_port, question, id, answers, rcode, transport }
);
raw_fields!(Question { name, r#type });
raw_fields!(Answer { data, ttl, r#type });

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_read_as_value_reads_them() {
        let ctx: Process =
            serde_json::from_str(r#"{"pid":1,"comm":null,"exe":"a\/b","argv":[1,"x"],"zz":{}}"#)
                .unwrap();
        assert_eq!(ctx.pid.text(), Some("1"));
        assert_eq!(ctx.comm.text(), Some("null"));
        assert_eq!(ctx.comm.non_null(), None);
        assert!(ctx.tid.text().is_none());
        assert_eq!(ctx.exe.as_str().as_deref(), Some("a/b"));
        let mut argv = Vec::new();
        ctx.argv.each(|e| argv.push(e.text())).unwrap();
        assert_eq!(argv, [Some("1"), Some("\"x\"")]);
        assert_eq!(ctx.argv.first().unwrap().text(), Some("1"));
        assert!(serde_json::from_str::<Process>(r#"{"pid":1,"pid":2}"#).is_err());
        let odd: Raw = serde_json::from_str(r#"{"0":1}"#).unwrap();
        assert!(odd.first().is_err());
        let float: Raw = serde_json::from_str("1.50").unwrap();
        assert_eq!(float.compact().as_deref(), Some("1.5"));
        assert!(float.same(serde_json::from_str::<Raw>("1.5e0").unwrap()));
        assert!(!float.same(Raw(None)));
    }

    #[test]
    fn strict_check_rejects_what_value_rejects() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        let long = format!("{{\"a\": -{}.5}}", "9".repeat(400));
        for bad in [
            r#"{"a":"\ud800"}"#,
            r#"{"a": [ 1E400]}"#,
            r#"{"a":1"#,
            "[1] x",
            &deep,
            &long,
        ] {
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad}");
            // Syntax errors are left to the (loose) reading of the members.
            let loose = serde_json::from_str::<&RawValue>(bad);
            assert!(check_strict(bad).is_err() || loose.is_err(), "{bad}");
        }
        for good in [
            r#"{"a":"\ud83d\ude00","b":[1,-2,3.5e2,true,null]}"#,
            "\"x\"",
        ] {
            check_strict(good).unwrap();
        }
        // What the quick look lets through without the strict pass.
        assert!(!may_be_loose(br#"{"a":"3e5 :x","b":[12,{"c":-0.5}]}"#));
        assert!(may_be_loose(br#"{"a":"x","b":[12,{"c":-0.5e1}]}"#));
        // The looser check RawValue does, which is why check_strict exists.
        assert!(serde_json::from_str::<&RawValue>(r#"{"a":"\ud800"}"#).is_ok());
    }
}
