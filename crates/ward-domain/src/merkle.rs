//! RFC 6962 Merkle tree hashing over audit entries, kept as a compact frontier so appends are O(log n).

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// RFC 6962 leaf hash: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(data);
    hasher.finalize().into()
}

/// RFC 6962 interior node hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root of the empty tree: SHA-256 of the empty string (RFC 6962 section 2.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The roots of the perfect subtrees that make up a tree of `size` leaves, largest (leftmost) first.
///
/// This is all that is needed to append a leaf and to compute the root, so the store keeps it
/// beside the log head instead of re-reading every entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// One hash per set bit of `size`, from the most significant bit down.
    subtrees: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds a leaf (already hashed with [`leaf_hash`]).
    pub fn push(&mut self, leaf: Hash) {
        let mut carry = leaf;
        // Merge equal-sized subtrees while the low bits of the old size are set.
        let mut size = self.size;
        while size & 1 == 1 {
            let Some(left) = self.subtrees.pop() else {
                break;
            };
            carry = node_hash(&left, &carry);
            size >>= 1;
        }
        self.subtrees.push(carry);
        self.size += 1;
    }

    /// The RFC 6962 Merkle tree hash of all leaves so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.subtrees.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |right, left| node_hash(left, &right))
    }

    /// Serialises the frontier as the concatenated subtree hashes (the size is stored separately).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.subtrees.concat()
    }

    /// Rebuilds a frontier from [`Frontier::to_bytes`] and the tree size; `None` if they disagree.
    pub fn from_bytes(size: u64, bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(32) || bytes.len() / 32 != size.count_ones() as usize {
            return None;
        }
        let subtrees = bytes
            .chunks_exact(32)
            .map(|chunk| {
                let mut hash = [0u8; 32];
                hash.copy_from_slice(chunk);
                hash
            })
            .collect();
        Some(Self { size, subtrees })
    }
}

/// Merkle tree hash of a slice of leaf hashes, straight from the RFC's recursive definition.
/// Used to cross-check [`Frontier`] and to build inclusion proofs.
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = largest_power_of_two_below(n);
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

fn largest_power_of_two_below(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 6962 audit path (inclusion proof) for leaf `index` in the tree of `leaves`.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 || index >= n {
        return Vec::new();
    }
    let k = largest_power_of_two_below(n);
    if index < k {
        let mut path = inclusion_proof(&leaves[..k], index);
        path.push(root_of(&leaves[k..]));
        path
    } else {
        let mut path = inclusion_proof(&leaves[k..], index - k);
        path.push(root_of(&leaves[..k]));
        path
    }
}

/// The root and every leaf's inclusion proof at once (what [`inclusion_proof`] gives for each
/// index, in O(n log n) instead of O(n²)).
pub fn root_and_proofs(leaves: &[Hash]) -> (Hash, Vec<Vec<Hash>>) {
    match leaves.len() {
        0 => (empty_root(), Vec::new()),
        1 => (leaves[0], vec![Vec::new()]),
        n => {
            let k = largest_power_of_two_below(n);
            let (left, mut left_proofs) = root_and_proofs(&leaves[..k]);
            let (right, right_proofs) = root_and_proofs(&leaves[k..]);
            for proof in &mut left_proofs {
                proof.push(right);
            }
            left_proofs.extend(right_proofs.into_iter().map(|mut proof| {
                proof.push(left);
                proof
            }));
            (node_hash(&left, &right), left_proofs)
        }
    }
}

/// Checks an RFC 6962 inclusion proof (RFC 9162 section 2.1.3.2 algorithm).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    root_from_inclusion(leaf, index, size, proof).is_some_and(|computed| computed == *root)
}

/// The root that `proof` leads to from `leaf` at `index` in a tree of `size` leaves, or `None`
/// when the proof cannot belong to such a tree (index out of range, too few or too many hashes).
pub fn root_from_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash]) -> Option<Hash> {
    if index >= size {
        return None;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut result = *leaf;
    for sibling in proof {
        if snode == 0 {
            return None;
        }
        if fnode & 1 == 1 || fnode == snode {
            result = node_hash(sibling, &result);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            result = node_hash(&result, sibling);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    (snode == 0).then_some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn frontier_root_matches_recursive_definition_for_every_size() {
        let all = leaves(70);
        let mut frontier = Frontier::new();
        assert_eq!(frontier.root(), empty_root());
        for (i, leaf) in all.iter().enumerate() {
            frontier.push(*leaf);
            assert_eq!(frontier.root(), root_of(&all[..=i]), "size {}", i + 1);
            let restored = Frontier::from_bytes(frontier.size(), &frontier.to_bytes());
            assert_eq!(restored.as_ref(), Some(&frontier));
        }
    }

    #[test]
    fn frontier_from_bytes_rejects_mismatched_size() {
        let mut frontier = Frontier::new();
        frontier.push(leaf_hash(b"a"));
        frontier.push(leaf_hash(b"b"));
        frontier.push(leaf_hash(b"c"));
        assert!(Frontier::from_bytes(4, &frontier.to_bytes()).is_none());
        assert!(Frontier::from_bytes(3, &frontier.to_bytes()[..40]).is_none());
    }

    #[test]
    fn inclusion_proofs_verify_and_detect_tampering() {
        for n in 1..20 {
            let all = leaves(n);
            let root = root_of(&all);
            for i in 0..n {
                let proof = inclusion_proof(&all, i);
                assert!(
                    verify_inclusion(&all[i], i as u64, n as u64, &proof, &root),
                    "n={n} i={i}"
                );
                let other = leaf_hash(b"forged");
                assert!(!verify_inclusion(&other, i as u64, n as u64, &proof, &root));
            }
        }
    }

    #[test]
    fn all_proofs_at_once_match_one_at_a_time() {
        for n in 0..40 {
            let all = leaves(n);
            let (root, proofs) = root_and_proofs(&all);
            assert_eq!(root, root_of(&all), "n={n}");
            assert_eq!(proofs.len(), n);
            for (i, proof) in proofs.iter().enumerate() {
                assert_eq!(proof, &inclusion_proof(&all, i), "n={n} i={i}");
                assert_eq!(
                    root_from_inclusion(&all[i], i as u64, n as u64, proof),
                    Some(root)
                );
            }
        }
    }

    #[test]
    fn proofs_of_the_wrong_shape_lead_nowhere() {
        let all = leaves(10);
        let (root, proofs) = root_and_proofs(&all);
        let proof = &proofs[3];
        // One hash short, one too many, the index past the end, another index.
        assert_ne!(root_from_inclusion(&all[3], 3, 10, &proof[1..]), Some(root));
        let mut longer = proof.clone();
        longer.push(root);
        assert_eq!(root_from_inclusion(&all[3], 3, 10, &longer), None);
        assert_eq!(root_from_inclusion(&all[3], 10, 10, proof), None);
        // (A proof may fit trees of other sizes and lead to the same root: whoever signs a root
        // signs its size with it.)
        assert_ne!(root_from_inclusion(&all[3], 4, 10, proof), Some(root));
    }

    #[test]
    fn known_rfc6962_empty_root() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
