//! The host-wide append-only Merkle log (RFC 9162 section 2.1, which keeps the
//! RFC 6962 hashing): roots, inclusion proofs and consistency proofs, plus the
//! pure verifiers a relying party runs offline.
//!
//! The log must scale to hundreds of millions of leaves kept in SQLite, so the
//! tree is never materialised. Only *perfect* subtree hashes are stored: node
//! `(level, index)` covers leaves `[index * 2^level, (index + 1) * 2^level)` and
//! is written once, when its last leaf is appended ([`Frontier::append`]
//! returns exactly those nodes). Perfect nodes never change after that, so the
//! store is append-only too. Every root and proof for any tree size is then
//! rebuilt from O(log n) node reads: a range of leaves is split into perfect
//! subtrees, and the ragged right edge of a tree that is not a power of two is
//! folded from those pieces on the fly.

use sha2::{Digest, Sha256};

/// A SHA-256 output: leaf hashes, node hashes and roots.
pub type Hash = [u8; 32];

/// Length in bytes of every [`Hash`].
pub const HASH_SIZE: usize = 32;

/// Domain-separation prefix of leaf hashes (RFC 9162 section 2.1.1), so that a
/// leaf can never be passed off as an interior node.
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of interior node hashes.
const NODE_PREFIX: u8 = 0x01;

/// Upper bound on the length of any proof over a tree of at most `u64::MAX`
/// leaves: an inclusion proof has at most one sibling per level (64), a
/// consistency proof at most one hash more. Parsers use it to cap input.
pub const MAX_PROOF_LEN: usize = 65;

/// `SHA-256(0x00 || data)`: the hash of one leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(data);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([NODE_PREFIX]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// `SHA-256("")`: the root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Turns decoded wire bytes into a [`Hash`], refusing any other length, so that
/// every hash that reaches the verifiers has been length-checked once.
pub fn hash_from_slice(bytes: &[u8]) -> Result<Hash, ProofError> {
    Hash::try_from(bytes).map_err(|_| ProofError::WrongHashLength {
        actual: bytes.len(),
    })
}

/// Where perfect subtree hashes are read from: the SQLite store in the daemon,
/// [`MemoryNodes`] in tests and small in-memory trees.
pub trait NodeSource {
    /// Why a node could not be read (I/O, or a node that was never stored).
    type Error;

    /// The hash of the perfect subtree covering leaves
    /// `[index * 2^level, (index + 1) * 2^level)`; level 0 holds leaf hashes.
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// Why a root or proof could not be built from stored nodes.
#[derive(Debug, thiserror::Error)]
pub enum TreeError<E> {
    /// The leaf does not exist in a tree of that size.
    #[error("leaf index {index} is outside a tree of {size} leaves")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The tree size, in leaves.
        size: u64,
    },
    /// Consistency proofs exist only for `0 < size1 <= size2`: nothing can be
    /// proved about the empty tree, and trees never shrink.
    #[error("no consistency proof from tree size {size1} to tree size {size2} (needs 0 < size1 <= size2)")]
    InvalidSizes {
        /// The old tree size.
        size1: u64,
        /// The new tree size.
        size2: u64,
    },
    /// The node source failed, or does not hold a node the tree size implies.
    #[error("reading node (level {level}, index {index}) failed")]
    Source {
        /// The node's level, 0 being leaves.
        level: u32,
        /// The node's index within its level.
        index: u64,
        /// The source's error.
        #[source]
        source: E,
    },
}

