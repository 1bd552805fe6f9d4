//! The engine's store conformance suite, through the library: init, backup,
//! ship to an offsite target (and a second ship that copies nothing),
//! restore and check from the offsite copy, status, locks, the
//! conditional-create self-test and tenant names that need encoding. Every
//! case runs on every kind of store gallra supports as a target: `memory://`,
//! a `file://` folder, S3 (SeaweedFS) and Azure Blob (Azurite), as
//! object_store's own integration suite does; each case is a test of its own
//! per kind (`conformance::s3::locks_and_conditional_create`), so that a
//! failure names the store. The S3 and Azure cases skip without the servers
//! of tests/servers/start.sh, and fail without them under CI.
//!
//! A memory store lives only inside one `Store` value (opening `memory://`
//! again gives an empty store), so the CLI cannot drive it: each target is
//! opened once per case here and the `Store` values are kept and cloned.
//! That is also the one way the kinds differ in what a case may assert, a
//! branch of `backup_ship_restore_and_check`; no case is memory-only, as
//! gallra's fault injection works on processes (the CLI tests), not stores.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::common::remote::{Remote, unique_prefix};
use crate::common::*;
use gallra::backup::{self, BackupOptions};
use gallra::check::{self, ReadData};
use gallra::config::Config;
use gallra::lock::{self, Holder, LockKind};
use gallra::repo::Repository;
use gallra::restore::{self, OpenSnapshot, RestoreOptions, RestoreReport};
use gallra::ship::{self, ShipOptions};
use gallra::store::Store;
use gallra::{Error, crypto};

/// The host `config_head` names.
const HOST: &str = "testhost";
const TENANTS: [&str; 2] = ["acme", "beta"];

/// The kinds of store the suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Memory,
    File,
    S3,
    Azurite,
}

/// Runs each case named as a test of its own on every kind of store, in a
/// module per kind: `conformance::<kind>::<case>`.
macro_rules! on_every_store {
    ($($case:ident),* $(,)?) => {
        on_every_store!(@kind memory, Memory, [$($case),*]);
        on_every_store!(@kind file, File, [$($case),*]);
        on_every_store!(@kind s3, S3, [$($case),*]);
        on_every_store!(@kind azurite, Azurite, [$($case),*]);
    };
    (@kind $module:ident, $kind:ident, [$($case:ident),*]) => {
        mod $module {
            $(
                #[test]
                fn $case() {
                    super::$case(super::StoreKind::$kind);
                }
            )*
        }
    };
}

on_every_store!(
    backup_ship_restore_and_check,
    locks_and_conditional_create,
    a_tenant_holding_only_a_lock_is_neither_damage_nor_a_ship_failure,
    a_tenant_named_kunda_ring_round_trips,
    no_store_here_keeps_old_versions,
);

/// The `[[target]]` tables of a case: `local` (the primary) and `offsite`,
/// both fresh and empty, of `kind`; `None` (the case is skipped) when the
/// kind's server is not running outside CI.
fn target_tables(kind: StoreKind, root: &Path) -> Option<String> {
    let remote = |remote: Remote| {
        let prefix = unique_prefix(&format!("conformance-{kind:?}"));
        remote.target_table("local", &format!("{prefix}/local"), "primary = true")
            + "\n"
            + &remote.target_table("offsite", &format!("{prefix}/offsite"), "")
    };
    Some(match kind {
        StoreKind::Memory => "[[target]]\n\
             name = \"local\"\n\
             url = \"memory://\"\n\
             primary = true\n\
             \n\
             [[target]]\n\
             name = \"offsite\"\n\
             url = \"memory://\"\n"
            .to_string(),
        StoreKind::File => {
            // `open_store` makes no folder: these stand for the mounted
            // folders an operator's targets are.
            let (local, offsite) = (root.join("local"), root.join("offsite"));
            fs::create_dir_all(&local).expect("mkdir local");
            fs::create_dir_all(&offsite).expect("mkdir offsite");
            format!(
                "[[target]]\nname = \"local\"\nurl = {}\nprimary = true\n\n{}",
                toml_str(&format!("file://{}", s(&local))),
                file_target("offsite", &offsite, "")
            )
        }
        StoreKind::S3 => remote(Remote::s3()?),
        StoreKind::Azurite => remote(Remote::azure()?),
    })
}

