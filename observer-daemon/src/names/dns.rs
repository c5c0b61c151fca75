//! A pure parser of DNS responses (RFC 1035): the question, and the A,
//! AAAA and CNAME records of the answer section, with name compression.
//! Every read is bounds-checked; compression pointers must point strictly
//! backwards and names are limited to 255 bytes, so a hostile message can
//! neither loop nor allocate without bound. Errors are values, never panics.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

const HEADER_LEN: usize = 12;
const MAX_NAME_LEN: usize = 255;
/// Compression jumps followed per name (pointers only go backwards, so
/// this bounds work, not termination).
const MAX_JUMPS: usize = 32;
/// Answer records parsed per message.
const MAX_ANSWERS: usize = 64;
/// CNAME links followed from the question.
const MAX_CHAIN: usize = 16;

pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("message ends inside {0}")]
    Truncated(&'static str),
    #[error("not a response (QR bit clear)")]
    NotResponse,
    #[error("no question")]
    NoQuestion,
    #[error("bad name: {0}")]
    BadName(&'static str),
    #[error("{field}: {len} bytes, expected {expected}")]
    BadRdata {
        field: &'static str,
        len: usize,
        expected: usize,
    },
}

impl DnsError {
    /// Stable counter name.
    pub fn reason(&self) -> &'static str {
        match self {
            DnsError::Truncated(_) => "dns_short",
            DnsError::NotResponse => "dns_not_response",
            DnsError::NoQuestion => "dns_no_question",
            DnsError::BadName(_) => "dns_bad_name",
            DnsError::BadRdata { .. } => "dns_bad_rdata",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Question {
    pub name: String,
    #[serde(rename = "type")]
    pub qtype: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "data")]
pub enum Rdata {
    A(Ipv4Addr),
    #[serde(rename = "AAAA")]
    Aaaa(Ipv6Addr),
    #[serde(rename = "CNAME")]
    Cname(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    pub name: String,
    pub ttl: u32,
    #[serde(flatten)]
    pub data: Rdata,
}

/// What a response says, as far as names of addresses go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Response {
    pub id: u16,
    pub rcode: String,
    /// The server set TC, or the captured bytes ended inside the answers
    /// (the records before that point are kept).
    pub truncated: bool,
    pub question: Question,
    /// A, AAAA and CNAME records of the answer section (others skipped).
    pub answers: Vec<Answer>,
}

/// An address with every name of the chain that led to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    pub addr: IpAddr,
    pub ttl: u32,
}

impl Response {
    /// The CNAME chain from the question: the question name first, then
    /// each alias target in order. Records off the chain are ignored.
    pub fn chain(&self) -> Vec<String> {
        let mut chain = vec![self.question.name.clone()];
        while chain.len() <= MAX_CHAIN {
            let last = chain.last().map(String::as_str).unwrap_or_default();
            let next = self.answers.iter().find_map(|a| match &a.data {
                Rdata::Cname(target) if a.name == last => Some(target.clone()),
                _ => None,
            });
            match next {
                Some(t) if !chain.contains(&t) => chain.push(t),
                _ => break,
            }
        }
        chain
    }

    /// Addresses owned by a name of the chain, with their TTLs. Only a
    /// NOERROR answer names anything.
    pub fn addresses(&self) -> Vec<Resolved> {
        if self.rcode != "NOERROR" {
            return Vec::new();
        }
        let chain = self.chain();
        self.answers
            .iter()
            .filter(|a| chain.contains(&a.name))
            .filter_map(|a| match a.data {
                Rdata::A(v4) => Some(Resolved {
                    addr: IpAddr::V4(v4),
                    ttl: a.ttl,
                }),
                Rdata::Aaaa(v6) => Some(Resolved {
                    addr: IpAddr::V6(v6),
                    ttl: a.ttl,
                }),
                Rdata::Cname(_) => None,
            })
            .collect()
    }
}

pub fn type_name(t: u16) -> String {
    match t {
        TYPE_A => "A".into(),
        2 => "NS".into(),
        TYPE_CNAME => "CNAME".into(),
        6 => "SOA".into(),
        12 => "PTR".into(),
        15 => "MX".into(),
        16 => "TXT".into(),
        TYPE_AAAA => "AAAA".into(),
        33 => "SRV".into(),
        64 => "SVCB".into(),
        65 => "HTTPS".into(),
        other => format!("TYPE{other}"),
    }
}

fn rcode_name(r: u8) -> String {
    match r {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        other => format!("RCODE{other}"),
    }
}

struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DnsError> {
        let end = self.pos.checked_add(n).ok_or(DnsError::Truncated(what))?;
        let s = self
            .msg
            .get(self.pos..end)
            .ok_or(DnsError::Truncated(what))?;
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DnsError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DnsError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn name(&mut self) -> Result<String, DnsError> {
        let (name, next) = read_name(self.msg, self.pos)?;
        self.pos = next;
        Ok(name)
    }
}

/// Reads the (possibly compressed) name at `start`; returns it in lower
/// case without the trailing dot, and the offset after its encoding.
pub fn read_name(msg: &[u8], start: usize) -> Result<(String, usize), DnsError> {
    let mut out = String::new();
    let mut pos = start;
    // Where the encoding at `start` ends: after the first pointer, or after
    // the root label when there is none.
    let mut end = None;
    let mut jumps = 0;
    // Each jump must land before the label that held the pointer.
    let mut limit = start;
    loop {
        let len = *msg.get(pos).ok_or(DnsError::Truncated("name"))?;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    end.get_or_insert(pos + 1);
                    break;
                }
                let label = msg
                    .get(pos + 1..pos + 1 + len as usize)
                    .ok_or(DnsError::Truncated("label"))?;
                if out.len() + label.len() + 1 > MAX_NAME_LEN {
                    return Err(DnsError::BadName("name longer than 255"));
                }
                if !out.is_empty() {
                    out.push('.');
                }
                for &b in label {
                    if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*') {
                        return Err(DnsError::BadName("byte outside letters, digits, - _ *"));
                    }
                    out.push(b.to_ascii_lowercase() as char);
                }
                pos += 1 + len as usize;
            }
            0xc0 => {
                let low = *msg.get(pos + 1).ok_or(DnsError::Truncated("pointer"))?;
                let target = (((len & 0x3f) as usize) << 8) | low as usize;
                end.get_or_insert(pos + 2);
                jumps += 1;
                if jumps > MAX_JUMPS || target >= limit.min(pos) {
                    return Err(DnsError::BadName("compression pointer not backwards"));
                }
                limit = target;
                pos = target;
            }
            _ => return Err(DnsError::BadName("reserved label type")),
        }
    }
    Ok((out, end.unwrap_or(pos + 1)))
}

