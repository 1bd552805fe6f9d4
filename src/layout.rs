//! Where every object of a repository lives: docs/FORMAT.md section 8 as
//! code. Every object path gallra writes, reads or lists is built here and
//! nowhere else, so the layout cannot drift in one caller, and the tests
//! below pin each path string byte for byte (the fixture test pins the
//! whole of it on a real repository).
//!
//! Pure: no I/O, and it knows nothing above `format::Id` and the tenant
//! name's mapping to a store component, so the store, the lock and the
//! audit trail can use it without importing the repository.
//!
//! A *folder* here is a listing prefix without its trailing `/`, as
//! `Store::list` takes it.

use crate::format::Id;
use crate::tenant_name;

/// `config`: the repository's id and parameters (FORMAT.md 11.1).
pub const CONFIG_PATH: &str = "config";

/// `keys`: the folder of master-key slots (FORMAT.md 11.2).
pub const KEYS_FOLDER: &str = "keys";

/// `keys/<slot>`: one master-key slot (FORMAT.md 11.2). The slot is part of
/// the slot's associated data, so a reader takes it from this name.
pub fn slot_path(slot: &str) -> String {
    format!("{KEYS_FOLDER}/{slot}")
}

/// Key epochs (format version 2) live under this folder (FORMAT.md 11.4).
pub const KEY_EPOCHS_FOLDER: &str = "key-epochs";

/// `key-epochs/<32 hex digits of the epoch id>` (FORMAT.md 11.4).
pub fn key_epoch_path(id: &[u8; 16]) -> String {
    format!("{KEY_EPOCHS_FOLDER}/{}", hex::encode(id))
}

/// The epoch id a `key-epochs/` path names, if it is one.
pub fn key_epoch_id_of_path(path: &str) -> Option<[u8; 16]> {
    let name = path.strip_prefix(KEY_EPOCHS_FOLDER)?.strip_prefix('/')?;
    if name.len() != 32 || !name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    hex::decode(name).ok()?.try_into().ok()
}

/// Tenants whose key was destroyed since the last rotation, so that a
/// rotation is due (FORMAT.md 11.4).
pub const SHRED_DUE_FOLDER: &str = "key-epochs-due";

/// `key-epochs-due/<tenant component>`.
pub fn shred_due_path(tenant: &str) -> String {
    format!("{SHRED_DUE_FOLDER}/{}", tenant_name::component(tenant))
}

/// Tenants whose key a rotation found wrapped by the master key (format
/// version 1) and rewrapped (FORMAT.md 11.4): copies from before open with
/// the key file. Never removed.
pub const ONCE_MASTER_WRAPPED_FOLDER: &str = "key-epochs-v1";

/// `key-epochs-v1/<tenant component>`.
pub fn once_master_wrapped_path(tenant: &str) -> String {
    format!(
        "{ONCE_MASTER_WRAPPED_FOLDER}/{}",
        tenant_name::component(tenant)
    )
}

/// `tenants`: the folder whose subfolders are the tenants (FORMAT.md 8).
pub const TENANTS_FOLDER: &str = "tenants";

/// `tenants/<t>`: a tenant's folder (FORMAT.md 8). Every path of a tenant
/// is built from this, so that its name goes through the one mapping to a
/// store component (`crate::tenant_name`).
pub fn tenant_prefix(tenant: &str) -> String {
    format!("{TENANTS_FOLDER}/{}", tenant_name::component(tenant))
}

/// The tenant whose folder `path` is in (`tenants/<t>/...`).
pub fn tenant_of_path(path: &str) -> Option<String> {
    let mut parts = path.split('/');
    match (parts.next(), parts.next()) {
        (Some(TENANTS_FOLDER), Some(component)) => tenant_name::from_component(component),
        _ => None,
    }
}

/// `tenants/<t>/key`: the tenant's wrapped root key (FORMAT.md 11.3).
pub fn tenant_key_path(tenant: &str) -> String {
    format!("{}/key", tenant_prefix(tenant))
}

/// `tenants/<t>/holdings`: what a fleet server's primary holds of the
/// tenant, for its lifecycle host's prune (FORMAT.md 17.12).
pub fn holdings_path(tenant: &str) -> String {
    format!("{}/holdings", tenant_prefix(tenant))
}

/// `tenants/<t>/packs`: the tenant's packs, in 256 shard folders (FORMAT.md 13.1).
pub fn packs_folder(tenant: &str) -> String {
    format!("{}/packs", tenant_prefix(tenant))
}