/// A temporary folder with a key file, a tenant tree per tenant and a config
/// whose two targets are of one kind of store.
struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    src: PathBuf,
    config: Config,
}

impl Setup {
    /// The case's primary and offsite stores, each opened once.
    fn stores(&self) -> (Store, Store) {
        (
            open_store(&self.config.targets[0]),
            open_store(&self.config.targets[1]),
        )
    }
}

fn setup(kind: StoreKind) -> Option<Setup> {
    let tmp = tempfile::Builder::new()
        .prefix("gallra-conformance-")
        .tempdir()
        .expect("create temporary directory");
    let root = tmp.path().canonicalize().expect("canonicalize temp dir");
    let targets = target_tables(kind, &root)?;
    let key = root.join("key");
    crypto::generate_key_file(&key).expect("generate key file");
    let src = root.join("src");
    let mut rng = Rng::new(42);
    for (i, tenant) in TENANTS.iter().enumerate() {
        build_tree(&src.join(tenant), &mut rng, i);
    }
    let text = format!(
        "{head}{targets}\n{source}",
        head = config_head(&root.join("state"), &key, "1 MiB"),
        source = paths_source("www", "site", &[&format!("{}/{{tenant}}", s(&src))], &[]),
    );
    let config_path = root.join("agent.toml");
    fs::write(&config_path, &text).expect("write config");
    let config = Config::parse(&text, &config_path).expect("the config parses");
    assert_eq!(config.targets.len(), 2);
    assert_eq!(config.targets[0].name, "local");
    assert!(config.targets[0].primary);
    assert_eq!(config.targets[1].name, "offsite");
    assert!(!config.targets[1].primary);
    Some(Setup {
        _tmp: tmp,
        root,
        src,
        config,
    })
}

/// A few MiB of incompressible and compressible files, an empty file, an
/// empty folder, a symlink and a file shared by both tenants (dedup stays
/// within a tenant, so each stores its own copy).
fn build_tree(dir: &Path, rng: &mut Rng, n: usize) {
    write_file(
        &dir.join("random.bin"),
        &rng.bytes(2 * 1024 * 1024 + 17 * n),
    );
    write_file(&dir.join("docs/readme.txt"), &rng.text(400_000 + n));
    write_file(&dir.join("docs/deep/er/small.txt"), b"small\n");
    write_file(&dir.join("empty.txt"), b"");
    write_file(&dir.join("shared.txt"), b"the same in every tenant\n");
    fs::create_dir_all(dir.join("empty-dir")).expect("mkdir");
    symlink("docs/readme.txt", dir.join("link")).expect("symlink");
    chmod(&dir.join("docs/deep/er/small.txt"), 0o640);
}

/// Content-named objects (packs, index, snapshots) of every tenant on a
/// store, with their sizes.
fn content_objects(store: &Store) -> BTreeMap<String, u64> {
    store
        .list("tenants")
        .expect("list tenants")
        .into_iter()
        .filter(|o| {
            matches!(
                o.path.split('/').nth(2),
                Some("packs" | "index" | "snapshots")
            )
        })
        .map(|o| (o.path, o.size))
        .collect()
}

fn lock_objects(store: &Store) -> Vec<String> {
    store
        .list("tenants")
        .expect("list tenants")
        .into_iter()
        .map(|o| o.path)
        .filter(|p| p.split('/').nth(2) == Some("locks"))
        .collect()
}

fn backup_options() -> BackupOptions {
    BackupOptions {
        tenants: Vec::new(),
        time: None,
        tags: vec![("run".into(), "conformance".into())],
        progress: false,
        compression: 3,
        pack_size: 1 << 20,
        ..BackupOptions::default()
    }
}

fn ship_options() -> ShipOptions {
    ShipOptions {
        tenants: Vec::new(),
        verify: true,
        progress: false,
        host: HOST.into(),
        // These offsites start empty: each first ship is the one `init`
        // would make.
        initialise: true,
        ..ShipOptions::default()
    }
}

/// Restores `snap` from the offsite into `to`, verified, and compares the
/// restored tree with `original`, the folder it was taken of.
fn restore_and_compare(snap: &OpenSnapshot, to: PathBuf, original: &Path) -> RestoreReport {
    let r = restore::restore(
        snap,
        &RestoreOptions {
            to: to.clone(),
            path: None,
            verify: true,
        },
    )
    .expect("restore from offsite");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    compare_trees(original, &restored_path(&to, original), &[]);
    r
}

