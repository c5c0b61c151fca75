//! Tests of [`super`].
use super::*;
use std::sync::OnceLock;

/// Assembles a BTF blob record by record, the way pahole lays it out.
struct Builder {
    types: Vec<u8>,
    strings: Vec<u8>,
    next_id: u32,
}

impl Builder {
    fn new() -> Self {
        Self {
            types: Vec::new(),
            strings: vec![0],
            next_id: 1,
        }
    }

    fn name(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        off
    }

    fn raw(
        &mut self,
        name: &str,
        kind: u32,
        vlen: u32,
        kind_flag: bool,
        size_or_type: u32,
        trailing: &[u32],
    ) -> u32 {
        let name_off = self.name(name);
        let info = (u32::from(kind_flag) << 31) | (kind << 24) | vlen;
        for word in [name_off, info, size_or_type].iter().chain(trailing) {
            self.types.extend_from_slice(&word.to_le_bytes());
        }
        self.next_id += 1;
        self.next_id - 1
    }

    fn int(&mut self, name: &str, size: u32) -> u32 {
        self.raw(name, kind::INT, 0, false, size, &[size * 8])
    }

    /// `members` are (name, type id, raw offset word).
    fn composite(
        &mut self,
        kind: u32,
        name: &str,
        size: u32,
        kind_flag: bool,
        members: &[(&str, u32, u32)],
    ) -> u32 {
        let mut words = Vec::new();
        for &(member_name, type_id, offset) in members {
            words.extend([self.name(member_name), type_id, offset]);
        }
        self.raw(name, kind, members.len() as u32, kind_flag, size, &words)
    }

    fn build(&self) -> Vec<u8> {
        let type_len = self.types.len() as u32;
        let mut out = Vec::new();
        out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        out.extend_from_slice(&[BTF_VERSION, 0]);
        for word in [
            HEADER_LEN as u32,
            0,
            type_len,
            type_len,
            self.strings.len() as u32,
        ] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }
}

/// One record of every kind first, so a wrong trailing-size table shifts
/// the ids and the struct lookups after it fail; then the structs under test.
fn fixture() -> Vec<u8> {
    let mut b = Builder::new();
    let int = b.int("int", 4);
    let ch = b.int("char", 1);
    add_every_other_kind(&mut b, int, ch);
    b.raw("outer", kind::FWD, 0, false, 0, &[]);
    let inner = b.composite(
        kind::STRUCT,
        "inner",
        8,
        false,
        &[("a", int, 0), ("b", int, 32)],
    );
    let inner_t = b.raw("inner_t", kind::TYPEDEF, 0, false, inner, &[]);
    let const_inner = b.raw("", kind::CONST, 0, false, inner_t, &[]);
    let anon_struct = b.composite(
        kind::STRUCT,
        "",
        8,
        false,
        &[("lo", int, 0), ("hi", int, 32)],
    );
    // Like sock_common's skc_addrpair: an anonymous union holding an
    // anonymous struct.
    let anon_union = b.composite(
        kind::UNION,
        "",
        8,
        false,
        &[("u_int", int, 0), ("", anon_struct, 0)],
    );
    b.composite(
        kind::STRUCT,
        "outer",
        48,
        true,
        &[
            ("x", int, 0),
            ("", anon_union, 64),
            ("nested", inner_t, 128),
            ("flags", int, (3 << 24) | 192),
            ("odd", ch, 196),
            ("cnested", const_inner, 256),
            ("dangling", 999, 320),
        ],
    );
    b.composite(kind::STRUCT, "dup", 4, false, &[("a", int, 0)]);
    b.composite(
        kind::STRUCT,
        "dup",
        8,
        false,
        &[("a", int, 0), ("b", int, 32)],
    );
    let u3 = b.raw("u3", kind::INT, 0, false, 4, &[3]);
    b.composite(kind::STRUCT, "legacy", 4, false, &[("three", u3, 0)]);
    b.build()
}

fn add_every_other_kind(b: &mut Builder, int: u32, ch: u32) {
    let ptr = b.raw("", kind::PTR, 0, false, int, &[]);
    b.raw("", kind::ARRAY, 0, false, 0, &[ch, int, 16]);
    let (red, blue) = (b.name("RED"), b.name("BLUE"));
    b.raw("color", kind::ENUM, 2, false, 4, &[red, 0, blue, 1]);
    let proto = b.raw("", kind::FUNC_PROTO, 2, false, int, &[0, int, 0, ptr]);
    b.raw("main", kind::FUNC, 0, false, proto, &[]);
    let var = b.raw("counter", kind::VAR, 0, false, int, &[1]);
    b.raw(".data", kind::DATASEC, 1, false, 4, &[var, 0, 4]);
    b.raw("double", kind::FLOAT, 0, false, 8, &[]);
    b.raw("tag", kind::DECL_TAG, 0, false, var, &[u32::MAX]);
    b.raw("user", kind::TYPE_TAG, 0, false, ptr, &[]);
    let huge = b.name("HUGE");
    b.raw("big", kind::ENUM64, 1, false, 8, &[huge, 1, 2]);
    b.raw("", kind::VOLATILE, 0, false, int, &[]);
    b.raw("", kind::RESTRICT, 0, false, ptr, &[]);
}