/// `tenants/<t>/packs/<xx>/<pack id>`, `<xx>` the id's first two hex
/// digits (FORMAT.md 13.1). Readers look for a pack only here.
pub fn pack_path(tenant: &str, id: &Id) -> String {
    let hex = id.to_hex();
    format!("{}/{}/{hex}", packs_folder(tenant), &hex[..2])
}

/// `tenants/<t>/index`: the tenant's index objects (FORMAT.md 14).
pub fn index_folder(tenant: &str) -> String {
    format!("{}/index", tenant_prefix(tenant))
}

/// `tenants/<t>/index/<index id>` (FORMAT.md 14).
pub fn index_path(tenant: &str, id: &Id) -> String {
    format!("{}/{id}", index_folder(tenant))
}

/// `tenants/<t>/snapshots`: the tenant's snapshots (FORMAT.md 15.1).
pub fn snapshots_folder(tenant: &str) -> String {
    format!("{}/snapshots", tenant_prefix(tenant))
}

/// `tenants/<t>/snapshots/<snapshot id>` (FORMAT.md 15.1).
pub fn snapshot_path(tenant: &str, id: &Id) -> String {
    format!("{}/{id}", snapshots_folder(tenant))
}

/// `tenants/<t>/locks`: the tenant's locks, plain JSON and no part of its
/// data (FORMAT.md 8, 17.6).
pub fn locks_folder(tenant: &str) -> String {
    format!("{}/locks", tenant_prefix(tenant))
}

/// `tenants/<t>/locks/exclusive`: the one exclusive lock (FORMAT.md 17.6).
pub fn exclusive_lock_path(tenant: &str) -> String {
    format!("{}/exclusive", locks_folder(tenant))
}

/// `tenants/<t>/locks/shared-<r>`, `<r>` 16 random hex digits (FORMAT.md 17.6).
pub fn shared_lock_path(tenant: &str, random_hex: &str) -> String {
    format!("{}/shared-{random_hex}", locks_folder(tenant))
}

/// `locks-selftest`: probe objects of the conditional-create self-test,
/// outside `tenants/` so that no tenant's reader sees them (FORMAT.md 8).
pub const LOCKS_SELFTEST_FOLDER: &str = "locks-selftest";

/// `locks-selftest/<r>` (FORMAT.md 8, 17.6).
pub fn locks_selftest_path(random_hex: &str) -> String {
    format!("{LOCKS_SELFTEST_FOLDER}/{random_hex}")
}

/// `lifecycle/events`: accepted lifecycle events, repository-wide (FORMAT.md 17.9).
pub const EVENTS_PREFIX: &str = "lifecycle/events";

/// `lifecycle/rules`: a fleet server's retention rules, for its lifecycle
/// host to compare with its own (FORMAT.md 17.13).
pub const RULES_PATH: &str = "lifecycle/rules";

/// `lifecycle/events/<event id>` (FORMAT.md 17.9).
pub fn event_path(id: &str) -> String {
    format!("{EVENTS_PREFIX}/{id}")
}

/// The event id an event object's path names; the path itself when it is
/// not under `lifecycle/events/`, so that a message still names something.
pub fn event_id_of_path(path: &str) -> &str {
    path.strip_prefix(EVENTS_PREFIX)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(path)
}

/// `audit`: every host's audit trail, repository-wide (FORMAT.md 17.10).
pub const AUDIT_FOLDER: &str = "audit";

/// `audit/<host>`: one host's chain of records (FORMAT.md 17.10).
pub fn audit_chain_folder(host: &str) -> String {
    format!("{AUDIT_FOLDER}/{host}")
}

/// `audit/<host>/<seq>-<h>`: `<seq>` 12 decimal digits so that names sort
/// in seq order, `<h>` the record hash's first 16 hex digits (FORMAT.md 17.10).
pub fn audit_record_path(host: &str, seq: u64, hash_prefix: &str) -> String {
    format!("{}/{seq:012}-{hash_prefix}", audit_chain_folder(host))
}

/// `audit-heads`: where each host's chain ends, outside `audit/`, whose
/// objects are records (FORMAT.md 17.10a).
pub const AUDIT_HEADS_FOLDER: &str = "audit-heads";

/// `audit-heads/<host>`, overwritten after every append (FORMAT.md 17.10a).
pub fn audit_head_path(host: &str) -> String {
    format!("{AUDIT_HEADS_FOLDER}/{host}")
}