/// Why a proof does not verify. Each variant names the first check that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// A hash on the wire was not 32 bytes long.
    #[error("a hash must be {HASH_SIZE} bytes, got {actual}")]
    WrongHashLength {
        /// Its length in bytes.
        actual: usize,
    },
    /// The leaf does not exist in a tree of that size.
    #[error("leaf index {index} is outside a tree of {size} leaves")]
    IndexOutOfRange {
        /// The proved leaf index.
        index: u64,
        /// The tree size, in leaves.
        size: u64,
    },
    /// The proof has the wrong number of hashes for these sizes or this index.
    #[error("proof has {actual} hashes, the tree shape needs {expected}")]
    WrongProofLength {
        /// Hashes the tree shape needs.
        expected: usize,
        /// Hashes the proof has.
        actual: usize,
    },
    /// The inclusion proof leads to a different root.
    #[error("inclusion proof does not lead to the expected root")]
    RootMismatch,
    /// Consistency with the empty tree proves nothing (transparency-dev's rule,
    /// adopted so that a size-0 checkpoint can never vouch for anything).
    #[error("consistency proofs from the empty tree are not accepted")]
    EmptyOldTree,
    /// Logs are append-only: the newer tree cannot be smaller.
    #[error("old tree size {size1} is larger than new tree size {size2}")]
    OldTreeLarger {
        /// The old tree size.
        size1: u64,
        /// The new tree size.
        size2: u64,
    },
    /// The proof does not reproduce the old root.
    #[error("consistency proof does not reproduce the old root")]
    OldRootMismatch,
    /// The proof does not reproduce the new root.
    #[error("consistency proof does not reproduce the new root")]
    NewRootMismatch,
}

/// The hash of the empty tree for size 0, otherwise the RFC 9162 root
/// `MTH(D[0:size])` from at most 64 node reads (one per set bit of `size`).
pub fn root<S: NodeSource>(src: &S, size: u64) -> Result<Hash, TreeError<S::Error>> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(src, 0, size)
}

/// RFC 9162 `PATH(index, D[0:size])`: sibling hashes from the leaf's sibling up
/// to the root's child.
pub fn inclusion_proof<S: NodeSource>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, TreeError<S::Error>> {
    if index >= size {
        return Err(TreeError::IndexOutOfRange { index, size });
    }
    read_ranges(src, &path_ranges(0, index, size))
}

/// RFC 9162 `PROOF(size1, D[0:size2])` for `0 < size1 <= size2`.
pub fn consistency_proof<S: NodeSource>(
    src: &S,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, TreeError<S::Error>> {
    if size1 == 0 || size1 > size2 {
        return Err(TreeError::InvalidSizes { size1, size2 });
    }
    read_ranges(src, &consistency_ranges(size1, size2))
}

/// RFC 9162 section 2.1.3.2: the root that `proof` leads to from `leaf_hash`
/// at `index` in a tree of `size` leaves. Fails if the proof has the wrong
/// shape; comparing the result with a trusted root is the caller's job (or
/// use [`verify_inclusion`]).
pub fn root_from_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let wrong_length = || ProofError::WrongProofLength {
        expected: path_ranges(0, index, size).len(),
        actual: proof.len(),
    };
    let mut fn_ = index;
    let mut sn = size - 1;
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            return Err(wrong_length());
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                // The right edge skips levels where it has no sibling.
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(wrong_length());
    }
    Ok(r)
}

