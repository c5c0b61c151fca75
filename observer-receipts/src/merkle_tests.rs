//! Tests of the Merkle log against the RFC 6962 reference vectors, the
//! transparency-dev proof test data, a naive transcription of the RFC 9162
//! recursive definitions, and node-read budgets at production tree sizes.
//! Kept in one file: one suite over one set of reference vectors and the
//! helpers that read them.

use super::*;
use base64::Engine as _;
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const RFC6962_VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/vectors/merkle/rfc6962_vectors.json"
);
const TRANSPARENCY_DEV_TESTDATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/vectors/merkle/transparency-dev-testdata"
);

fn hex_hash(text: &str) -> Hash {
    hex::decode(text).unwrap().try_into().unwrap()
}

fn hex_hashes(value: &Value) -> Vec<Hash> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hex_hash(h.as_str().unwrap()))
        .collect()
}

fn load_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------
// Naive RFC 9162 section 2.1 definitions, transcribed literally (recursive,
// O(n) per call) as the reference the O(log n) implementation must match.

fn largest_power_of_two_below(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn naive_mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = largest_power_of_two_below(n);
            node_hash(&naive_mth(&leaves[..k]), &naive_mth(&leaves[k..]))
        }
    }
}

fn naive_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n == 1 {
        return Vec::new();
    }
    let k = largest_power_of_two_below(n);
    if m < k {
        let mut path = naive_path(m, &leaves[..k]);
        path.push(naive_mth(&leaves[k..]));
        path
    } else {
        let mut path = naive_path(m - k, &leaves[k..]);
        path.push(naive_mth(&leaves[..k]));
        path
    }
}

fn naive_subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if complete {
            Vec::new()
        } else {
            vec![naive_mth(leaves)]
        };
    }
    let k = largest_power_of_two_below(n);
    if m <= k {
        let mut proof = naive_subproof(m, &leaves[..k], complete);
        proof.push(naive_mth(&leaves[k..]));
        proof
    } else {
        let mut proof = naive_subproof(m - k, &leaves[k..], false);
        proof.push(naive_mth(&leaves[..k]));
        proof
    }
}

fn naive_consistency(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    naive_subproof(m, leaves, true)
}

/// Deterministic pseudo-random numbers (splitmix64), so failures reproduce.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

fn test_leaves(count: usize) -> Vec<Hash> {
    (0..count as u64)
        .map(|i| leaf_hash(&i.to_be_bytes()))
        .collect()
}

fn flip_bit(hash: &Hash, byte: usize, bit: u8) -> Hash {
    let mut flipped = *hash;
    flipped[byte] ^= 1 << bit;
    flipped
}

// ---------------------------------------------------------------------------
// Basic hashing.

#[test]
fn hash_primitives_follow_rfc_9162_prefixes() {
    assert_eq!(
        hex::encode(empty_root()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // The leaf hash of the empty input is SHA-256 of the single byte 0x00.
    assert_eq!(
        hex::encode(leaf_hash(b"")),
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    );
    let left = leaf_hash(b"a");
    let right = leaf_hash(b"b");
    let mut preimage = vec![0x01];
    preimage.extend_from_slice(&left);
    preimage.extend_from_slice(&right);
    assert_eq!(
        node_hash(&left, &right),
        <[u8; 32]>::from(Sha256::digest(&preimage))
    );
    assert_ne!(node_hash(&left, &right), node_hash(&right, &left));
}

#[test]
fn hash_from_slice_accepts_only_32_bytes() {
    assert_eq!(hash_from_slice(&[7u8; 32]), Ok([7u8; 32]));
    for len in [0, 1, 31, 33, 64] {
        assert_eq!(
            hash_from_slice(&vec![0u8; len]),
            Err(ProofError::WrongHashLength { actual: len })
        );
    }
}

// ---------------------------------------------------------------------------
// RFC 6962 reference vectors.

struct ReferenceVectors {
    leaf_inputs: Vec<Vec<u8>>,
    leaf_hashes: Vec<Hash>,
    levels: Vec<Vec<Hash>>,
    roots: Vec<Hash>,
    inclusion: Vec<(u64, u64, Hash, Hash, Vec<Hash>)>,
    consistency: Vec<(u64, u64, Hash, Hash, Vec<Hash>)>,
}

fn reference_vectors() -> ReferenceVectors {
    let json = load_json(Path::new(RFC6962_VECTORS));
    let leaf_inputs = json["leaf_inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| hex::decode(v.as_str().unwrap()).unwrap())
        .collect();
    let levels = json["node_hashes_by_level"]["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(hex_hashes)
        .collect();
    let inclusion = json["inclusion_proofs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["leaf_index"].as_u64().unwrap(),
                v["tree_size"].as_u64().unwrap(),
                hex_hash(v["leaf_hash"].as_str().unwrap()),
                hex_hash(v["root"].as_str().unwrap()),
                hex_hashes(&v["proof"]),
            )
        })
        .collect();
    let consistency = json["consistency_proofs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["size1"].as_u64().unwrap(),
                v["size2"].as_u64().unwrap(),
                hex_hash(v["root1"].as_str().unwrap()),
                hex_hash(v["root2"].as_str().unwrap()),
                hex_hashes(&v["proof"]),
            )
        })
        .collect();
    ReferenceVectors {
        leaf_inputs,
        leaf_hashes: hex_hashes(&json["leaf_hashes"]),
        levels,
        roots: hex_hashes(&json["roots_by_tree_size"]["roots"]),
        inclusion,
        consistency,
    }
}