/// The host an audit head's path names; the path itself when it is not
/// under `audit-heads/`.
pub fn host_of_audit_head_path(path: &str) -> &str {
    path.strip_prefix(AUDIT_HEADS_FOLDER)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(path)
}

/// Whether `path` is inside `folder` (not merely a name that starts the
/// same, as `tenants/ab` does `tenants/abc/key`).
pub fn is_under(path: &str, folder: &str) -> bool {
    path.strip_prefix(folder)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// `deletion-probe/<r>`: never written; the name `Store::s3_protection`
/// deletes to learn whether its credentials may delete (FORMAT.md 8, 17.6).
pub fn deletion_probe_path(random_hex: &str) -> String {
    format!("{DELETION_PROBE_FOLDER}/{random_hex}")
}

pub const DELETION_PROBE_FOLDER: &str = "deletion-probe";

/// Whether `path` is a key object (a tenant's key or a key epoch), whose
/// later versions a view of the past offers beside the one of its time.
pub fn is_key_object(path: &str) -> bool {
    let mut parts = path.split('/');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(KEY_EPOCHS_FOLDER), Some(_), None, None)
            | (Some(TENANTS_FOLDER), Some(_), Some("key"), None)
    )
}

/// Whether `path` is a lock or a lock self-test probe: the objects every
/// job deletes when it is done, which the fleet's policy lets it delete
/// and Object Lock leaves unlocked (docs/IMMUTABLE.md).
pub fn is_lock_object(path: &str) -> bool {
    let mut parts = path.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(LOCKS_SELFTEST_FOLDER), Some(_), None) => true,
        (Some(TENANTS_FOLDER), Some(_), Some("locks")) => parts.next().is_some(),
        _ => false,
    }
}

/// Whether `path` is a tenant's pack, index object or snapshot: the
/// objects named by their hash, which ship copies and compares.
pub fn is_content_path(path: &str) -> bool {
    let mut parts = path.split('/');
    matches!(
        (parts.next(), parts.nth(1)),
        (Some(TENANTS_FOLDER), Some("packs" | "index" | "snapshots"))
    ) && id_of_path(path).is_some()
}