/// Checks that `leaf_hash` is the leaf at `index` of the tree of `size` leaves
/// whose root is `root` (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if root_from_inclusion(leaf_hash, index, size, proof)? == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Checks that the tree of `size2` leaves with root `root2` extends the tree of
/// `size1` leaves with root `root1` (RFC 9162 section 2.1.4.2), with the extra
/// rule `size1 > 0`.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    root1: &Hash,
    root2: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if size1 == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    if size1 > size2 {
        return Err(ProofError::OldTreeLarger { size1, size2 });
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength {
                expected: 0,
                actual: proof.len(),
            });
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::NewRootMismatch)
        };
    }
    let wrong_length = || ProofError::WrongProofLength {
        expected: consistency_ranges(size1, size2).len(),
        actual: proof.len(),
    };
    // Step 1: a proof between different sizes is never empty.
    let Some((first_in_proof, rest_of_proof)) = proof.split_first() else {
        return Err(wrong_length());
    };
    // Step 2: when size1 is a power of two its root is the proof's seed node
    // and is not repeated in the proof.
    let (seed, path) = if size1.is_power_of_two() {
        (root1, proof)
    } else {
        (first_in_proof, rest_of_proof)
    };
    // Steps 3 and 4.
    let mut fn_ = size1 - 1;
    let mut sn = size2 - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5.
    let mut fr = *seed;
    let mut sr = *seed;
    // Step 6.
    for c in path {
        if sn == 0 {
            return Err(wrong_length());
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 7.
    if sn != 0 {
        return Err(wrong_length());
    }
    if fr != *root1 {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *root2 {
        return Err(ProofError::NewRootMismatch);
    }
    Ok(())
}

/// The compact range of the current tree: one perfect subtree root per set bit
/// of the size, largest (leftmost) first. It is all the writer needs in memory
/// to append leaves and compute the current root, whatever the tree size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    peaks: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the frontier of a stored tree of `size` leaves (after a
    /// restart) from its popcount(size) perfect subtree roots.
    pub fn from_nodes<S: NodeSource>(size: u64, src: &S) -> Result<Self, TreeError<S::Error>> {
        let peaks = perfect_pieces(0, size)
            .map(|(level, index)| read_node(src, level, index))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { size, peaks })
    }

    /// Appends one leaf hash and returns every perfect node this append
    /// completed, as `(level, index, hash)`: the leaf itself at level 0 first,
    /// then each newly completed ancestor. Storing all of them keeps the node
    /// store complete for [`root`] and the proof functions.
    ///
    /// A tree holds at most `u64::MAX` leaves; appending past that is not
    /// supported.
    pub fn append(&mut self, leaf: Hash) -> Vec<(u32, u64, Hash)> {
        let mut completed = vec![(0, self.size, leaf)];
        let mut hash = leaf;
        let mut level: u32 = 0;
        let mut index = self.size;
        // Each set low bit of the old size is a peak of the same level as the
        // node being carried; they merge like a binary increment.
        while self.size.checked_shr(level).unwrap_or(0) & 1 == 1 {
            let Some(left) = self.peaks.pop() else {
                break;
            };
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
            completed.push((level, index, hash));
        }
        self.peaks.push(hash);
        self.size += 1;
        completed
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The RFC 9162 root of the current tree.
    pub fn root(&self) -> Hash {
        fold_right_edge(&self.peaks).unwrap_or_else(empty_root)
    }
}

/// Every perfect node of a tree kept in memory, one `Vec` per level. For tests
/// and for small trees built on the fly (audit packs); the daemon's log lives
/// in SQLite behind the same [`NodeSource`] trait.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryNodes {
    levels: Vec<Vec<Hash>>,
}

/// [`MemoryNodes`] was asked for a node it does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("node (level {level}, index {index}) is not in memory")]
pub struct MissingNode {
    /// The node's level, 0 being leaves.
    pub level: u32,
    /// The node's index within its level.
    pub index: u64,
}

impl MemoryNodes {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree over the given leaf hashes, in order.
    pub fn from_leaf_hashes<I: IntoIterator<Item = Hash>>(leaves: I) -> Self {
        let mut nodes = Self::new();
        for leaf in leaves {
            nodes.append_leaf(leaf);
        }
        nodes
    }

    /// Appends a leaf hash and every perfect node it completes.
    pub fn append_leaf(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            let len = row.len();
            if len % 2 == 1 {
                return;
            }
            hash = node_hash(&row[len - 2], &row[len - 1]);
            level += 1;
        }
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }
}

impl NodeSource for MemoryNodes {
    type Error = MissingNode;

    fn node(&self, level: u32, index: u64) -> Result<Hash, MissingNode> {
        usize::try_from(level)
            .ok()
            .and_then(|level| self.levels.get(level))
            .and_then(|row| usize::try_from(index).ok().and_then(|index| row.get(index)))
            .copied()
            .ok_or(MissingNode { level, index })
    }
}

