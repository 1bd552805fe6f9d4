//! Tree blobs come out of authenticated packs, but a bug in a writer (or a
//! key holder's forgery) must still never make restore panic or escape.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = gallra_format::tree::Tree::decode(data, "fuzz") {
        for node in &tree.nodes {
            assert!(gallra_format::tree::is_safe_name(&node.name));
        }
        assert_eq!(
            gallra_format::tree::Tree::decode(&tree.encode(), "fuzz").unwrap(),
            tree
        );
    }
});