/// The id a content-named object's path ends in (a pack, index or
/// snapshot: the SHA-256 of its bytes, FORMAT.md 8).
pub fn id_of_path(path: &str) -> Option<Id> {
    Id::from_hex(path.rsplit('/').next()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(byte: u8) -> Id {
        Id([byte; 32])
    }

    const AB: &str = "abababababababababababababababababababababababababababababababab";

    // Each string is the on-store format: changing one is a format change
    // (FORMAT.md section 18), not a refactor.
    #[test]
    fn repository_wide_paths_are_pinned() {
        assert_eq!(CONFIG_PATH, "config");
        assert_eq!(KEYS_FOLDER, "keys");
        assert_eq!(slot_path("0123456789abcdef"), "keys/0123456789abcdef");
        assert_eq!(TENANTS_FOLDER, "tenants");
        assert_eq!(LOCKS_SELFTEST_FOLDER, "locks-selftest");
        assert_eq!(locks_selftest_path("00ff"), "locks-selftest/00ff");
        assert_eq!(EVENTS_PREFIX, "lifecycle/events");
        assert_eq!(event_path("crm-1"), "lifecycle/events/crm-1");
        assert_eq!(AUDIT_FOLDER, "audit");
        assert_eq!(audit_chain_folder("web01"), "audit/web01");
        assert_eq!(
            audit_record_path("web01", 7, "1a2b3c4d5e6f7a8b"),
            "audit/web01/000000000007-1a2b3c4d5e6f7a8b"
        );
        assert_eq!(AUDIT_HEADS_FOLDER, "audit-heads");
        assert_eq!(audit_head_path("web01"), "audit-heads/web01");
    }

    #[test]
    fn tenant_paths_are_pinned() {
        assert_eq!(tenant_prefix("acme"), "tenants/acme");
        assert_eq!(tenant_key_path("acme"), "tenants/acme/key");
        assert_eq!(packs_folder("acme"), "tenants/acme/packs");
        assert_eq!(
            pack_path("acme", &id(0xab)),
            format!("tenants/acme/packs/ab/{AB}")
        );
        assert_eq!(index_folder("acme"), "tenants/acme/index");
        assert_eq!(
            index_path("acme", &id(0xab)),
            format!("tenants/acme/index/{AB}")
        );
        assert_eq!(snapshots_folder("acme"), "tenants/acme/snapshots");
        assert_eq!(
            snapshot_path("acme", &id(0xab)),
            format!("tenants/acme/snapshots/{AB}")
        );
        assert_eq!(locks_folder("acme"), "tenants/acme/locks");
        assert_eq!(exclusive_lock_path("acme"), "tenants/acme/locks/exclusive");
        assert_eq!(
            shared_lock_path("acme", "0123456789abcdef"),
            "tenants/acme/locks/shared-0123456789abcdef"
        );
    }

    #[test]
    fn a_tenant_name_goes_through_its_component() {
        assert_eq!(tenant_prefix("kundå"), "tenants/kund%C3%A5");
        assert_eq!(tenant_key_path("a?b"), "tenants/a%3Fb/key");
        assert_eq!(holdings_path("kundå"), "tenants/kund%C3%A5/holdings");
        assert_eq!(snapshots_folder("a b+c"), "tenants/a b+c/snapshots");
    }

    #[test]
    fn parsers_name_the_path_when_it_is_elsewhere() {
        assert_eq!(event_id_of_path("audit/x"), "audit/x");
        assert_eq!(event_id_of_path("lifecycle/eventsx"), "lifecycle/eventsx");
        assert_eq!(host_of_audit_head_path("audit/web01"), "audit/web01");
        assert_eq!(id_of_path("tenants/acme/key"), None);
        assert!(is_under(
            "tenants/acme/locks/exclusive",
            &locks_folder("acme")
        ));
        assert!(!is_under("tenants/acme/locksmith", &locks_folder("acme")));
        assert!(!is_under("tenants/acme/locks", &locks_folder("acme")));
        assert_eq!(deletion_probe_path("00ff"), "deletion-probe/00ff");
        assert!(is_key_object(&tenant_key_path("acme")));
        assert!(is_key_object(&key_epoch_path(&[7; 16])));
        assert!(!is_key_object("tenants/acme/packs/ab/key"));
        assert!(!is_key_object(&shred_due_path("acme")));
        assert!(is_lock_object(&exclusive_lock_path("acme")));
        assert!(is_lock_object(&shared_lock_path(
            "acme",
            "0123456789abcdef"
        )));
        assert!(is_lock_object(&locks_selftest_path("00ff")));
        assert!(!is_lock_object("tenants/acme/locks"));
        assert!(!is_lock_object("tenants/acme/packs/ab/locks"));
        assert!(!is_lock_object("locks-selftest"));
        for other in [
            tenant_key_path("acme"),
            exclusive_lock_path("acme"),
            packs_folder("acme") + "/ab",
            event_path(AB),
            audit_head_path(AB),
        ] {
            assert!(!is_content_path(&other), "{other}");
        }
    }

    proptest! {
        #[test]
        fn content_paths_give_back_their_id(bytes in any::<[u8; 32]>(), tenant in "[a-z0-9åä?# ]{1,12}") {
            let id = Id(bytes);
            let folder = format!("{}/", tenant_prefix(&tenant));
            for path in [pack_path(&tenant, &id), index_path(&tenant, &id), snapshot_path(&tenant, &id)] {
                prop_assert!(path.starts_with(&folder));
                prop_assert!(is_content_path(&path));
                prop_assert_eq!(id_of_path(&path), Some(id));
            }
        }

        #[test]
        fn tenant_paths_give_back_their_tenant(
            chars in proptest::collection::vec(
                prop_oneof![proptest::char::range(' ', '~'), proptest::sample::select(vec!['å', 'Ö', 'ж', '東'])],
                1..30,
            ),
            bytes in any::<[u8; 32]>(),
        ) {
            // Any name, valid or not: its component never splits the path.
            let name: String = chars.into_iter().collect();
            let id = Id(bytes);
            for path in [
                tenant_key_path(&name),
                pack_path(&name, &id),
                index_path(&name, &id),
                snapshot_path(&name, &id),
                exclusive_lock_path(&name),
                shared_lock_path(&name, "0123456789abcdef"),
            ] {
                prop_assert!(path.starts_with("tenants/"));
                prop_assert_eq!(tenant_of_path(&path), Some(name.clone()));
            }
        }

        #[test]
        fn event_paths_give_back_their_id(event in "[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,127}") {
            let path = event_path(&event);
            prop_assert_eq!(event_id_of_path(&path), event.as_str());
        }

        #[test]
        fn head_paths_give_back_their_host(host in "[a-z0-9][a-z0-9.-]{0,62}") {
            let path = audit_head_path(&host);
            prop_assert_eq!(host_of_audit_head_path(&path), host.as_str());
        }
    }
}