#[test]
fn rfc6962_leaves_nodes_and_roots() {
    let v = reference_vectors();
    assert_eq!(v.leaf_inputs.len(), 8);
    assert_eq!(v.roots.len(), 9);
    let computed_leaves: Vec<Hash> = v.leaf_inputs.iter().map(|d| leaf_hash(d)).collect();
    assert_eq!(computed_leaves, v.leaf_hashes);

    let full = MemoryNodes::from_leaf_hashes(v.leaf_hashes.iter().copied());
    let mut node_count = 0;
    for (level, row) in v.levels.iter().enumerate() {
        for (index, expected) in row.iter().enumerate() {
            assert_eq!(full.node(level as u32, index as u64).unwrap(), *expected);
            node_count += 1;
        }
    }
    assert_eq!(node_count, 15);

    let mut frontier = Frontier::new();
    for (size, expected) in v.roots.iter().enumerate() {
        let prefix = MemoryNodes::from_leaf_hashes(v.leaf_hashes[..size].iter().copied());
        assert_eq!(
            root(&prefix, size as u64).unwrap(),
            *expected,
            "size {size}"
        );
        // The perfect nodes of a prefix are the same in the larger tree.
        assert_eq!(root(&full, size as u64).unwrap(), *expected, "size {size}");
        assert_eq!(frontier.root(), *expected, "size {size}");
        assert_eq!(frontier.size(), size as u64);
        assert_eq!(naive_mth(&v.leaf_hashes[..size]), *expected);
        if size < v.leaf_hashes.len() {
            frontier.append(v.leaf_hashes[size]);
        }
    }
}

