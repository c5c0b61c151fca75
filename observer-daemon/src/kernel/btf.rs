//! Minimal parser of the kernel's raw BTF (`/sys/kernel/btf/vmlinux`) that
//! resolves byte offsets of struct members.
//!
//! Rust eBPF programs get no CO-RE relocations, so the daemon looks the
//! offsets up here at start-up and hands them to the probes. Every type
//! record is walked (type ids are positional, so one wrong record size would
//! shift every id after it), but only what offset resolution needs is kept:
//! struct/union members, int encodings and modifier targets.
//!
//! Format reference: the kernel's `Documentation/bpf/btf.rst`. Only base
//! (vmlinux) BTF in host (little-endian) byte order is supported: split BTF
//! of kernel modules numbers its types after vmlinux's, which this parser
//! does not model.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

const BTF_MAGIC: u16 = 0xeb9f;
const BTF_VERSION: u8 = 1;
/// Size of `struct btf_header` in version 1; later headers may be longer.
const HEADER_LEN: usize = 24;
/// Size of `struct btf_type` (name_off, info, size/type).
const TYPE_LEN: usize = 12;
/// Size of `struct btf_member` (name_off, type, offset).
const MEMBER_LEN: usize = 12;
/// Bounds modifier chains and anonymous-member nesting so a malformed or
/// cyclic blob errors out instead of looping or overflowing the stack.
const MAX_DEPTH: usize = 32;

/// BTF kind numbers (`BTF_KIND_*` in `include/uapi/linux/btf.h`).
mod kind {
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const FWD: u32 = 7;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FUNC: u32 = 12;
    pub const FUNC_PROTO: u32 = 13;
    pub const VAR: u32 = 14;
    pub const DATASEC: u32 = 15;
    pub const FLOAT: u32 = 16;
    pub const DECL_TAG: u32 = 17;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;
}

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("reading BTF from {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad BTF magic {found:#06x}: expected 0xeb9f (only little-endian BTF is supported)")]
    BadMagic { found: u16 },
    #[error("unsupported BTF version {0} (expected 1)")]
    BadVersion(u8),
    #[error("bad BTF header: {0}")]
    BadHeader(String),
    #[error("truncated BTF {section} section: data at byte offset {offset} runs past its end")]
    Truncated {
        section: &'static str,
        offset: usize,
    },
    #[error("unknown BTF kind {kind} at type id {type_id}")]
    UnknownKind { kind: u32, type_id: u32 },
    #[error("bad BTF string at string offset {0}")]
    BadString(u32),
    #[error("bad BTF type id {type_id}: {reason}")]
    BadType { type_id: u32, reason: &'static str },
    #[error("struct {0} not found in BTF")]
    StructNotFound(String),
    #[error("member {member_path} not found in struct {struct_name}")]
    MemberNotFound {
        struct_name: String,
        member_path: String,
    },
    #[error("member {member} of struct {struct_name} is a bitfield and has no byte offset")]
    Bitfield { struct_name: String, member: String },
}

/// One `btf_member`, with the offset already split per the parent's kind_flag.
#[derive(Debug, Clone, Copy)]
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
    bitfield_size: u32,
}

/// The parts of one `btf_type` record that offset resolution needs.
#[derive(Debug, Clone, Copy)]
struct Type {
    name_off: u32,
    kind: u32,
    /// Size for INT/STRUCT/UNION/..., referenced type id for modifiers.
    size_or_type: u32,
    /// The u32 following an INT record (bits, offset, encoding); 0 otherwise.
    int_encoding: u32,
    /// Range into `KernelBtf::members` for STRUCT/UNION; empty otherwise.
    members_start: usize,
    members_len: usize,
}

/// A member found by name, with its bit offset from the start of the
/// composite that was searched (anonymous members' offsets added in).
struct Found {
    member: Member,
    bit_offset: u64,
}

