//! The postcard bodies behind authentication: index, snapshot, config and
//! tenant key. The first byte picks the decoder.
#![no_main]
use gallra_format::{Kind, from_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let _ = from_body::<gallra_format::index::IndexBody>(body, "fuzz", Kind::Index);
        }
        1 => {
            let _ = from_body::<gallra_format::snapshot::Snapshot>(body, "fuzz", Kind::Snapshot);
        }
        2 => {
            let _ = from_body::<gallra_format::repo_config::RepoConfig>(body, "fuzz", Kind::Config);
        }
        _ => {
            let _ = from_body::<gallra_format::tenant_key::TenantKeyBody>(
                body,
                "fuzz",
                Kind::TenantKey,
            );
        }
    }
});