fn fixture_btf() -> KernelBtf {
    KernelBtf::from_bytes(&fixture()).expect("fixture parses")
}

#[test]
fn plain_member_offsets() {
    let btf = fixture_btf();
    assert_eq!(btf.member_offset("outer", "x").unwrap(), 0);
    assert_eq!(btf.member_offset("outer", "nested").unwrap(), 16);
    assert_eq!(btf.member_offset("inner", "b").unwrap(), 4);
    assert_eq!(btf.struct_size("outer").unwrap(), 48);
    assert_eq!(btf.struct_size("inner").unwrap(), 8);
}

#[test]
fn anonymous_members_are_transparent() {
    let btf = fixture_btf();
    assert_eq!(btf.member_offset("outer", "u_int").unwrap(), 8);
    assert_eq!(btf.member_offset("outer", "lo").unwrap(), 8);
    assert_eq!(btf.member_offset("outer", "hi").unwrap(), 12);
}

#[test]
fn dotted_paths_follow_typedef_and_const() {
    let btf = fixture_btf();
    assert_eq!(btf.member_offset("outer", "nested.a").unwrap(), 16);
    assert_eq!(btf.member_offset("outer", "nested.b").unwrap(), 20);
    assert_eq!(btf.member_offset("outer", "cnested.b").unwrap(), 36);
}

#[test]
fn bitfields_are_rejected() {
    let btf = fixture_btf();
    for (name, path) in [("outer", "flags"), ("outer", "odd"), ("legacy", "three")] {
        let err = btf.member_offset(name, path).unwrap_err();
        assert!(
            matches!(&err, BtfError::Bitfield { struct_name, member } if struct_name == name && member == path),
            "{name}.{path}: {err}"
        );
    }
}

#[test]
fn duplicate_struct_names_use_first_with_member() {
    let btf = fixture_btf();
    assert_eq!(btf.member_offset("dup", "a").unwrap(), 0);
    assert_eq!(btf.member_offset("dup", "b").unwrap(), 4);
    assert_eq!(btf.struct_size("dup").unwrap(), 4);
}

#[test]
fn missing_struct_and_members_are_errors() {
    let btf = fixture_btf();
    assert!(
        matches!(btf.member_offset("nope", "x"), Err(BtfError::StructNotFound(n)) if n == "nope")
    );
    assert!(matches!(
        btf.struct_size("nope"),
        Err(BtfError::StructNotFound(_))
    ));
    for path in [
        "missing",
        "nested.missing",
        "x.y",
        "",
        "nested.",
        ".x",
        "inner",
    ] {
        let err = btf.member_offset("outer", path).unwrap_err();
        assert!(
            matches!(&err, BtfError::MemberNotFound { struct_name, member_path } if struct_name == "outer" && member_path == path),
            "{path:?}: {err}"
        );
    }
}

#[test]
fn dangling_type_reference_is_an_error() {
    let err = fixture_btf()
        .member_offset("outer", "dangling.x")
        .unwrap_err();
    assert!(
        matches!(err, BtfError::BadType { type_id: 999, .. }),
        "{err}"
    );
}

#[test]
fn bad_magic_and_version_are_errors() {
    let mut blob = fixture();
    blob.swap(0, 1);
    let err = KernelBtf::from_bytes(&blob).unwrap_err();
    assert!(matches!(err, BtfError::BadMagic { found: 0x9feb }), "{err}");
    assert!(err.to_string().contains("0xeb9f"), "{err}");

    let mut blob = fixture();
    blob[2] = 2;
    assert!(matches!(
        KernelBtf::from_bytes(&blob),
        Err(BtfError::BadVersion(2))
    ));
}