/// The section layout from `struct btf_header`; offsets are relative to the
/// end of the header, as in the kernel's definition.
struct Header {
    hdr_len: usize,
    type_off: usize,
    type_len: usize,
    str_off: usize,
    str_len: usize,
}

pub struct KernelBtf {
    /// Indexed by type id - 1 (type id 0 is `void` and has no record).
    types: Vec<Type>,
    members: Vec<Member>,
    strings: Vec<u8>,
    /// STRUCT type ids by name, in id order; the only by-name lookup needed.
    structs_by_name: HashMap<String, Vec<u32>>,
}

// Hand-written so that test failures don't dump megabytes of types.
impl fmt::Debug for KernelBtf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelBtf")
            .field("types", &self.types.len())
            .field("members", &self.members.len())
            .field("string_bytes", &self.strings.len())
            .finish()
    }
}

impl KernelBtf {
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let bytes = std::fs::read(path).map_err(|source| BtfError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BtfError> {
        let header = parse_header(bytes)?;
        let (str_start, strings) =
            section(bytes, "string", &header, header.str_off, header.str_len)?;
        // Offset 0 must be the empty string: anonymous types point there.
        if strings.first() != Some(&0) {
            return Err(BtfError::BadHeader(format!(
                "string section at byte offset {str_start} does not start with an empty string"
            )));
        }
        let (type_start, type_bytes) =
            section(bytes, "type", &header, header.type_off, header.type_len)?;
        let (types, members) = parse_types(type_bytes, type_start)?;
        let mut btf = Self {
            types,
            members,
            strings: strings.to_vec(),
            structs_by_name: HashMap::new(),
        };
        btf.structs_by_name = btf.index_structs()?;
        Ok(btf)
    }

    /// Byte offset of a (possibly dotted, e.g. "__sk_common.skc_family") member path inside the named struct.
    /// Anonymous struct/union members are searched through transparently (the kernel's sock_common keeps
    /// skc_daddr/skc_rcv_saddr inside anonymous unions/structs). Typedefs/const/volatile are followed when
    /// descending into a named member's struct type. Bitfield members (kind_flag set with nonzero bitfield size,
    /// or bit offset not a multiple of 8) are an error.
    pub fn member_offset(&self, struct_name: &str, member_path: &str) -> Result<u32, BtfError> {
        // Several STRUCTs can share a name; the first one that has the
        // member wins. A real error (e.g. a bitfield) from one candidate is
        // reported only if no other candidate resolves the path.
        let mut first_error = None;
        for &id in self.struct_ids(struct_name)? {
            match self.resolve_path(self.ty(id)?, struct_name, member_path) {
                Ok(offset) => return Ok(offset),
                Err(BtfError::MemberNotFound { .. }) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| member_not_found(struct_name, member_path)))
    }

    /// Size in bytes of the named struct.
    pub fn struct_size(&self, struct_name: &str) -> Result<u32, BtfError> {
        let ids = self.struct_ids(struct_name)?;
        let id = ids
            .first()
            .ok_or_else(|| BtfError::StructNotFound(struct_name.to_string()))?;
        Ok(self.ty(*id)?.size_or_type)
    }

    fn struct_ids(&self, struct_name: &str) -> Result<&[u32], BtfError> {
        self.structs_by_name
            .get(struct_name)
            .map(Vec::as_slice)
            .ok_or_else(|| BtfError::StructNotFound(struct_name.to_string()))
    }

    fn index_structs(&self) -> Result<HashMap<String, Vec<u32>>, BtfError> {
        let mut index: HashMap<String, Vec<u32>> = HashMap::new();
        for (id, t) in (1u32..).zip(&self.types) {
            if t.kind != kind::STRUCT || t.name_off == 0 {
                continue;
            }
            let name = std::str::from_utf8(self.name_bytes(t.name_off)?)
                .map_err(|_| BtfError::BadString(t.name_off))?;
            index.entry(name.to_string()).or_default().push(id);
        }
        Ok(index)
    }

    /// Walks `member_path` segment by segment from the struct `top`.
    fn resolve_path(
        &self,
        top: &Type,
        struct_name: &str,
        member_path: &str,
    ) -> Result<u32, BtfError> {
        let not_found = || member_not_found(struct_name, member_path);
        let mut composite = top;
        let mut bits: u64 = 0;
        let mut offset = 0;
        let mut segments = member_path.split('.').peekable();
        while let Some(segment) = segments.next() {
            // An empty name would match the first anonymous member.
            if segment.is_empty() {
                return Err(not_found());
            }
            let found = self
                .find_member(composite, segment, 0)?
                .ok_or_else(not_found)?;
            bits += found.bit_offset;
            if self.is_bitfield(&found.member, bits)? {
                return Err(BtfError::Bitfield {
                    struct_name: struct_name.to_string(),
                    member: member_path.to_string(),
                });
            }
            offset = u32::try_from(bits / 8).map_err(|_| BtfError::BadType {
                type_id: found.member.type_id,
                reason: "member offset does not fit in 32 bits",
            })?;
            if segments.peek().is_some() {
                composite = self
                    .composite(found.member.type_id)?
                    .ok_or_else(not_found)?;
            }
        }
        Ok(offset)
    }

    /// Depth-first search for a named member, descending into anonymous
    /// struct/union members (C keeps their member names in the parent's
    /// namespace, so the first match is the only one in valid BTF).
    fn find_member(
        &self,
        composite: &Type,
        name: &str,
        depth: usize,
    ) -> Result<Option<Found>, BtfError> {
        for member in self.members_of(composite) {
            let member_name = self.name_bytes(member.name_off)?;
            if member_name == name.as_bytes() {
                return Ok(Some(Found {
                    member: *member,
                    bit_offset: u64::from(member.bit_offset),
                }));
            }
            if !member_name.is_empty() {
                continue;
            }
            if let Some(found) = self.find_in_anonymous(member, name, depth)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    fn find_in_anonymous(
        &self,
        member: &Member,
        name: &str,
        depth: usize,
    ) -> Result<Option<Found>, BtfError> {
        if depth >= MAX_DEPTH {
            return Err(BtfError::BadType {
                type_id: member.type_id,
                reason: "anonymous members nested too deep (cyclic?)",
            });
        }
        let Some(inner) = self.composite(member.type_id)? else {
            return Ok(None);
        };
        Ok(self
            .find_member(inner, name, depth + 1)?
            .map(|found| Found {
                member: found.member,
                bit_offset: found.bit_offset + u64::from(member.bit_offset),
            }))
    }

    /// `bits` is the member's offset from the start of the outer struct.
    fn is_bitfield(&self, member: &Member, bits: u64) -> Result<bool, BtfError> {
        Ok(member.bitfield_size != 0
            || !bits.is_multiple_of(8)
            || self.is_legacy_bitfield(member)?)
    }

    /// Structs without kind_flag encode a bitfield as a member whose INT type
    /// is narrower than its storage or starts at a bit offset of its own.
    fn is_legacy_bitfield(&self, member: &Member) -> Result<bool, BtfError> {
        let id = self.strip_modifiers(member.type_id)?;
        if id == 0 {
            return Ok(false);
        }
        let t = self.ty(id)?;
        if t.kind != kind::INT {
            return Ok(false);
        }
        let nr_bits = u64::from(t.int_encoding & 0xff);
        let int_bit_offset = (t.int_encoding >> 16) & 0xff;
        Ok(nr_bits != u64::from(t.size_or_type) * 8 || int_bit_offset != 0)
    }

    /// The STRUCT/UNION that `type_id` names once typedefs and qualifiers
    /// are followed, or `None` for any other kind.
    fn composite(&self, type_id: u32) -> Result<Option<&Type>, BtfError> {
        let id = self.strip_modifiers(type_id)?;
        if id == 0 {
            return Ok(None);
        }
        let t = self.ty(id)?;
        Ok(matches!(t.kind, kind::STRUCT | kind::UNION).then_some(t))
    }

    fn strip_modifiers(&self, type_id: u32) -> Result<u32, BtfError> {
        let mut id = type_id;
        for _ in 0..MAX_DEPTH {
            if id == 0 {
                return Ok(0);
            }
            let t = self.ty(id)?;
            if !is_modifier(t.kind) {
                return Ok(id);
            }
            id = t.size_or_type;
        }
        Err(BtfError::BadType {
            type_id,
            reason: "typedef/qualifier chain too long (cyclic?)",
        })
    }

    fn ty(&self, type_id: u32) -> Result<&Type, BtfError> {
        let index = (type_id as usize).wrapping_sub(1);
        self.types.get(index).ok_or(BtfError::BadType {
            type_id,
            reason: "referenced but not defined",
        })
    }

    fn members_of(&self, t: &Type) -> &[Member] {
        let end = t.members_start + t.members_len;
        self.members.get(t.members_start..end).unwrap_or(&[])
    }

    /// The NUL-terminated string at `offset`, as bytes: member names are only
    /// compared, so they need no UTF-8 check.
    fn name_bytes(&self, offset: u32) -> Result<&[u8], BtfError> {
        let tail = self
            .strings
            .get(offset as usize..)
            .ok_or(BtfError::BadString(offset))?;
        let end = tail
            .iter()
            .position(|&b| b == 0)
            .ok_or(BtfError::BadString(offset))?;
        Ok(&tail[..end])
    }
}

fn member_not_found(struct_name: &str, member_path: &str) -> BtfError {
    BtfError::MemberNotFound {
        struct_name: struct_name.to_string(),
        member_path: member_path.to_string(),
    }
}

/// Kinds that only qualify or rename another type, which they reference
/// through `size_or_type`.
fn is_modifier(k: u32) -> bool {
    matches!(
        k,
        kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG
    )
}

fn parse_header(bytes: &[u8]) -> Result<Header, BtfError> {
    let truncated = || BtfError::Truncated {
        section: "header",
        offset: 0,
    };
    let magic = u16_at(bytes, 0).ok_or_else(truncated)?;
    if magic != BTF_MAGIC {
        return Err(BtfError::BadMagic { found: magic });
    }
    let version = *bytes.get(2).ok_or_else(truncated)?;
    if version != BTF_VERSION {
        return Err(BtfError::BadVersion(version));
    }
    let field = |pos: usize| u32_at(bytes, pos).map(|v| v as usize).ok_or_else(truncated);
    let header = Header {
        hdr_len: field(4)?,
        type_off: field(8)?,
        type_len: field(12)?,
        str_off: field(16)?,
        str_len: field(20)?,
    };
    if header.hdr_len < HEADER_LEN {
        return Err(BtfError::BadHeader(format!(
            "header length {} is shorter than {HEADER_LEN}",
            header.hdr_len
        )));
    }
    Ok(header)
}

/// The bytes of one section and its absolute start offset in the blob.
fn section<'a>(
    bytes: &'a [u8],
    name: &'static str,
    header: &Header,
    off: usize,
    len: usize,
) -> Result<(usize, &'a [u8]), BtfError> {
    let start = header.hdr_len.saturating_add(off);
    let data = start
        .checked_add(len)
        .and_then(|end| bytes.get(start..end))
        .ok_or(BtfError::Truncated {
            section: name,
            offset: start,
        })?;
    Ok((start, data))
}

/// Walks every record of the type section; `base` is the section's absolute
/// offset, used only in error messages.
fn parse_types(section: &[u8], base: usize) -> Result<(Vec<Type>, Vec<Member>), BtfError> {
    let mut types = Vec::new();
    let mut members = Vec::new();
    let mut pos = 0;
    while pos < section.len() {
        let type_id = u32::try_from(types.len() + 1)
            .map_err(|_| BtfError::BadHeader("more than 2^32 types".to_string()))?;
        let (t, record_len) = parse_type(section, pos, base, type_id, &mut members)?;
        types.push(t);
        pos += record_len;
    }
    Ok((types, members))
}

/// Parses the record at `pos`, appending its members (if any) to `members`;
/// returns the type and the record's total length.
fn parse_type(
    section: &[u8],
    pos: usize,
    base: usize,
    type_id: u32,
    members: &mut Vec<Member>,
) -> Result<(Type, usize), BtfError> {
    let truncated = || BtfError::Truncated {
        section: "type",
        offset: base + pos,
    };
    let name_off = u32_at(section, pos).ok_or_else(truncated)?;
    let info = u32_at(section, pos + 4).ok_or_else(truncated)?;
    let size_or_type = u32_at(section, pos + 8).ok_or_else(truncated)?;
    let kind = (info >> 24) & 0x1f;
    let vlen = (info & 0xffff) as usize;
    let kind_flag = info >> 31 == 1;
    let trailing = trailing_len(kind, vlen).ok_or(BtfError::UnknownKind { kind, type_id })?;
    let body_start = pos + TYPE_LEN;
    let body = section
        .get(body_start..body_start + trailing)
        .ok_or_else(truncated)?;
    let mut t = Type {
        name_off,
        kind,
        size_or_type,
        int_encoding: 0,
        members_start: members.len(),
        members_len: 0,
    };
    if kind == kind::INT {
        t.int_encoding = u32_at(body, 0).ok_or_else(truncated)?;
    }
    if matches!(kind, kind::STRUCT | kind::UNION) {
        members.extend(
            body.chunks_exact(MEMBER_LEN)
                .filter_map(|rec| decode_member(rec, kind_flag)),
        );
        t.members_len = members.len() - t.members_start;
    }
    Ok((t, TYPE_LEN + trailing))
}

/// Bytes that follow the common `btf_type` record for each kind, per btf.rst.
fn trailing_len(k: u32, vlen: usize) -> Option<usize> {
    let len = match k {
        kind::INT => 4,
        kind::ARRAY => 12,
        kind::STRUCT | kind::UNION => vlen * MEMBER_LEN,
        kind::ENUM => vlen * 8,
        kind::FUNC_PROTO => vlen * 8,
        kind::VAR => 4,
        kind::DATASEC => vlen * 12,
        kind::DECL_TAG => 4,
        kind::ENUM64 => vlen * 12,
        kind::PTR
        | kind::FWD
        | kind::TYPEDEF
        | kind::VOLATILE
        | kind::CONST
        | kind::RESTRICT
        | kind::FUNC
        | kind::FLOAT
        | kind::TYPE_TAG => 0,
        _ => return None,
    };
    Some(len)
}

/// With kind_flag set, a member's offset packs the bitfield size into the
/// top 8 bits; without it, the whole word is the bit offset.
fn decode_member(rec: &[u8], kind_flag: bool) -> Option<Member> {
    let offset = u32_at(rec, 8)?;
    let (bit_offset, bitfield_size) = if kind_flag {
        (offset & 0x00ff_ffff, offset >> 24)
    } else {
        (offset, 0)
    };
    Some(Member {
        name_off: u32_at(rec, 0)?,
        type_id: u32_at(rec, 4)?,
        bit_offset,
        bitfield_size,
    })
}

fn u16_at(bytes: &[u8], pos: usize) -> Option<u16> {
    let raw = bytes.get(pos..pos.checked_add(2)?)?;
    Some(u16::from_le_bytes(raw.try_into().ok()?))
}

fn u32_at(bytes: &[u8], pos: usize) -> Option<u32> {
    let raw = bytes.get(pos..pos.checked_add(4)?)?;
    Some(u32::from_le_bytes(raw.try_into().ok()?))
}

#[cfg(test)]
mod tests;