/// Mutations in the families of transparency-dev's proofgen (leafIdx +1/-1/XOR
/// 2, treeSize *2 and /2, every proof bit position touched, hashes inserted,
/// removed, prepended and appended, wrong leaf and root). A size change that
/// leaves the RFC 9162 computation identical cannot be detected by any
/// verifier (see `inclusion_size_is_authenticated_by_the_root_only`), which is
/// why sizes are mutated by *2 and /2 like upstream and not by +1/-1.
fn inclusion_mutations(
    leaf: Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: Hash,
) -> Vec<(String, Hash, u64, u64, Vec<Hash>, Hash)> {
    let mut out = Vec::new();
    let mut push = |name: String, l: Hash, i: u64, s: u64, p: Vec<Hash>, r: Hash| {
        out.push((name, l, i, s, p, r));
    };
    push(
        "leaf index + 1".into(),
        leaf,
        index + 1,
        size,
        proof.to_vec(),
        root,
    );
    if let Some(i) = index.checked_sub(1) {
        push("leaf index - 1".into(), leaf, i, size, proof.to_vec(), root);
    }
    push(
        "leaf index ^ 2".into(),
        leaf,
        index ^ 2,
        size,
        proof.to_vec(),
        root,
    );
    push(
        "tree size * 2".into(),
        leaf,
        index,
        size * 2,
        proof.to_vec(),
        root,
    );
    push(
        "tree size / 2".into(),
        leaf,
        index,
        size / 2,
        proof.to_vec(),
        root,
    );
    push(
        "wrong leaf".into(),
        flip_bit(&leaf, 0, 0),
        index,
        size,
        proof.to_vec(),
        root,
    );
    push(
        "wrong root".into(),
        leaf,
        index,
        size,
        proof.to_vec(),
        flip_bit(&root, 31, 7),
    );
    push(
        "empty root".into(),
        leaf,
        index,
        size,
        proof.to_vec(),
        empty_root(),
    );
    for (pos, _) in proof.iter().enumerate() {
        for (byte, bit) in [(0, 0), (15, 3), (31, 7)] {
            let mut p = proof.to_vec();
            p[pos] = flip_bit(&p[pos], byte, bit);
            push(
                format!("proof[{pos}] byte {byte} bit {bit}"),
                leaf,
                index,
                size,
                p,
                root,
            );
        }
        let mut removed = proof.to_vec();
        removed.remove(pos);
        push(
            format!("removed proof[{pos}]"),
            leaf,
            index,
            size,
            removed,
            root,
        );
        let mut inserted = proof.to_vec();
        inserted.insert(pos, leaf_hash(b"inserted"));
        push(
            format!("inserted at {pos}"),
            leaf,
            index,
            size,
            inserted,
            root,
        );
    }
    let mut prepended_root = vec![root];
    prepended_root.extend_from_slice(proof);
    push(
        "preceding root".into(),
        leaf,
        index,
        size,
        prepended_root,
        root,
    );
    let mut appended_root = proof.to_vec();
    appended_root.push(root);
    push(
        "trailing root".into(),
        leaf,
        index,
        size,
        appended_root,
        root,
    );
    out
}

#[test]
fn rfc6962_inclusion_proofs_are_generated_exactly_and_mutations_rejected() {
    let v = reference_vectors();
    let full = MemoryNodes::from_leaf_hashes(v.leaf_hashes.iter().copied());
    assert_eq!(v.inclusion.len(), 7);
    let mut mutations_rejected = 0;
    for (index, size, leaf, expected_root, expected_proof) in &v.inclusion {
        let (index, size) = (*index, *size);
        assert_eq!(v.leaf_hashes[index as usize], *leaf);
        assert_eq!(v.roots[size as usize], *expected_root);
        assert_eq!(
            inclusion_proof(&full, index, size).unwrap(),
            *expected_proof,
            "PATH({index}, D[{size}])"
        );
        assert_eq!(
            naive_path(index as usize, &v.leaf_hashes[..size as usize]),
            *expected_proof
        );
        verify_inclusion(leaf, index, size, expected_proof, expected_root).unwrap();
        assert_eq!(
            root_from_inclusion(leaf, index, size, expected_proof).unwrap(),
            *expected_root
        );
        for (name, l, i, s, p, r) in
            inclusion_mutations(*leaf, index, size, expected_proof, *expected_root)
        {
            assert!(
                verify_inclusion(&l, i, s, &p, &r).is_err(),
                "({index},{size}) mutation {name} verified"
            );
            mutations_rejected += 1;
        }
    }
    assert!(mutations_rejected > 100, "{mutations_rejected}");
}

/// RFC 9162 inclusion verification authenticates the root; the tree size only
/// steers the hashing order. Where two sizes give the same order the proof
/// verifies for both, which is why checkpoints sign the size with the root.
#[test]
fn inclusion_size_is_authenticated_by_the_root_only() {
    let leaves = test_leaves(6);
    let tree5 = MemoryNodes::from_leaf_hashes(leaves[..5].iter().copied());
    let proof = inclusion_proof(&tree5, 1, 5).unwrap();
    let root5 = root(&tree5, 5).unwrap();
    verify_inclusion(&leaves[1], 1, 6, &proof, &root5).unwrap();
    let tree6 = MemoryNodes::from_leaf_hashes(leaves.iter().copied());
    assert_eq!(
        verify_inclusion(&leaves[1], 1, 6, &proof, &root(&tree6, 6).unwrap()),
        Err(ProofError::RootMismatch)
    );
}