/// Parses a DNS response. `bytes` may be a prefix of the message (the
/// kernel copies a bounded number of bytes): answers cut off at the end are
/// dropped and `truncated` is set.
pub fn parse_response(bytes: &[u8]) -> Result<Response, DnsError> {
    let mut r = Reader { msg: bytes, pos: 0 };
    let header = r.take(HEADER_LEN, "header")?;
    let id = u16::from_be_bytes([header[0], header[1]]);
    let flags = u16::from_be_bytes([header[2], header[3]]);
    if flags & 0x8000 == 0 {
        return Err(DnsError::NotResponse);
    }
    let qdcount = u16::from_be_bytes([header[4], header[5]]);
    let ancount = u16::from_be_bytes([header[6], header[7]]);
    if qdcount == 0 {
        return Err(DnsError::NoQuestion);
    }
    let mut question = None;
    for _ in 0..qdcount {
        let name = r.name()?;
        let qtype = r.u16("question type")?;
        r.u16("question class")?;
        question.get_or_insert(Question {
            name,
            qtype: type_name(qtype),
        });
    }
    let question = question.ok_or(DnsError::NoQuestion)?;
    let mut answers = Vec::new();
    let mut truncated = flags & 0x0200 != 0;
    for _ in 0..ancount.min(MAX_ANSWERS as u16) {
        match answer(&mut r) {
            Ok(Some(a)) => answers.push(a),
            Ok(None) => {}
            Err(DnsError::Truncated(_)) => {
                truncated = true;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Response {
        id,
        rcode: rcode_name((flags & 0x000f) as u8),
        truncated,
        question,
        answers,
    })
}

/// One resource record; `None` for types and classes not kept.
fn answer(r: &mut Reader) -> Result<Option<Answer>, DnsError> {
    let name = r.name()?;
    let rtype = r.u16("record type")?;
    let class = r.u16("record class")?;
    let ttl = r.u32("ttl")?;
    let rdlen = r.u16("rdlength")? as usize;
    let rdata_start = r.pos;
    let rdata = r.take(rdlen, "rdata")?;
    if class != CLASS_IN {
        return Ok(None);
    }
    let data = match rtype {
        TYPE_A => {
            let b: [u8; 4] = rdata.try_into().map_err(|_| DnsError::BadRdata {
                field: "A",
                len: rdlen,
                expected: 4,
            })?;
            Rdata::A(Ipv4Addr::from(b))
        }
        TYPE_AAAA => {
            let b: [u8; 16] = rdata.try_into().map_err(|_| DnsError::BadRdata {
                field: "AAAA",
                len: rdlen,
                expected: 16,
            })?;
            Rdata::Aaaa(Ipv6Addr::from(b))
        }
        TYPE_CNAME => {
            let (target, end) = read_name(r.msg, rdata_start)?;
            if end != rdata_start + rdlen {
                return Err(DnsError::BadRdata {
                    field: "CNAME",
                    len: rdlen,
                    expected: end.saturating_sub(rdata_start),
                });
            }
            Rdata::Cname(target)
        }
        _ => return Ok(None),
    };
    // TTLs with the top bit set are treated as 0 (RFC 2181 section 8).
    let ttl = if ttl > i32::MAX as u32 { 0 } else { ttl };
    Ok(Some(Answer { name, ttl, data }))
}

#[cfg(test)]
pub(crate) mod fixtures {
    /// Builds DNS messages for tests (also used by the mutation test).
    pub struct Msg(pub Vec<u8>);

    impl Msg {
        pub fn response(id: u16, flags: u16, qd: u16, an: u16) -> Msg {
            let mut v = Vec::new();
            for x in [id, flags, qd, an, 0, 0] {
                v.extend_from_slice(&x.to_be_bytes());
            }
            Msg(v)
        }
        /// Labels without the terminating root label (a pointer follows).
        pub fn labels(mut self, name: &str) -> Msg {
            for label in name.split('.').filter(|l| !l.is_empty()) {
                self.0.push(label.len() as u8);
                self.0.extend_from_slice(label.as_bytes());
            }
            self
        }
        pub fn name(self, name: &str) -> Msg {
            let mut m = self.labels(name);
            m.0.push(0);
            m
        }
        pub fn ptr(mut self, offset: u16) -> Msg {
            self.0.extend_from_slice(&(0xc000 | offset).to_be_bytes());
            self
        }
        pub fn u16(mut self, v: u16) -> Msg {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub fn u32(mut self, v: u32) -> Msg {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub fn raw(mut self, b: &[u8]) -> Msg {
            self.0.extend_from_slice(b);
            self
        }
    }

    /// api.anthropic.com CNAME edge.example.net, edge A 10.203.0.1 and
    /// AAAA fd00::1, names compressed.
    pub fn cname_chain() -> Vec<u8> {
        let m = Msg::response(0x1234, 0x8180, 1, 3)
            .name("api.anthropic.com")
            .u16(1)
            .u16(1);
        // The question name is at offset 12, its "com" label at 26.
        let m = m.ptr(12).u16(5).u16(1).u32(300);
        // The CNAME target "edge.example" + pointer to "com" starts here.
        let rd_at = m.0.len() + 2;
        let m = m.u16(15).labels("edge.example").ptr(26);
        let m = m
            .ptr(rd_at as u16)
            .u16(1)
            .u16(1)
            .u32(60)
            .u16(4)
            .raw(&[10, 203, 0, 1]);
        m.ptr(rd_at as u16)
            .u16(28)
            .u16(1)
            .u32(30)
            .u16(16)
            .raw(&"fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets())
            .0
    }

    /// api.openai.com A 10.203.0.1, ttl 0.
    pub fn simple_a() -> Vec<u8> {
        Msg::response(7, 0x8180, 1, 1)
            .name("api.openai.com")
            .u16(1)
            .u16(1)
            .ptr(12)
            .u16(1)
            .u16(1)
            .u32(0)
            .u16(4)
            .raw(&[10, 203, 0, 1])
            .0
    }
}

#[cfg(test)]
mod tests {
    use super::{fixtures::*, *};

    #[test]
    fn parses_a_answer() {
        let r = parse_response(&simple_a()).unwrap();
        assert_eq!(r.id, 7);
        assert_eq!(r.rcode, "NOERROR");
        assert!(!r.truncated);
        assert_eq!(
            r.question,
            Question {
                name: "api.openai.com".into(),
                qtype: "A".into()
            }
        );
        assert_eq!(
            r.answers,
            vec![Answer {
                name: "api.openai.com".into(),
                ttl: 0,
                data: Rdata::A(Ipv4Addr::new(10, 203, 0, 1))
            }]
        );
        assert_eq!(r.chain(), vec!["api.openai.com"]);
    }

    #[test]
    fn follows_compressed_cname_chain() {
        let r = parse_response(&cname_chain()).unwrap();
        assert_eq!(r.chain(), vec!["api.anthropic.com", "edge.example.com"]);
        assert_eq!(
            r.addresses(),
            vec![
                Resolved {
                    addr: "10.203.0.1".parse().unwrap(),
                    ttl: 60
                },
                Resolved {
                    addr: "fd00::1".parse().unwrap(),
                    ttl: 30
                }
            ]
        );
        assert_eq!(r.answers[0].ttl, 300);
    }

    #[test]
    fn records_off_the_chain_name_nothing() {
        // The answer section names another host: not attributed.
        let m = Msg::response(1, 0x8180, 1, 1)
            .name("api.openai.com")
            .u16(1)
            .u16(1)
            .name("evil.example")
            .u16(1)
            .u16(1)
            .u32(60)
            .u16(4)
            .raw(&[1, 2, 3, 4])
            .0;
        let r = parse_response(&m).unwrap();
        assert_eq!(r.answers.len(), 1);
        assert!(r.addresses().is_empty());
    }

    #[test]
    fn nxdomain_names_nothing() {
        let mut m = simple_a();
        m[3] = 0x83;
        let r = parse_response(&m).unwrap();
        assert_eq!(r.rcode, "NXDOMAIN");
        assert!(r.addresses().is_empty());
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_errors() {
        // A question name that points at itself.
        let m = Msg::response(1, 0x8180, 1, 0).ptr(12).u16(1).u16(1).0;
        assert_eq!(
            parse_response(&m),
            Err(DnsError::BadName("compression pointer not backwards"))
        );
        // A forward pointer.
        let m = Msg::response(1, 0x8180, 1, 0).ptr(40).u16(1).u16(1).0;
        assert!(matches!(parse_response(&m), Err(DnsError::BadName(_))));
        // Two names pointing at each other: label then pointer back.
        let m = Msg::response(1, 0x8180, 1, 0).raw(&[1, b'a', 0xc0, 12]).0;
        assert!(matches!(parse_response(&m), Err(DnsError::BadName(_))));
    }

    #[test]
    fn overlong_names_are_errors() {
        let long = vec!["a".repeat(63); 5].join(".");
        let m = Msg::response(1, 0x8180, 1, 0).name(&long).u16(1).u16(1).0;
        assert_eq!(
            parse_response(&m),
            Err(DnsError::BadName("name longer than 255"))
        );
        let m = Msg::response(1, 0x8180, 1, 0)
            .raw(&[64])
            .raw(&[b'a'; 64])
            .raw(&[0])
            .0;
        // A length byte of 64 has the top bits 01: a reserved label type,
        // so no label can be longer than 63.
        assert_eq!(
            parse_response(&m),
            Err(DnsError::BadName("reserved label type"))
        );
    }

    #[test]
    fn queries_short_and_bad_rdata_are_errors() {
        let mut q = simple_a();
        q[2] = 0x01;
        assert_eq!(parse_response(&q), Err(DnsError::NotResponse));
        assert_eq!(parse_response(&[0; 5]), Err(DnsError::Truncated("header")));
        let m = Msg::response(1, 0x8180, 0, 0).0;
        assert_eq!(parse_response(&m), Err(DnsError::NoQuestion));
        let mut bad = simple_a();
        let n = bad.len();
        bad[n - 5] = 3; // rdlength 3 for an A record
        bad.pop();
        assert_eq!(
            parse_response(&bad),
            Err(DnsError::BadRdata {
                field: "A",
                len: 3,
                expected: 4
            })
        );
    }

    #[test]
    fn a_cut_answer_keeps_what_came_before() {
        let full = cname_chain();
        let r = parse_response(&full[..full.len() - 3]).unwrap();
        assert!(r.truncated);
        assert_eq!(r.answers.len(), 2);
        assert_eq!(r.addresses().len(), 1);
    }
}