fn holder(host: &str, command: &str) -> Holder {
    Holder {
        host: host.into(),
        command: command.into(),
    }
}

fn backup_ship_restore_and_check(kind: StoreKind) {
    let Some(setup) = setup(kind) else { return };
    let config = &setup.config;
    let (primary, offsite) = setup.stores();
    assert_eq!(primary.name(), "local");
    assert_eq!(offsite.name(), "offsite");
    assert_eq!(
        primary.is_local(),
        kind == StoreKind::File,
        "only a file:// store is a local folder"
    );

    let repo = Repository::init(primary.clone(), &config.key, config.repository.chunker)
        .expect("init on the primary");
    assert!(
        matches!(
            Repository::init(primary.clone(), &config.key, config.repository.chunker),
            Err(Error::AlreadyInitialised { .. })
        ),
        "a second init on the same store is refused"
    );
    let again = open_store(&config.targets[0]);
    if kind == StoreKind::Memory {
        // Each open of memory:// is a new, empty store.
        assert!(
            matches!(
                Repository::open(again, &config.key),
                Err(Error::NotInitialised { .. })
            ),
            "opening memory:// again must give an empty store"
        );
    } else {
        let reopened = Repository::open(again, &config.key).expect("open the primary again");
        assert_eq!(
            reopened.repo_id, repo.repo_id,
            "opening again finds the repository"
        );
    }

    // Backup: one snapshot per tenant, nothing failed, no locks left.
    let report = backup::run(&repo, config, &backup_options()).expect("backup runs");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.snapshots.len(), 2, "{:?}", report.snapshots);
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for s in &report.snapshots {
        assert_eq!(s.snapshot.source, "www");
        assert_eq!(s.snapshot.host, HOST);
        assert_eq!(s.snapshot.files, 5, "{:?}", s.snapshot);
        assert!(s.snapshot.bytes_added > 2 * 1024 * 1024, "{:?}", s.snapshot);
        ids.insert(s.snapshot.tenant.clone(), s.id.to_hex());
    }
    assert_eq!(
        ids.keys().collect::<Vec<_>>(),
        TENANTS.iter().collect::<Vec<_>>()
    );
    assert!(
        lock_objects(&primary).is_empty(),
        "{:?}",
        lock_objects(&primary)
    );
    let on_primary = content_objects(&primary);
    let packs = on_primary.keys().filter(|p| p.contains("/packs/")).count();
    assert!(
        packs >= 4,
        "1 MiB packs of 2+ MiB per tenant: {on_primary:?}"
    );

    // Before any ship, status shows the offsite lacking everything.
    let before = ship::status(&primary, &offsite).expect("status before ship");
    assert_eq!(before.len(), 2, "{before:?}");
    assert_eq!(
        before.iter().map(|t| t.missing).sum::<usize>(),
        on_primary.len(),
        "{before:?}"
    );

    // First ship copies everything, verified; the second copies nothing.
    let first = ship::ship(&repo, &offsite, &ship_options()).expect("first ship");
    assert_eq!(first.from, "local");
    assert_eq!(first.target, "offsite");
    assert_eq!(first.repository_objects, 2, "one key slot and the config");
    assert_eq!(first.copied, on_primary.len(), "{first:?}");
    assert_eq!(
        first.copied_bytes,
        on_primary.values().sum::<u64>(),
        "{first:?}"
    );
    assert_eq!(first.verified, on_primary.len(), "{first:?}");
    assert_eq!(
        first
            .tenants
            .iter()
            .map(|t| t.snapshots_copied)
            .sum::<usize>(),
        2
    );
    assert_eq!(content_objects(&offsite), on_primary);
    for path in on_primary.keys() {
        assert_eq!(
            offsite.get(path).expect("shipped object"),
            primary.get(path).expect("source object"),
            "{path} must be copied unchanged"
        );
    }
    assert_eq!(
        offsite.get("config").unwrap(),
        primary.get("config").unwrap()
    );
    let slots = |st: &Store| -> Vec<String> {
        st.list("keys")
            .unwrap()
            .into_iter()
            .map(|o| o.path)
            .collect()
    };
    assert_eq!(slots(&offsite), slots(&primary));
    for tenant in TENANTS {
        let key = format!("tenants/{tenant}/key");
        assert_eq!(offsite.get(&key).unwrap(), primary.get(&key).unwrap());
    }
    assert!(lock_objects(&primary).is_empty(), "ship released its locks");
    assert!(lock_objects(&offsite).is_empty(), "ship released its locks");

    let second = ship::ship(&repo, &offsite, &ship_options()).expect("second ship");
    assert_eq!(second.repository_objects, 0, "{second:?}");
    assert_eq!(second.copied, 0, "{second:?}");
    assert_eq!(second.copied_bytes, 0, "{second:?}");
    for t in &second.tenants {
        assert_eq!(t.extra, 0, "{t:?}");
        assert_eq!(t.snapshots_copied, 0, "{t:?}");
    }
    assert_eq!(
        second.tenants.iter().map(|t| t.present).sum::<usize>(),
        on_primary.len()
    );

    // Status: nothing missing, one snapshot per tenant.
    let status = ship::status(&primary, &offsite).expect("status");
    assert_eq!(status.len(), 2, "{status:?}");
    for t in &status {
        assert_eq!(t.missing, 0, "{t:?}");
        assert_eq!(t.missing_bytes, 0, "{t:?}");
        assert_eq!(t.snapshots, 1, "{t:?}");
    }

    // The offsite copy opens with the same key and restores byte for byte.
    let off_repo = Repository::open(offsite.clone(), &config.key).expect("open offsite");
    assert_eq!(off_repo.repo_id, repo.repo_id);
    for tenant in TENANTS {
        let id = &ids[tenant];
        let snap = OpenSnapshot::open(&off_repo, id).expect("open snapshot on offsite");
        assert_eq!(snap.snapshot.tenant, tenant);
        assert_eq!(snap.id.to_hex(), *id);
        let to = setup.root.join(format!("restore-{tenant}"));
        let r = restore_and_compare(&snap, to, &setup.src.join(tenant));
        assert_eq!(r.files, 5, "{r:?}");
        assert_eq!(r.verified, r.files, "{r:?}");
    }

    // check --read-data on the offsite repository, and on the primary.
    for (what, r) in [("offsite", &off_repo), ("primary", &repo)] {
        let c = check::run(r, ReadData::All, "test").expect("check runs");
        assert!(c.ok(), "check of {what}: {:?}", c.errors);
        assert_eq!(c.snapshots, 2, "{what}");
        assert!(c.unreferenced.is_empty(), "{what}: {:?}", c.unreferenced);
        assert!(c.blobs_read > 0 && c.blobs_read == c.blobs, "{what}: {c:?}");
    }
}

