//! Tree blobs: one directory's entries, sorted by name.
//!
//! A tree blob's plaintext is the postcard encoding of [`Tree`]; its id is
//! HMAC-SHA256 of that plaintext under the tenant's chunk-id key, so an
//! unchanged directory is stored once.

use serde::{Deserialize, Serialize};

use super::{Id, Kind, from_body, to_body};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// One path component, raw bytes (Unix names need not be UTF-8).
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_secs: i64,
    pub mtime_nanos: u32,
    pub ctime_secs: i64,
    pub ctime_nanos: u32,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    /// File size in bytes (0 for directories and symlinks).
    pub size: u64,
    /// Data blobs of a file, in order.
    pub content: Vec<Id>,
    /// SHA-256 of a file's content as read.
    pub sha256: Option<[u8; 32]>,
    /// Tree blob of a directory.
    pub subtree: Option<Id>,
    /// Target of a symlink, raw bytes.
    pub link_target: Vec<u8>,
    /// The file changed while it was read: its content may be inconsistent.
    pub changed_while_read: bool,
}

impl Node {
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    pub fn encode(&self) -> Vec<u8> {
        to_body(self)
    }

    /// Decodes and validates a tree: names must be safe single components
    /// (no `/`, NUL, `.` or `..`, not empty), sorted and unique, so that a
    /// forged tree can never lead restore outside its target.
    pub fn decode(bytes: &[u8], name: &str) -> Result<Tree> {
        let tree: Tree = from_body(bytes, name, Kind::TreeBlob)?;
        for (i, node) in tree.nodes.iter().enumerate() {
            if !is_safe_name(&node.name) {
                return Err(Error::corrupt(
                    name,
                    format!("tree entry {:?} is not a safe file name", node.name_lossy()),
                ));
            }
            if i > 0 && tree.nodes[i - 1].name >= node.name {
                return Err(Error::corrupt(
                    name,
                    "tree entries are not sorted and unique",
                ));
            }
            if (node.kind == NodeKind::Dir) != node.subtree.is_some() {
                return Err(Error::corrupt(
                    name,
                    format!(
                        "tree entry {:?}: subtree does not match kind",
                        node.name_lossy()
                    ),
                ));
            }
        }
        Ok(tree)
    }

    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

pub fn is_safe_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(name: &[u8], kind: NodeKind) -> Node {
        Node {
            name: name.to_vec(),
            kind,
            mode: 0o644,
            uid: 1,
            gid: 2,
            mtime_secs: -5,
            mtime_nanos: 7,
            ctime_secs: 9,
            ctime_nanos: 0,
            dev: 1,
            ino: 2,
            nlink: 1,
            size: 0,
            content: vec![],
            sha256: None,
            subtree: (kind == NodeKind::Dir).then_some(Id([1; 32])),
            link_target: vec![],
            changed_while_read: false,
        }
    }

    #[test]
    fn unsafe_names_are_refused() {
        for bad in [&b".."[..], b".", b"", b"a/b", b"a\0b"] {
            let t = Tree {
                nodes: vec![node(bad, NodeKind::File)],
            };
            assert!(Tree::decode(&t.encode(), "t").is_err(), "{bad:?}");
        }
        let unsorted = Tree {
            nodes: vec![node(b"b", NodeKind::File), node(b"a", NodeKind::File)],
        };
        assert!(Tree::decode(&unsorted.encode(), "t").is_err());
    }

    proptest! {
        #[test]
        fn tree_round_trip(names in proptest::collection::btree_set("[a-zA-Z0-9 ._-]{1,12}", 0..10)) {
            let nodes: Vec<Node> = names.iter().filter(|n| *n != "." && *n != "..").map(|n| node(n.as_bytes(), NodeKind::Dir)).collect();
            let t = Tree { nodes };
            prop_assert_eq!(Tree::decode(&t.encode(), "t").unwrap(), t);
        }

        #[test]
        fn tree_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Tree::decode(&bytes, "t");
        }
    }
}