fn consistency_mutations(
    size1: u64,
    size2: u64,
    root1: Hash,
    root2: Hash,
    proof: &[Hash],
) -> Vec<(String, u64, u64, Hash, Hash, Vec<Hash>)> {
    let mut out = Vec::new();
    let mut push = |name: String, s1: u64, s2: u64, r1: Hash, r2: Hash, p: Vec<Hash>| {
        out.push((name, s1, s2, r1, r2, p));
    };
    push(
        "size1 + 1".into(),
        size1 + 1,
        size2,
        root1,
        root2,
        proof.to_vec(),
    );
    push(
        "size1 - 1".into(),
        size1 - 1,
        size2,
        root1,
        root2,
        proof.to_vec(),
    );
    push(
        "size1 ^ 2".into(),
        size1 ^ 2,
        size2,
        root1,
        root2,
        proof.to_vec(),
    );
    push(
        "size2 * 2".into(),
        size1,
        size2 * 2,
        root1,
        root2,
        proof.to_vec(),
    );
    push(
        "size2 / 2".into(),
        size1,
        size2 / 2,
        root1,
        root2,
        proof.to_vec(),
    );
    push(
        "wrong root1".into(),
        size1,
        size2,
        flip_bit(&root1, 0, 1),
        root2,
        proof.to_vec(),
    );
    push(
        "wrong root2".into(),
        size1,
        size2,
        root1,
        flip_bit(&root2, 0, 1),
        proof.to_vec(),
    );
    if root1 != root2 {
        push(
            "swapped roots".into(),
            size1,
            size2,
            root2,
            root1,
            proof.to_vec(),
        );
    }
    for (pos, _) in proof.iter().enumerate() {
        for (byte, bit) in [(0, 0), (4, 4), (31, 7)] {
            let mut p = proof.to_vec();
            p[pos] = flip_bit(&p[pos], byte, bit);
            push(
                format!("proof[{pos}] byte {byte} bit {bit}"),
                size1,
                size2,
                root1,
                root2,
                p,
            );
        }
    }
    if !proof.is_empty() {
        push("empty proof".into(), size1, size2, root1, root2, Vec::new());
        push(
            "truncated proof".into(),
            size1,
            size2,
            root1,
            root2,
            proof[..proof.len() - 1].to_vec(),
        );
        let mut preceding = vec![proof[0]];
        preceding.extend_from_slice(proof);
        push(
            "preceding proof[0]".into(),
            size1,
            size2,
            root1,
            root2,
            preceding,
        );
    }
    for (name, extra) in [
        ("root1", root1),
        ("root2", root2),
        ("garbage", leaf_hash(b"garbage")),
    ] {
        let mut preceding = vec![extra];
        preceding.extend_from_slice(proof);
        push(
            format!("preceding {name}"),
            size1,
            size2,
            root1,
            root2,
            preceding,
        );
        let mut trailing = proof.to_vec();
        trailing.push(extra);
        push(
            format!("trailing {name}"),
            size1,
            size2,
            root1,
            root2,
            trailing,
        );
    }
    out
}

#[test]
fn rfc6962_consistency_proofs_are_generated_exactly_and_mutations_rejected() {
    let v = reference_vectors();
    let full = MemoryNodes::from_leaf_hashes(v.leaf_hashes.iter().copied());
    assert_eq!(v.consistency.len(), 5);
    let mut mutations_rejected = 0;
    for (size1, size2, root1, root2, expected_proof) in &v.consistency {
        let (size1, size2) = (*size1, *size2);
        assert_eq!(v.roots[size1 as usize], *root1);
        assert_eq!(v.roots[size2 as usize], *root2);
        assert_eq!(
            consistency_proof(&full, size1, size2).unwrap(),
            *expected_proof,
            "PROOF({size1}, D[{size2}])"
        );
        assert_eq!(
            naive_consistency(size1 as usize, &v.leaf_hashes[..size2 as usize]),
            *expected_proof
        );
        verify_consistency(size1, size2, root1, root2, expected_proof).unwrap();
        for (name, s1, s2, r1, r2, p) in
            consistency_mutations(size1, size2, *root1, *root2, expected_proof)
        {
            assert!(
                verify_consistency(s1, s2, &r1, &r2, &p).is_err(),
                "({size1},{size2}) mutation {name} verified"
            );
            mutations_rejected += 1;
        }
    }
    assert!(mutations_rejected > 80, "{mutations_rejected}");
}