fn locks_and_conditional_create(kind: StoreKind) {
    let Some(setup) = setup(kind) else { return };
    let config = &setup.config;
    let (primary, offsite) = setup.stores();

    assert!(primary.honours_conditional_create().unwrap());
    assert!(offsite.honours_conditional_create().unwrap());
    assert!(
        primary.list("locks-selftest").unwrap().is_empty(),
        "the self-test removes its object"
    );

    let repo = Repository::init(primary.clone(), &config.key, config.repository.chunker)
        .expect("init on the primary");

    // An exclusive lock held: a shared lock fails, naming the holder's host.
    let x = lock::acquire(
        &primary,
        "acme",
        LockKind::Exclusive,
        &holder("lockhost", "lifecycle apply"),
    )
    .expect("exclusive lock");
    x.check().expect("the lease is valid");
    let err = lock::acquire(
        &primary,
        "acme",
        LockKind::Shared,
        &holder("web02", "backup"),
    )
    .err()
    .expect("a shared lock must wait for the exclusive one");
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("acme") && msg.contains("lockhost") && msg.contains("lifecycle apply"),
        "{msg}"
    );
    assert_eq!(
        lock_objects(&primary),
        vec!["tenants/acme/locks/exclusive".to_string()],
        "the loser removed its shared lock"
    );
    // A second exclusive lock fails too; another tenant is not affected.
    let err = lock::acquire(
        &primary,
        "acme",
        LockKind::Exclusive,
        &holder("web03", "erase"),
    )
    .err()
    .expect("one exclusive lock at a time");
    assert!(err.to_string().contains("lockhost"), "{err}");
    drop(
        lock::acquire(
            &primary,
            "beta",
            LockKind::Shared,
            &holder("web02", "backup"),
        )
        .expect("beta is not locked"),
    );

    // A backup while acme is locked: acme fails naming the holder, beta goes on.
    let report = backup::run(&repo, config, &backup_options()).expect("backup runs");
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].tenant.as_deref(), Some("acme"));
    assert!(
        report.failed[0].error.contains("lockhost"),
        "{:?}",
        report.failed[0]
    );
    assert_eq!(report.snapshots.len(), 1, "{:?}", report.snapshots);
    assert_eq!(report.snapshots[0].snapshot.tenant, "beta");
    // Shipping acme is refused while it is locked, naming the holder; beta
    // ships all the same.
    let shipped = ship::ship(&repo, &offsite, &ship_options()).expect("ship runs");
    assert!(!shipped.ok());
    assert_eq!(shipped.failed.len(), 1, "{shipped:?}");
    assert_eq!(shipped.failed[0].tenant, "acme");
    assert!(shipped.failed[0].error.contains("lockhost"), "{shipped:?}");
    assert_eq!(shipped.tenants.len(), 1);
    assert_eq!(shipped.tenants[0].tenant, "beta");
    assert_eq!(shipped.tenants[0].snapshots_copied, 1);
    drop(x);
    assert!(
        lock_objects(&primary).is_empty(),
        "{:?}",
        lock_objects(&primary)
    );

    // Two shared locks coexist, and block an exclusive one.
    let a = lock::acquire(
        &primary,
        "acme",
        LockKind::Shared,
        &holder("web01", "backup"),
    )
    .expect("first shared lock");
    let b = lock::acquire(&primary, "acme", LockKind::Shared, &holder("web02", "ship"))
        .expect("second shared lock");
    a.check().unwrap();
    b.check().unwrap();
    assert_eq!(
        lock_objects(&primary).len(),
        2,
        "{:?}",
        lock_objects(&primary)
    );
    let err = lock::acquire(
        &primary,
        "acme",
        LockKind::Exclusive,
        &holder("web03", "prune"),
    )
    .err()
    .expect("shared locks block an exclusive one");
    let msg = err.to_string();
    assert!(msg.contains("a shared lock of host web0"), "{msg}");
    assert_eq!(
        lock_objects(&primary).len(),
        2,
        "the loser removed its exclusive lock"
    );
    drop((a, b));
    assert!(
        lock_objects(&primary).is_empty(),
        "{:?}",
        lock_objects(&primary)
    );

    // Locks on the offsite store are its own: a ship into a tenant locked
    // there fails, naming the holder.
    let report = backup::run(&repo, config, &backup_options()).expect("backup runs");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.snapshots.len(), 2);
    let off = lock::acquire(
        &offsite,
        "acme",
        LockKind::Exclusive,
        &holder("lockhost", "lifecycle apply"),
    )
    .expect("exclusive lock on offsite");
    let locked = ship::ship(&repo, &offsite, &ship_options()).expect("ship runs");
    assert_eq!(locked.failed.len(), 1, "{locked:?}");
    assert!(locked.failed[0].error.contains("lockhost"), "{locked:?}");
    drop(off);
    let unlocked = ship::ship(&repo, &offsite, &ship_options()).expect("ship after unlocking");
    assert!(unlocked.ok(), "{unlocked:?}");
    for t in ship::status(&primary, &offsite).unwrap() {
        assert_eq!(t.missing, 0, "{t:?}");
    }
    assert!(lock_objects(&primary).is_empty());
    assert!(lock_objects(&offsite).is_empty());
}

