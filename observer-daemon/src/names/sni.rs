//! A pure parser of the TLS ClientHello (RFC 8446 section 4.1.2) that
//! returns the `server_name` (RFC 6066 section 3). Extensions may come in
//! any order; unknown and GREASE (RFC 8701) ones are skipped. Every length
//! is checked against its enclosing structure; errors are values.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SniError {
    /// The bytes ended inside the ClientHello: it was split across
    /// segments or is longer than the capture.
    #[error("ClientHello ends inside {0}")]
    Truncated(&'static str),
    #[error("not a TLS handshake record")]
    NotHandshake,
    #[error("handshake message is not a ClientHello")]
    NotClientHello,
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("the ClientHello has no server_name")]
    NoServerName,
}

impl SniError {
    /// Stable counter name.
    pub fn reason(&self) -> &'static str {
        match self {
            SniError::Truncated(_) => "sni_truncated",
            SniError::NotHandshake | SniError::NotClientHello => "sni_not_client_hello",
            SniError::Malformed(_) => "sni_malformed",
            SniError::NoServerName => "sni_absent",
        }
    }
}

const EXT_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;
const MAX_HOST_LEN: usize = 253;

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], SniError> {
        let end = self.pos.checked_add(n).ok_or(SniError::Truncated(what))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(SniError::Truncated(what))?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, SniError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, SniError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self, what: &'static str) -> Result<usize, SniError> {
        let b = self.take(3, what)?;
        Ok(((b[0] as usize) << 16) | ((b[1] as usize) << 8) | b[2] as usize)
    }
    fn rest(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// The server name of the ClientHello that starts `bytes` (a TLS record,
/// possibly cut short), lower-cased.
pub fn server_name(bytes: &[u8]) -> Result<String, SniError> {
    let mut rec = Cursor::new(bytes);
    let content_type = rec.u8("record header")?;
    let major = rec.u8("record header")?;
    rec.u8("record header")?;
    let record_len = rec.u16("record header")? as usize;
    if content_type != 0x16 || major != 3 {
        return Err(SniError::NotHandshake);
    }
    if record_len == 0 {
        return Err(SniError::Malformed("record length"));
    }
    // Only the first record is read: a ClientHello continued in a second
    // record is reported as truncated.
    let body = &bytes[5..];
    let body = &body[..record_len.min(body.len())];
    let mut hs = Cursor::new(body);
    if hs.u8("handshake header")? != 1 {
        return Err(SniError::NotClientHello);
    }
    let hello_len = hs.u24("handshake header")?;
    if hello_len + 4 > record_len && record_len == body.len() {
        // The record ends before the message it claims to hold.
        return Err(SniError::Truncated("handshake message"));
    }
    let hello_end = hs.pos + hello_len.min(hs.rest());
    let mut h = Cursor::new(&body[hs.pos..hello_end]);
    h.take(2, "legacy_version")?;
    h.take(32, "random")?;
    let sid = h.u8("session id")? as usize;
    if sid > 32 {
        return Err(SniError::Malformed("session id length"));
    }
    h.take(sid, "session id")?;
    let suites = h.u16("cipher suites")? as usize;
    if suites == 0 || !suites.is_multiple_of(2) {
        return Err(SniError::Malformed("cipher suites length"));
    }
    h.take(suites, "cipher suites")?;
    let comp = h.u8("compression methods")? as usize;
    if comp == 0 {
        return Err(SniError::Malformed("compression methods length"));
    }
    h.take(comp, "compression methods")?;
    if h.rest() == 0 && hello_len <= h.pos {
        // A hello without extensions (legal before TLS 1.3).
        return Err(SniError::NoServerName);
    }
    let ext_len = h.u16("extensions length")? as usize;
    let ext_end = h.pos + ext_len;
    if hello_len < ext_end {
        return Err(SniError::Malformed("extensions length"));
    }
    while h.pos < ext_end {
        let ext_type = h.u16("extension header")?;
        let len = h.u16("extension header")? as usize;
        if h.pos + len > ext_end {
            return Err(SniError::Malformed("extension length"));
        }
        let data = h.take(len, "extension")?;
        if ext_type == EXT_SERVER_NAME {
            return host_name(data);
        }
    }
    Err(SniError::NoServerName)
}

/// The host_name entry of a server_name extension.
fn host_name(data: &[u8]) -> Result<String, SniError> {
    let mut c = Cursor::new(data);
    let list_len = c
        .u16("server_name list")
        .map_err(|_| SniError::Malformed("server_name list"))? as usize;
    if list_len != c.rest() {
        return Err(SniError::Malformed("server_name list length"));
    }
    while c.rest() > 0 {
        let kind = c.u8("server_name entry").map_err(malformed)?;
        let len = c.u16("server_name entry").map_err(malformed)? as usize;
        let name = c.take(len, "server_name entry").map_err(malformed)?;
        if kind != NAME_TYPE_HOST {
            continue;
        }
        let name = name.strip_suffix(b".").unwrap_or(name);
        let valid = !name.is_empty()
            && name.len() <= MAX_HOST_LEN
            && name
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(b))
            && name
                .split(|b| *b == b'.')
                .all(|l| (1..=63).contains(&l.len()));
        if !valid {
            return Err(SniError::Malformed("host_name"));
        }
        return Ok(String::from_utf8_lossy(name).to_ascii_lowercase());
    }
    Err(SniError::NoServerName)
}