#[test]
fn truncated_blobs_are_errors() {
    let blob = fixture();
    let err = KernelBtf::from_bytes(&blob[..10]).unwrap_err();
    assert!(
        matches!(
            err,
            BtfError::Truncated {
                section: "header",
                ..
            }
        ),
        "{err}"
    );
    let err = KernelBtf::from_bytes(&blob[..blob.len() - 1]).unwrap_err();
    assert!(
        matches!(
            err,
            BtfError::Truncated {
                section: "string",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn truncated_type_record_reports_its_offset() {
    let mut b = Builder::new();
    b.int("int", 4);
    b.int("long", 8);
    let mut blob = b.build();
    // Shrink type_len so the second 16-byte INT record (at absolute
    // offset 24 + 16) is cut short, and shift the string section back.
    let type_len = u32_at(&blob, 12).unwrap() - 3;
    blob[12..16].copy_from_slice(&type_len.to_le_bytes());
    blob[16..20].copy_from_slice(&type_len.to_le_bytes());
    blob.drain(HEADER_LEN + type_len as usize..HEADER_LEN + type_len as usize + 3);
    let err = KernelBtf::from_bytes(&blob).unwrap_err();
    assert!(
        matches!(
            err,
            BtfError::Truncated {
                section: "type",
                offset: 40
            }
        ),
        "{err}"
    );
}

#[test]
fn unknown_kind_is_an_error() {
    let mut b = Builder::new();
    b.int("int", 4);
    b.raw("weird", 25, 0, false, 0, &[]);
    let err = KernelBtf::from_bytes(&b.build()).unwrap_err();
    assert!(
        matches!(
            err,
            BtfError::UnknownKind {
                kind: 25,
                type_id: 2
            }
        ),
        "{err}"
    );
}

#[test]
fn missing_file_is_an_io_error() {
    let err = KernelBtf::from_file(Path::new("/nonexistent/btf")).unwrap_err();
    assert!(matches!(err, BtfError::Io { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/btf"), "{err}");
}

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// The probes' fields; a missing one must fail the test, not skip it.
const KERNEL_FIELDS: &[(&str, &str)] = &[
    ("task_struct", "pid"),
    ("task_struct", "tgid"),
    ("task_struct", "real_parent"),
    ("task_struct", "exit_code"),
    ("task_struct", "loginuid"),
    ("task_struct", "files"),
    ("files_struct", "fdt"),
    ("fdtable", "fd"),
    ("fdtable", "max_fds"),
    ("file", "private_data"),
    ("socket", "type"),
    ("socket", "sk"),
    ("sock", "__sk_common.skc_family"),
    ("sock", "__sk_common.skc_num"),
    ("sock", "__sk_common.skc_dport"),
    ("sock", "__sk_common.skc_rcv_saddr"),
    ("sock", "__sk_common.skc_daddr"),
    ("sock", "__sk_common.skc_v6_rcv_saddr"),
    ("sock", "__sk_common.skc_v6_daddr"),
];

/// Parsed once: vmlinux BTF is several megabytes.
fn vmlinux() -> &'static KernelBtf {
    static BTF: OnceLock<KernelBtf> = OnceLock::new();
    BTF.get_or_init(|| {
        KernelBtf::from_file(Path::new(VMLINUX))
            .unwrap_or_else(|e| panic!("{VMLINUX} must be readable BTF: {e}"))
    })
}

fn kernel_offset(struct_name: &str, path: &str) -> u32 {
    vmlinux()
        .member_offset(struct_name, path)
        .unwrap_or_else(|e| panic!("{struct_name}.{path}: {e}"))
}

#[test]
fn kernel_fields_resolve_inside_their_struct() {
    for &(struct_name, path) in KERNEL_FIELDS {
        let offset = kernel_offset(struct_name, path);
        let size = vmlinux().struct_size(struct_name).unwrap();
        eprintln!("{struct_name}.{path} = {offset} (struct size {size})");
        assert!(
            offset < size,
            "{struct_name}.{path} = {offset} >= size {size}"
        );
    }
}

#[test]
fn kernel_tgid_follows_pid() {
    assert_eq!(
        kernel_offset("task_struct", "tgid"),
        kernel_offset("task_struct", "pid") + 4
    );
}

#[test]
fn kernel_sock_common_leads_sock() {
    assert_eq!(kernel_offset("sock", "__sk_common"), 0);
    assert!(vmlinux().struct_size("sock_common").unwrap() > 0);
    // Through sock or directly, sock_common's fields sit at the same place.
    for field in [
        "skc_family",
        "skc_num",
        "skc_dport",
        "skc_daddr",
        "skc_rcv_saddr",
    ] {
        let via_sock = kernel_offset("sock", &format!("__sk_common.{field}"));
        assert_eq!(via_sock, kernel_offset("sock_common", field), "{field}");
    }
}

#[test]
fn kernel_addrpair_is_compact() {
    let daddr = kernel_offset("sock", "__sk_common.skc_daddr");
    let rcv_saddr = kernel_offset("sock", "__sk_common.skc_rcv_saddr");
    assert!(
        daddr < rcv_saddr + 8,
        "skc_daddr {daddr}, skc_rcv_saddr {rcv_saddr}"
    );
}