/// A tenant folder that holds only a lock (a new tenant's first backup
/// between taking its lock and writing the tenant key, or a lock left by a
/// process killed there) is not damage: nothing in it names a key yet.
fn a_tenant_holding_only_a_lock_is_neither_damage_nor_a_ship_failure(kind: StoreKind) {
    let Some(setup) = setup(kind) else { return };
    let config = &setup.config;
    let (primary, offsite) = setup.stores();
    let repo = Repository::init(primary.clone(), &config.key, config.repository.chunker)
        .expect("init on the primary");
    let report = backup::run(&repo, config, &backup_options()).expect("backup runs");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    // As `backup::run` holds it for a tenant it has not yet created.
    let _first_backup = lock::acquire(
        &primary,
        "gamma",
        LockKind::Shared,
        &holder("web09", "backup"),
    )
    .expect("shared lock of a new tenant");
    let c = check::run(&repo, ReadData::None, "test").expect("check runs");
    assert!(c.ok(), "a lock-only tenant is not damage: {:?}", c.errors);
    assert_eq!(c.snapshots, 2);
    let shipped = ship::ship(&repo, &offsite, &ship_options())
        .expect("a lock-only tenant does not stop the ship");
    assert_eq!(
        shipped
            .tenants
            .iter()
            .map(|t| t.snapshots_copied)
            .sum::<usize>(),
        2,
        "{shipped:?}"
    );
}