fn read_node<S: NodeSource>(src: &S, level: u32, index: u64) -> Result<Hash, TreeError<S::Error>> {
    src.node(level, index).map_err(|source| TreeError::Source {
        level,
        index,
        source,
    })
}

/// The perfect subtrees `(level, index)` that tile `[start, end)`, left to
/// right, for a range whose start is a multiple of the smallest power of two
/// not below its length (every RFC 9162 subtree is such a range): the pieces
/// follow the set bits of the length, largest first.
fn perfect_pieces(start: u64, end: u64) -> impl Iterator<Item = (u32, u64)> {
    let len = end.saturating_sub(start);
    let mut pos = start;
    (0..u64::BITS).rev().filter_map(move |level| {
        if (len >> level) & 1 == 1 {
            let piece = (level, pos >> level);
            pos += 1 << level;
            Some(piece)
        } else {
            None
        }
    })
}

/// RFC 9162 hashes a ragged right edge by pairing the pieces from the right:
/// `H(p0, H(p1, ... H(pk-1, pk)))`. `None` for no pieces.
fn fold_right_edge(pieces: &[Hash]) -> Option<Hash> {
    let (last, rest) = pieces.split_last()?;
    Some(
        rest.iter()
            .rev()
            .fold(*last, |right, left| node_hash(left, &right)),
    )
}

/// `MTH` of a non-empty RFC 9162 subtree `[start, end)` from its perfect pieces.
fn range_hash<S: NodeSource>(src: &S, start: u64, end: u64) -> Result<Hash, TreeError<S::Error>> {
    let pieces = perfect_pieces(start, end)
        .map(|(level, index)| read_node(src, level, index))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(fold_right_edge(&pieces).unwrap_or_else(empty_root))
}

fn read_ranges<S: NodeSource>(
    src: &S,
    ranges: &[(u64, u64)],
) -> Result<Vec<Hash>, TreeError<S::Error>> {
    ranges
        .iter()
        .map(|&(start, end)| range_hash(src, start, end))
        .collect()
}

/// The leaf ranges of the siblings on the path from the perfect node
/// `(level, index)` (which must lie inside the tree) up to the root of the tree
/// of `size` leaves, lowest first. Left siblings are always perfect; at most
/// one right sibling, the one on the tree's right edge, can be ragged, so its
/// hash costs O(log n) reads and the whole path O(log n).
fn path_ranges(mut level: u32, mut index: u64, size: u64) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    // Index of the right-edge node at the current level.
    let mut last = (size - 1) >> level;
    while last > 0 {
        if index & 1 == 1 {
            let sibling = index - 1;
            ranges.push((sibling << level, index << level));
        } else if index < last {
            let sibling = index + 1;
            let start = sibling << level;
            let end = if sibling < last {
                start + (1 << level)
            } else {
                size
            };
            ranges.push((start, end));
        }
        // Otherwise the node is on the right edge with nothing to its right:
        // RFC 9162 has no split at this level, so there is no sibling.
        index >>= 1;
        last >>= 1;
        level += 1;
    }
    ranges
}

/// The leaf ranges of RFC 9162 `PROOF(size1, D[0:size2])`, `0 < size1 <= size2`:
/// the last perfect subtree of the old tree (omitted when the old tree is
/// itself perfect, as the verifier knows its root) and its path to the new
/// root.
fn consistency_ranges(size1: u64, size2: u64) -> Vec<(u64, u64)> {
    if size1 == size2 {
        return Vec::new();
    }
    let level = size1.trailing_zeros();
    let index = (size1 - 1) >> level;
    let mut ranges = Vec::new();
    if !size1.is_power_of_two() {
        ranges.push((index << level, size1));
    }
    ranges.extend(path_ranges(level, index, size2));
    ranges
}

#[cfg(test)]
#[path = "merkle_tests.rs"]
mod tests;