fn malformed(_: SniError) -> SniError {
    SniError::Malformed("server_name entry")
}

#[cfg(test)]
pub(crate) mod fixtures {
    /// A ClientHello record with the given extensions (type, data), in order.
    pub fn client_hello(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut exts = Vec::new();
        for (t, d) in extensions {
            exts.extend_from_slice(&t.to_be_bytes());
            exts.extend_from_slice(&(d.len() as u16).to_be_bytes());
            exts.extend_from_slice(d);
        }
        let mut hello = vec![3, 3];
        hello.extend_from_slice(&[0x11; 32]);
        hello.push(32);
        hello.extend_from_slice(&[0x22; 32]);
        hello.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02]);
        hello.extend_from_slice(&[1, 0]);
        hello.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        hello.extend_from_slice(&exts);
        let mut hs = vec![1];
        hs.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&hello);
        let mut rec = vec![0x16, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    pub fn sni_ext(name: &str) -> (u16, Vec<u8>) {
        let mut entry = vec![0];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut d = (entry.len() as u16).to_be_bytes().to_vec();
        d.extend_from_slice(&entry);
        (0, d)
    }

    /// A realistic hello: GREASE first, supported_versions, a big key
    /// share, then SNI.
    pub fn typical(name: &str) -> Vec<u8> {
        client_hello(&[
            (0x0a0a, vec![]),
            (43, vec![2, 3, 4]),
            (51, vec![0x5a; 300]),
            sni_ext(name),
            (0x1a1a, vec![0]),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::{fixtures::*, *};

    #[test]
    fn finds_the_name_after_grease_and_other_extensions() {
        assert_eq!(
            server_name(&typical("API.OpenAI.com")).unwrap(),
            "api.openai.com"
        );
        let first = client_hello(&[sni_ext("a.example"), (0x2a2a, vec![1, 2])]);
        assert_eq!(server_name(&first).unwrap(), "a.example");
    }

    #[test]
    fn no_server_name() {
        let h = client_hello(&[(43, vec![2, 3, 4])]);
        assert_eq!(server_name(&h), Err(SniError::NoServerName));
    }

    #[test]
    fn every_cut_is_truncated_or_found_never_wrong() {
        let full = typical("api.openai.com");
        for cut in 0..full.len() {
            match server_name(&full[..cut]) {
                Ok(name) => assert_eq!(name, "api.openai.com", "cut {cut}"),
                Err(SniError::Truncated(_)) => {}
                Err(e) => panic!("cut {cut}: {e}"),
            }
        }
    }

    #[test]
    fn rejects_other_records_and_bad_names() {
        let mut h = typical("x.example");
        h[0] = 0x17;
        assert_eq!(server_name(&h), Err(SniError::NotHandshake));
        let mut h = typical("x.example");
        h[5] = 2; // ServerHello
        assert_eq!(server_name(&h), Err(SniError::NotClientHello));
        let h = client_hello(&[sni_ext("bad name")]);
        assert_eq!(server_name(&h), Err(SniError::Malformed("host_name")));
        let h = client_hello(&[sni_ext("a..b")]);
        assert_eq!(server_name(&h), Err(SniError::Malformed("host_name")));
        // An extension claiming more than the extensions block holds.
        let mut h = client_hello(&[(5, vec![0; 4])]);
        let n = h.len();
        h[n - 5] = 0x10;
        assert_eq!(
            server_name(&h),
            Err(SniError::Malformed("extension length"))
        );
    }
}