/// Issue 15, item 3, through the library (the CLI cannot reach a
/// `memory://` target): tenants `kundå`, `åkeri.se`, `a?b`, `c#d` beside
/// `plain` are listed, backed up again (finding their first backup),
/// shipped, restored from the offsite and checked under exactly their names.
fn a_tenant_named_kunda_ring_round_trips(kind: StoreKind) {
    const NAMES: [&str; 5] = ["plain", "kundå", "åkeri.se", "a?b", "c#d"];
    let Some(setup) = setup(kind) else { return };
    let src = setup.root.join("names");
    let mut rng = Rng::new(3);
    for (i, t) in NAMES.iter().enumerate() {
        build_tree(&src.join(t), &mut rng, i);
    }
    let config_path = setup.root.join("agent.toml");
    let text = fs::read_to_string(&config_path)
        .expect("read config")
        .replace(s(&setup.src.join("{tenant}")), s(&src.join("{tenant}")));
    let config = Config::parse(&text, &config_path).expect("the config parses");
    let primary = open_store(&config.targets[0]);
    let offsite = open_store(&config.targets[1]);
    let repo = Repository::init(primary.clone(), &config.key, config.repository.chunker)
        .expect("init on the primary");
    let mut want: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
    want.sort();

    let first = backup::run(&repo, &config, &backup_options()).expect("backup runs");
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    assert_eq!(repo.tenant_names().unwrap(), want);
    let second = backup::run(&repo, &config, &backup_options()).expect("backup runs again");
    assert!(second.failed.is_empty(), "{:?}", second.failed);
    for s in &second.snapshots {
        assert!(
            s.snapshot.bytes_added < 16 << 10,
            "{} dedups against its first backup: {:?}",
            s.snapshot.tenant,
            s.snapshot
        );
    }
    assert!(primary.get("tenants/kund%C3%A5/key").is_ok());

    let shipped = ship::ship(&repo, &offsite, &ship_options()).expect("ship");
    assert!(shipped.ok(), "{:?}", shipped.failed);
    let mut shipped_names: Vec<String> = shipped.tenants.iter().map(|t| t.tenant.clone()).collect();
    shipped_names.sort();
    assert_eq!(shipped_names, want);
    let off_repo = Repository::open(offsite.clone(), &config.key).expect("open offsite");
    assert_eq!(off_repo.tenant_names().unwrap(), want);
    for name in NAMES {
        let tenant = off_repo.tenant(name).expect("the tenant's key");
        let snaps = off_repo.snapshots(&tenant).expect("its snapshots");
        assert_eq!(snaps.len(), 2, "{name}");
        let (id, snap) = snaps.last().expect("a snapshot");
        assert_eq!(snap.tenant, name);
        let open = OpenSnapshot::open(&off_repo, &id.to_hex()).expect("open snapshot");
        let to = setup.root.join(format!("restore-{}", id.to_hex()));
        restore_and_compare(&open, to, &src.join(name));
    }
    for (what, r) in [("offsite", &off_repo), ("primary", &repo)] {
        let c = check::run(r, ReadData::All, "test").expect("check runs");
        assert!(c.ok(), "check of {what}: {:?}", c.errors);
        assert_eq!(c.snapshots, 2 * NAMES.len() as u64, "{what}");
    }
}

/// None of these stores keeps what gallra deletes: SeaweedFS's and
/// Azurite's test buckets have no versioning (tests/it/versioned_stores.rs
/// has one that does). The probe leaves nothing listed behind.
fn no_store_here_keeps_old_versions(kind: StoreKind) {
    let Some(setup) = setup(kind) else { return };
    let (primary, offsite) = setup.stores();
    for store in [&primary, &offsite] {
        assert!(
            !store.keeps_old_versions().expect("probe the store"),
            "{kind:?}: {} keeps no old versions",
            store.name()
        );
        assert!(
            store
                .list(gallra::layout::LOCKS_SELFTEST_FOLDER)
                .unwrap()
                .is_empty(),
            "{kind:?}: the probe object is deleted"
        );
    }
}