// ---------------------------------------------------------------------------
// transparency-dev test data.

fn json_files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                assert_eq!(path.extension().unwrap(), "json", "{}", path.display());
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn base64_field(value: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(value.as_str().unwrap())
        .unwrap()
}

/// The `consistency/additional` files fill roots the check never reaches with
/// the ASCII placeholders "don't care 1" / "don't care 2", which no 32-byte
/// API can carry. Their only role is equality, so they become distinct 32-byte
/// values (SHA-256 of the placeholder); equal placeholders stay equal.
fn decode_hash_or_placeholder(value: &Value, placeholders: &mut usize) -> Result<Hash, ProofError> {
    let bytes = base64_field(value);
    if bytes.starts_with(b"don't care") {
        *placeholders += 1;
        return Ok(Sha256::digest(&bytes).into());
    }
    hash_from_slice(&bytes)
}

fn decode_proof(value: &Value) -> Result<Vec<Hash>, ProofError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|h| hash_from_slice(&base64_field(h)))
            .collect(),
        other => panic!("proof is neither null nor an array: {other}"),
    }
}

#[test]
fn transparency_dev_inclusion_testdata() {
    let files = json_files_under(&Path::new(TRANSPARENCY_DEV_TESTDATA).join("inclusion"));
    assert_eq!(files.len(), 98);
    let (mut rejected_at_decoding, mut verified, mut agreed) = (0, 0, 0);
    for file in &files {
        let case = load_json(file);
        let want_err = case["wantErr"].as_bool().unwrap();
        let mut placeholders = 0;
        let decoded = (|| {
            Ok::<_, ProofError>((
                decode_hash_or_placeholder(&case["leafHash"], &mut placeholders)?,
                decode_hash_or_placeholder(&case["root"], &mut placeholders)?,
                decode_proof(&case["proof"])?,
            ))
        })();
        assert_eq!(placeholders, 0, "{}", file.display());
        let outcome = match decoded {
            Err(err) => {
                // Garbage, empty and 9-byte "WrongLeaf" values: refused as
                // soon as they are turned into hashes, which is where wire
                // input enters this module.
                assert!(matches!(err, ProofError::WrongHashLength { .. }));
                rejected_at_decoding += 1;
                Err(err)
            }
            Ok((leaf, root, proof)) => {
                verified += 1;
                verify_inclusion(
                    &leaf,
                    case["leafIdx"].as_u64().unwrap(),
                    case["treeSize"].as_u64().unwrap(),
                    &proof,
                    &root,
                )
            }
        };
        assert_eq!(
            outcome.is_err(),
            want_err,
            "{}: {outcome:?}",
            file.display()
        );
        agreed += 1;
    }
    assert_eq!((rejected_at_decoding, verified, agreed), (26, 72, 98));
}

#[test]
fn transparency_dev_consistency_testdata() {
    let files = json_files_under(&Path::new(TRANSPARENCY_DEV_TESTDATA).join("consistency"));
    assert_eq!(files.len(), 98);
    let (mut rejected_at_decoding, mut verified, mut agreed) = (0, 0, 0);
    let mut files_with_placeholders = 0;
    let mut empty_old_tree_rejections = Vec::new();
    for file in &files {
        let case = load_json(file);
        let want_err = case["wantErr"].as_bool().unwrap();
        let mut placeholders = 0;
        let decoded = (|| {
            Ok::<_, ProofError>((
                decode_hash_or_placeholder(&case["root1"], &mut placeholders)?,
                decode_hash_or_placeholder(&case["root2"], &mut placeholders)?,
                decode_proof(&case["proof"])?,
            ))
        })();
        if placeholders > 0 {
            assert!(file.to_str().unwrap().contains("/additional/"));
            files_with_placeholders += 1;
        }
        let outcome = match decoded {
            Err(err) => {
                assert!(matches!(err, ProofError::WrongHashLength { .. }));
                rejected_at_decoding += 1;
                Err(err)
            }
            Ok((root1, root2, proof)) => {
                verified += 1;
                verify_consistency(
                    case["size1"].as_u64().unwrap(),
                    case["size2"].as_u64().unwrap(),
                    &root1,
                    &root2,
                    &proof,
                )
            }
        };
        if outcome == Err(ProofError::EmptyOldTree) {
            empty_old_tree_rejections.push(file.file_stem().unwrap().to_str().unwrap().to_owned());
        }
        assert_eq!(
            outcome.is_err(),
            want_err,
            "{}: {outcome:?}",
            file.display()
        );
        agreed += 1;
    }
    assert_eq!((rejected_at_decoding, verified, agreed), (16, 82, 98));
    assert_eq!(files_with_placeholders, 11);
    // The size1 > 0 rule decides the three files the README names, among
    // others with size1 = 0.
    for name in [
        "size1-is-zero-and-does-not-equal-size2",
        "size1-is-zero-and-size2-is-not-zero",
        "sizes-are-equal-zero-and-proof-is-empty",
    ] {
        assert!(
            empty_old_tree_rejections.iter().any(|n| n == name),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------
// Property-style test against the naive definitions.

#[test]
fn random_trees_match_the_rfc_definitions() {
    let mut rng = SplitMix64(0x6d65_726b_6c65);
    let mut sizes: Vec<usize> = vec![
        1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 255, 256, 257, 1023, 1024, 1025,
    ];
    sizes.extend((0..12).map(|_| 1 + rng.below(2000) as usize));
    let (mut inclusion_checked, mut consistency_checked, mut naive_compared) = (0u64, 0u64, 0u64);
    for &n in &sizes {
        let leaves = test_leaves(n);
        let nodes = MemoryNodes::from_leaf_hashes(leaves.iter().copied());
        assert_eq!(nodes.size(), n as u64);

        // Roots of every prefix: Frontier, stored nodes, naive (sampled).
        let mut frontier = Frontier::new();
        for (k, leaf) in leaves.iter().enumerate() {
            assert_eq!(frontier.root(), root(&nodes, k as u64).unwrap());
            if k % 97 == 0 || k + 1 == n {
                assert_eq!(frontier.root(), naive_mth(&leaves[..k]));
            }
            frontier.append(*leaf);
        }
        let tree_root = root(&nodes, n as u64).unwrap();
        assert_eq!(frontier.root(), tree_root);
        assert_eq!(tree_root, naive_mth(&leaves));

        // Every inclusion proof verifies; a sample equals PATH exactly.
        for index in 0..n {
            let proof = inclusion_proof(&nodes, index as u64, n as u64).unwrap();
            verify_inclusion(&leaves[index], index as u64, n as u64, &proof, &tree_root).unwrap();
            if index % 53 == 0 || index + 1 == n {
                assert_eq!(proof, naive_path(index, &leaves));
                naive_compared += 1;
            }
            if let Some(first) = proof.first() {
                let mut tampered = proof.clone();
                tampered[0] = flip_bit(first, 9, 2);
                assert_eq!(
                    verify_inclusion(
                        &leaves[index],
                        index as u64,
                        n as u64,
                        &tampered,
                        &tree_root
                    ),
                    Err(ProofError::RootMismatch)
                );
            }
            inclusion_checked += 1;
        }

        // Consistency from every smaller size m, for the full tree and for a
        // random intermediate size.
        let mid = 1 + rng.below(n as u64) as usize;
        for size2 in [n, mid] {
            let root2 = root(&nodes, size2 as u64).unwrap();
            for size1 in 1..=size2 {
                let root1 = root(&nodes, size1 as u64).unwrap();
                let proof = consistency_proof(&nodes, size1 as u64, size2 as u64).unwrap();
                verify_consistency(size1 as u64, size2 as u64, &root1, &root2, &proof).unwrap();
                if size1 % 61 == 0 || size1 == size2 || size1 == 1 {
                    assert_eq!(proof, naive_consistency(size1, &leaves[..size2]));
                    naive_compared += 1;
                }
                if size1 < size2 {
                    assert!(verify_consistency(
                        size1 as u64,
                        size2 as u64,
                        &root1,
                        &flip_bit(&root2, 3, 3),
                        &proof
                    )
                    .is_err());
                }
                consistency_checked += 1;
            }
        }
    }
    assert!(inclusion_checked > 5_000, "{inclusion_checked}");
    assert!(consistency_checked > 5_000, "{consistency_checked}");
    assert!(naive_compared > 200, "{naive_compared}");
}

// ---------------------------------------------------------------------------
// Frontier persistence.

/// A node store like the daemon's SQLite table: whatever `Frontier::append`
/// returned, keyed by (level, index).
#[derive(Default)]
struct MapNodes(RefCell<HashMap<(u32, u64), Hash>>);

impl NodeSource for MapNodes {
    type Error = MissingNode;

    fn node(&self, level: u32, index: u64) -> Result<Hash, MissingNode> {
        self.0
            .borrow()
            .get(&(level, index))
            .copied()
            .ok_or(MissingNode { level, index })
    }
}

#[test]
fn frontier_emits_exactly_the_completed_perfect_nodes_and_resumes() {
    let leaves = test_leaves(300);
    let reference = MemoryNodes::from_leaf_hashes(leaves.iter().copied());
    let store = MapNodes::default();
    let mut frontier = Frontier::new();
    for (k, leaf) in leaves.iter().enumerate() {
        let completed = frontier.append(*leaf);
        // A leaf completes one node per trailing one bit of the old size.
        assert_eq!(completed.len(), 1 + (k as u64).trailing_ones() as usize);
        assert_eq!(completed[0], (0, k as u64, *leaf));
        for (level, index, hash) in completed {
            assert_eq!(reference.node(level, index).unwrap(), hash);
            let end = (index + 1) << level;
            assert_eq!(end, k as u64 + 1, "node ({level},{index}) completed early");
            assert!(store.0.borrow_mut().insert((level, index), hash).is_none());
        }
        let size = k as u64 + 1;
        let resumed = Frontier::from_nodes(size, &store).unwrap();
        assert_eq!(resumed, frontier);
        assert_eq!(root(&store, size).unwrap(), frontier.root());
    }
    // Every perfect node of the 300-leaf tree was emitted exactly once.
    let expected_nodes: usize = (0..9).map(|level| 300usize >> level).sum();
    assert_eq!(store.0.borrow().len(), expected_nodes);

    // Resuming mid-way and appending gives the same tree as never stopping.
    let mut resumed = Frontier::from_nodes(137, &store).unwrap();
    for leaf in &leaves[137..] {
        resumed.append(*leaf);
    }
    assert_eq!(resumed, frontier);
}

#[test]
fn errors_name_the_problem() {
    let nodes = MemoryNodes::from_leaf_hashes(test_leaves(5));
    assert!(matches!(
        inclusion_proof(&nodes, 5, 5),
        Err(TreeError::IndexOutOfRange { index: 5, size: 5 })
    ));
    assert!(matches!(
        consistency_proof(&nodes, 0, 5),
        Err(TreeError::InvalidSizes { size1: 0, size2: 5 })
    ));
    assert!(matches!(
        consistency_proof(&nodes, 4, 3),
        Err(TreeError::InvalidSizes { size1: 4, size2: 3 })
    ));
    // Asking for a size the store does not hold names the missing node.
    match root(&nodes, 8) {
        Err(TreeError::Source {
            level,
            index,
            source,
        }) => {
            assert_eq!((level, index), (3, 0));
            assert_eq!(source, MissingNode { level: 3, index: 0 });
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Frontier::from_nodes(6, &nodes),
        Err(TreeError::Source {
            level: 1,
            index: 2,
            ..
        })
    ));

    let leaf = test_leaves(1)[0];
    assert_eq!(
        verify_inclusion(&leaf, 0, 0, &[], &empty_root()),
        Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
    );
    let proof = inclusion_proof(&nodes, 1, 5).unwrap();
    let root5 = root(&nodes, 5).unwrap();
    assert_eq!(
        verify_inclusion(&test_leaves(2)[1], 1, 5, &proof[..2], &root5),
        Err(ProofError::WrongProofLength {
            expected: 3,
            actual: 2
        })
    );
    let root3 = root(&nodes, 3).unwrap();
    assert_eq!(
        verify_consistency(0, 0, &empty_root(), &empty_root(), &[]),
        Err(ProofError::EmptyOldTree)
    );
    assert_eq!(
        verify_consistency(5, 3, &root5, &root3, &[]),
        Err(ProofError::OldTreeLarger { size1: 5, size2: 3 })
    );
    let consistency = consistency_proof(&nodes, 3, 5).unwrap();
    assert_eq!(
        verify_consistency(3, 5, &root5, &root5, &consistency),
        Err(ProofError::OldRootMismatch)
    );
    assert_eq!(
        verify_consistency(3, 5, &root3, &root3, &consistency),
        Err(ProofError::NewRootMismatch)
    );
    assert_eq!(
        verify_consistency(5, 5, &root5, &root5, &consistency),
        Err(ProofError::WrongProofLength {
            expected: 0,
            actual: 4
        })
    );
}

// ---------------------------------------------------------------------------
// Node-read budget at production sizes.

/// A consistent tree of any size in O(1) memory: every leaf is the same hash,
/// so the perfect node of level L is `H_L = H(H_{L-1}, H_{L-1})` whatever its
/// index. It counts reads to check the O(log n) budget; the small-tree tests
/// above cover correctness with distinct leaves.
struct UniformNodes {
    by_level: Vec<Hash>,
    reads: Cell<u64>,
}

impl UniformNodes {
    fn new() -> Self {
        let mut by_level = vec![leaf_hash(b"uniform")];
        for level in 1..64 {
            let below = by_level[level - 1];
            by_level.push(node_hash(&below, &below));
        }
        Self {
            by_level,
            reads: Cell::new(0),
        }
    }

    fn take_reads(&self) -> u64 {
        self.reads.replace(0)
    }
}

impl NodeSource for UniformNodes {
    type Error = std::convert::Infallible;

    fn node(&self, level: u32, _index: u64) -> Result<Hash, Self::Error> {
        self.reads.set(self.reads.get() + 1);
        Ok(self.by_level[level as usize])
    }
}

#[test]
fn node_reads_stay_logarithmic_for_hundreds_of_millions_of_leaves() {
    let src = UniformNodes::new();
    let mut rng = SplitMix64(42);
    let mut sizes: Vec<u64> = vec![
        300_000_000,
        (1 << 28) - 1,
        1 << 28,
        (1 << 28) + 1,
        987_654_321,
        u64::MAX >> 1,
        u64::MAX,
    ];
    sizes.extend((0..40).map(|_| 1 + rng.below(1_000_000_000)));
    let (mut max_root, mut max_inclusion, mut max_consistency) = (0, 0, 0);
    // The same maxima over the sizes below 2^30 (about a billion leaves).
    let mut below_2_30 = (0, 0, 0);
    for &size in &sizes {
        let bits = u64::from(u64::BITS - size.leading_zeros());
        let tree_root = root(&src, size).unwrap();
        assert_eq!(src.take_reads(), u64::from(size.count_ones()));
        max_root = max_root.max(size.count_ones());
        if size < 1 << 30 {
            below_2_30.0 = below_2_30.0.max(size.count_ones());
        }

        for index in [0, size / 3, size / 2, size.saturating_sub(2), size - 1] {
            let proof = inclusion_proof(&src, index, size).unwrap();
            let reads = src.take_reads();
            assert!(reads <= 2 * bits, "inclusion {index}/{size}: {reads} reads");
            max_inclusion = max_inclusion.max(reads);
            if size < 1 << 30 {
                below_2_30.1 = below_2_30.1.max(reads);
            }
            verify_inclusion(&src.by_level[0], index, size, &proof, &tree_root).unwrap();
        }
        for size1 in [1, size / 3, size / 2 + 1, size - 1, size].map(|s| s.clamp(1, size)) {
            let root1 = root(&src, size1).unwrap();
            src.take_reads();
            let proof = consistency_proof(&src, size1, size).unwrap();
            let reads = src.take_reads();
            assert!(
                reads <= 2 * bits + 1,
                "consistency {size1}/{size}: {reads} reads"
            );
            max_consistency = max_consistency.max(reads);
            if size < 1 << 30 {
                below_2_30.2 = below_2_30.2.max(reads);
            }
            verify_consistency(size1, size, &root1, &tree_root, &proof).unwrap();
        }
    }
    println!(
        "max node reads over {} sizes up to 2^64-1 (root, inclusion, consistency): \
         {:?}; sizes below 2^30: {below_2_30:?}",
        sizes.len(),
        (max_root, max_inclusion, max_consistency)
    );
    assert!(below_2_30.1 <= 60 && below_2_30.2 <= 61, "{below_2_30:?}");
}
