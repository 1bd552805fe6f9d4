//! Helpers shared by the integration tests (the modules of `tests/it`).
//!
//! Every test drives the real `gallra` binary through its command line, the
//! way an operator or a script would, against a throw-away environment in a
//! temporary directory: a key file made by `gallra key generate`, an
//! `agent.toml`, a `file://` repository and a state directory.

pub mod agent;
pub mod alerts;
pub mod remote;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;
use tempfile::TempDir;

/// Longest any single `gallra` invocation may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// The signature line that marks a cache directory (bford.net/cachedir).
pub const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by a test.\n";

/// A throw-away gallra environment under one temporary directory.
pub struct Env {
    tmp: TempDir,
    /// Canonical path of the temporary directory.
    pub root: PathBuf,
    /// The `agent.toml` passed with `--config`.
    pub config: PathBuf,
    /// The key file, made by `gallra key generate`.
    pub key: PathBuf,
    /// The directory of the `file://` primary target.
    pub repo: PathBuf,
    /// `[agent] state_dir`.
    pub state: PathBuf,
    /// `[repository] pack_size` and the `[[source]]` tables of the config.
    settings: RefCell<(String, String)>,
    /// More `[[target]]` tables, after the primary `local` one.
    extra_targets: RefCell<String>,
    /// Every command run through this environment, with its output.
    log: RefCell<Vec<(String, Output)>>,
}

impl Env {
    /// A fresh environment with a generated key file and no config yet.
    pub fn new() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("gallra-test-")
            .tempdir()
            .expect("create temporary directory");
        let root = tmp.path().canonicalize().expect("canonicalize temp dir");
        let env = Env {
            config: root.join("agent.toml"),
            key: root.join("key"),
            repo: root.join("repo"),
            state: root.join("state"),
            root,
            tmp,
            settings: RefCell::new(("16 MiB".to_string(), String::new())),
            extra_targets: RefCell::new(String::new()),
            log: RefCell::new(Vec::new()),
        };
        let key = env.key.clone();
        env.generate_key(&key);
        env
    }

    /// `gallra key generate FILE`, asserting success and mode 0600.
    pub fn generate_key(&self, file: &Path) {
        let out = self.run_without_config(&["key", "generate", s(file)]);
        assert_success(&out, "key generate");
        let mode = fs::metadata(file).expect("key file exists").mode() & 0o777;
        assert_eq!(mode, 0o600, "key generate must write mode 0600");
    }

    /// Write `agent.toml` with the given pack size and `[[source]]` tables.
    pub fn write_config(&self, pack_size: &str, sources: &str) {
        *self.settings.borrow_mut() = (pack_size.to_string(), sources.to_string());
        fs::write(&self.config, self.config_text(&self.key)).expect("write config");
    }

    /// The smallest useful setup: one page in `src/acme`, and a config
    /// (with the extra targets set so far) whose one source `www` backs it
    /// up as tenant `acme`.
    pub fn write_acme_site_config(&self) {
        let src = self.path("src/acme");
        write_file(&src.join("index.html"), b"<h1>acme</h1>\n");
        self.write_config(
            "16 MiB",
            &tenant_paths_source("www", "site", "acme", &[s(&src)]),
        );
    }

    /// Adds `[[target]]` tables (TOML text, e.g. from `file_target`) after
    /// the primary; takes effect at the next `write_config`.
    pub fn set_extra_targets(&self, tables: &str) {
        *self.extra_targets.borrow_mut() = tables.to_string();
    }

    /// The text of this environment's config, but with another `[key] file`.
    pub fn config_text(&self, key_file: &Path) -> String {
        let (pack_size, sources) = &*self.settings.borrow();
        format!(
            "{head}\
             [[target]]\n\
             name = \"local\"\n\
             url = {url}\n\
             primary = true\n\
             \n\
             {extra}\n\
             {sources}",
            head = config_head(&self.state, key_file, pack_size),
            extra = self.extra_targets.borrow(),
            url = toml_str(&format!("file://{}", s(&self.repo))),
        )
    }

    /// `gallra init`, asserting success.
    pub fn init(&self) {
        self.ok(&["init"]);
    }

    /// Puts an event file into the agent's inbox as a writer should: under
    /// a dot name first (which the inbox skips), then renamed into place, so
    /// that no reader ever sees half of it.
    pub fn drop_in_inbox(&self, name: &str, bytes: &[u8]) {
        let inbox = self.state.join("inbox");
        fs::create_dir_all(&inbox).expect("create the inbox");
        let tmp = inbox.join(format!(".{name}.tmp"));
        fs::write(&tmp, bytes).expect("write the event");
        fs::rename(&tmp, inbox.join(name)).expect("rename the event into the inbox");
    }

    /// A path inside the temporary directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// A `gallra --config <config> ARGS...` command, not yet run.
    pub fn cmd_with(&self, config: &Path, args: &[&str]) -> Command {
        let mut cmd = self.bare_cmd();
        cmd.arg("--config").arg(config).args(args);
        cmd
    }

    /// `gallra --config <config> ARGS...` as a plain process, for tests that
    /// run several at once or kill one: the same environment as `run`.
    pub fn spawnable(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("gallra"));
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("GALLRA_CONFIG")
            .env_remove("GALLRA_PASSPHRASE")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .current_dir(&self.root)
            .stdin(std::process::Stdio::null());
        cmd
    }

    fn bare_cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("gallra").expect("the gallra binary is built");
        cmd.env_remove("GALLRA_CONFIG")
            .env_remove("GALLRA_PASSPHRASE")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .current_dir(&self.root)
            .timeout(COMMAND_TIMEOUT);
        cmd
    }

    fn record(&self, what: String, mut cmd: Command) -> Output {
        let out = cmd.output().expect("run gallra");
        self.log.borrow_mut().push((what, out.clone()));
        out
    }

    /// Run `gallra --config <config> ARGS...` and return its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(&self.config, args)
    }

    /// Run `gallra --config CONFIG ARGS...` with another config file.
    pub fn run_with(&self, config: &Path, args: &[&str]) -> Output {
        let what = format!("gallra --config {} {}", config.display(), args.join(" "));
        self.record(what, self.cmd_with(config, args))
    }

    /// Run `gallra ARGS...` without `--config`.
    pub fn run_without_config(&self, args: &[&str]) -> Output {
        let mut cmd = self.bare_cmd();
        cmd.args(args);
        self.record(format!("gallra {}", args.join(" ")), cmd)
    }

    /// Run a command that must succeed (exit 0).
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert_success(&out, &args.join(" "));
        out
    }

    /// Run `ARGS... --json`, which must succeed, and parse its stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ok(&all);
        parse_json(&out)
    }

    /// `backup --json EXTRA...`, which must succeed, parsed.
    pub fn backup(&self, extra: &[&str]) -> Value {
        let mut args = vec!["backup"];
        args.extend_from_slice(extra);
        self.json(&args)
    }

    /// `snapshots --json`, parsed; always an array.
    pub fn snapshots(&self) -> Vec<Value> {
        match self.json(&["snapshots"]) {
            Value::Array(a) => a,
            other => panic!("snapshots --json must print an array, got {other}"),
        }
    }

    /// `restore ID --to DIR --verify`, which must succeed.
    pub fn restore_verified(&self, id: &str, to: &Path) -> Output {
        self.ok(&["restore", id, "--to", s(to), "--verify"])
    }

    /// Every command run so far with its output, in order.
    pub fn commands_run(&self) -> Vec<(String, Output)> {
        self.log.borrow().clone()
    }

    /// The temporary directory, kept for the life of the environment.
    pub fn tempdir(&self) -> &TempDir {
        &self.tmp
    }
}

/// The `[agent]`, `[key]` and `[repository]` tables every test config
/// starts with (host `testhost`, zstd level 3), and a blank line.
pub fn config_head(state_dir: &Path, key_file: &Path, pack_size: &str) -> String {
    format!(
        "[agent]\n\
         host = \"testhost\"\n\
         state_dir = {state}\n\
         \n\
         [key]\n\
         file = {key}\n\
         \n\
         [repository]\n\
         compression = 3\n\
         pack_size = {pack_size}\n\
         \n",
        state = toml_str(s(state_dir)),
        key = toml_str(s(key_file)),
        pack_size = toml_str(pack_size),
    )
}

/// The library's `Store` for a target, with no folder made for a missing
/// `file://` one. Every test opens its stores here, so that a change to
/// `Store::open` changes one line of the tests.
pub fn open_store(target: &gallra::store::TargetSettings) -> gallra::store::Store {
    gallra::store::Store::open(target)
        .unwrap_or_else(|e| panic!("open target {}: {e}", target.name))
}

/// Where `restore --to DIR` puts the source path `source` (its full path).
pub fn restored_path(dir: &Path, source: &Path) -> PathBuf {
    dir.join(source.strip_prefix("/").expect("source paths are absolute"))
}

/// A path as `&str` (every path in these tests is UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// A TOML basic string holding `v`.
pub fn toml_str(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML array of strings.
pub fn toml_array(items: &[&str]) -> String {
    let items: Vec<String> = items.iter().map(|i| toml_str(i)).collect();
    format!("[{}]", items.join(", "))
}

/// A `[[source]]` table backing up paths (`{tenant}` patterns allowed).
pub fn paths_source(name: &str, category: &str, paths: &[&str], exclude: &[&str]) -> String {
    let mut t = format!(
        "[[source]]\nname = {}\ncategory = {}\npaths = {}\n",
        toml_str(name),
        toml_str(category),
        toml_array(paths)
    );
    if !exclude.is_empty() {
        t.push_str(&format!("exclude = {}\n", toml_array(exclude)));
    }
    t.push('\n');
    t
}

/// A secondary `[[target]]` table for a `file://` folder, plus `more` lines.
pub fn file_target(name: &str, dir: &Path, more: &str) -> String {
    format!(
        "[[target]]\nname = {}\nurl = {}\n{more}\n",
        toml_str(name),
        toml_str(&format!("file://{}", s(dir)))
    )
}

/// A `[[source]]` table backing up paths for one named tenant.
pub fn tenant_paths_source(name: &str, category: &str, tenant: &str, paths: &[&str]) -> String {
    format!(
        "[[source]]\nname = {}\ncategory = {}\ntenant = {}\npaths = {}\n\n",
        toml_str(name),
        toml_str(category),
        toml_str(tenant),
        toml_array(paths)
    )
}

/// A `[[source]]` table whose command's stdout is stored as one file.
pub fn command_source(
    name: &str,
    category: &str,
    tenant: &str,
    command: &[&str],
    stdout_file: &str,
) -> String {
    format!(
        "[[source]]\nname = {}\ncategory = {}\ntenant = {}\ncommand = {}\nstdout_file = {}\n\n",
        toml_str(name),
        toml_str(category),
        toml_str(tenant),
        toml_array(command),
        toml_str(stdout_file)
    )
}

/// A one-line description of a finished command, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        truncate(&String::from_utf8_lossy(&out.stdout), 4000),
        truncate(&String::from_utf8_lossy(&out.stderr), 4000),
    )
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &text[..end], text.len())
}

/// Assert exit status 0.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "`gallra {what}` must succeed\n{}",
        describe(out)
    );
}

/// Assert a specific exit status.
pub fn assert_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "`{what}` must exit {code}\n{}",
        describe(out)
    );
}

/// Stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Stdout parsed as one JSON document.
pub fn parse_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout must be exactly one JSON document ({e})\n{}",
            describe(out)
        )
    })
}

/// The error message of a failed command: stderr must hold exactly one line
/// beginning `error: `, and it must be the last non-empty line (one line, no
/// cause chain or backtrace after it). Log lines before it are allowed.
pub fn error_line(out: &Output) -> String {
    let text = stderr(out);
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(
        errors.len(),
        1,
        "stderr must hold exactly one line beginning `error: `\n{}",
        describe(out)
    );
    let last = text.lines().rev().find(|l| !l.trim().is_empty());
    assert_eq!(
        last,
        Some(errors[0]),
        "the `error: ` line must be the last line of stderr (a one-line message)\n{}",
        describe(out)
    );
    errors[0].to_string()
}

/// Assert the command failed with `code` and a one-line error that contains
/// every one of `names`; returns the error line.
pub fn assert_error(out: &Output, code: i32, what: &str, names: &[&str]) -> String {
    assert_exit(out, code, what);
    error_naming(out, what, names)
}

/// The one-line error, asserting that it contains every one of `names`.
pub fn error_naming(out: &Output, what: &str, names: &[&str]) -> String {
    let line = error_line(out);
    for name in names {
        assert!(
            line.contains(name),
            "the error of `{what}` must name {name:?}, got: {line}"
        );
    }
    line
}

/// Whether `text` contains `n` as a whole number (not as part of a longer one).
pub fn contains_number(text: &str, n: usize) -> bool {
    let n = n.to_string();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(pos) = text[from..].find(&n) {
        let start = from + pos;
        let end = start + n.len();
        let digit_before = start > 0 && bytes[start - 1].is_ascii_digit();
        let digit_after = end < bytes.len() && bytes[end].is_ascii_digit();
        if !digit_before && !digit_after {
            return true;
        }
        from = start + 1;
    }
    false
}

/// Whether we run as root (who may read any file regardless of its mode).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A string field of a JSON object, panicking with context if absent.
pub fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("expected string field {key:?} in {v}"))
}

/// An unsigned integer field of a JSON object, panicking with context if absent.
pub fn u64_field(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("expected unsigned integer field {key:?} in {v}"))
}

/// An array field of a JSON object, panicking with context if absent.
pub fn array_field<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v.get(key)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("expected array field {key:?} in {v}"))
}

/// The snapshot of `tenant` and `source` in a `backup --json` summary.
pub fn backup_snapshot<'a>(backup: &'a Value, tenant: &str, source: &str) -> &'a Value {
    let snaps = array_field(backup, "snapshots");
    let found: Vec<&Value> = snaps
        .iter()
        .filter(|s| s.get("tenant") == Some(&Value::from(tenant)))
        .filter(|s| s.get("source") == Some(&Value::from(source)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "backup --json must hold one snapshot of tenant {tenant:?} source {source:?}: {backup}"
    );
    found[0]
}

/// The id of the snapshot of `tenant` and `source` in a `backup --json` summary.
pub fn backup_snapshot_id(backup: &Value, tenant: &str, source: &str) -> String {
    str_field(backup_snapshot(backup, tenant, source), "id").to_string()
}

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// `n` pseudo-random (incompressible) bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }

    /// About `n` bytes of compressible text: lines of words from a small
    /// vocabulary.
    pub fn text(&mut self, n: usize) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "backup",
            "tenant",
            "server",
            "restore",
            "snapshot",
            "the",
            "of",
            "and",
            "site",
            "mail",
            "database",
            "retention",
            "contract",
            "month",
            "a",
            "to",
            "is",
            "with",
            "customer",
            "invoice",
            "order",
            "page",
            "index",
            "config",
            "user",
            "session",
        ];
        let mut out = Vec::with_capacity(n + 16);
        let mut line = 0usize;
        while out.len() < n {
            out.extend_from_slice(format!("{line:06} ").as_bytes());
            let words = 5 + self.below(10);
            for i in 0..words {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(WORDS[self.below(WORDS.len() as u64) as usize].as_bytes());
            }
            out.push(b'\n');
            line += 1;
        }
        out.truncate(n);
        out
    }
}

/// Create `path` (and its parent directories) with `data`.
pub fn write_file(path: &Path, data: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create parent directories");
    }
    fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Set a path's permission bits (not following symlinks is not needed here).
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Make a FIFO at `path` with permission bits `mode`.
pub fn mkfifo(path: &Path, mode: u32) {
    let c = std::ffi::CString::new(s(path)).expect("a path without NUL");
    // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
    let made = unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) };
    assert_eq!(made, 0, "mkfifo {}", path.display());
}

/// Whether `needle` occurs in `hay`.
pub fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Every regular file under `dir`, recursively, sorted (symlinks not followed).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    collect_files(dir, &mut out);
    out.sort();
    out
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => panic!("read_dir {}: {e}", dir.display()),
    };
    for entry in entries {
        let entry = entry.expect("read directory entry");
        let ft = entry.file_type().expect("file type");
        if ft.is_dir() {
            collect_files(&entry.path(), out);
        } else if ft.is_file() {
            out.push(entry.path());
        }
    }
}

/// Total size in bytes of the regular files under `dir` (0 if it is missing).
pub fn dir_size(dir: &Path) -> u64 {
    files_under(dir)
        .iter()
        .map(|f| fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// Whether `name` is 64 lowercase or uppercase hex digits.
pub fn is_hex64(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Every pack file of the repository: `tenants/<t>/packs/<xx>/<64 hex>`.
pub fn pack_files(repo: &Path) -> Vec<PathBuf> {
    files_under(&repo.join("tenants"))
        .into_iter()
        .filter(|p| {
            let rel = p.strip_prefix(repo.join("tenants")).expect("under tenants");
            let parts: Vec<&str> = rel.iter().map(|c| c.to_str().unwrap_or("")).collect();
            parts.len() == 4 && parts[1] == "packs" && is_hex64(parts[3])
        })
        .collect()
}

/// The objects of one kind (`index`, `snapshots`, `packs`) of one tenant.
pub fn tenant_objects(repo: &Path, tenant: &str, kind: &str) -> Vec<PathBuf> {
    files_under(&repo.join("tenants").join(tenant).join(kind))
}

/// The file name of a path as `&str`.
pub fn file_name(p: &Path) -> &str {
    p.file_name()
        .and_then(|n| n.to_str())
        .expect("a UTF-8 file name")
}

/// Set a file's or directory's mtime (and atime) to `secs` since the epoch,
/// without following symlinks.
pub fn set_mtime(path: &Path, secs: i64) {
    let t = filetime::FileTime::from_unix_time(secs, 0);
    filetime::set_symlink_file_times(path, t, t)
        .unwrap_or_else(|e| panic!("set times of {}: {e}", path.display()));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

fn kind_of(m: &fs::Metadata) -> Kind {
    let ft = m.file_type();
    if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else {
        Kind::Other
    }
}

/// The relative paths (with `/`) of every entry under `dir`, with their kind
/// as `ls --json` names it: `file`, `dir` or `symlink`. `dir` itself is not
/// listed. Entries under `skip` (relative paths) are left out.
pub fn tree_entries(dir: &Path, skip: &[&str]) -> BTreeMap<String, &'static str> {
    let mut out = BTreeMap::new();
    list_entries(dir, "", skip, &mut out);
    out
}

fn list_entries(dir: &Path, rel: &str, skip: &[&str], out: &mut BTreeMap<String, &'static str>) {
    for entry in fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().into_string().expect("UTF-8 name");
        let r = join_rel(rel, &name);
        if skip.contains(&r.as_str()) {
            continue;
        }
        let m = entry.metadata().expect("lstat");
        let kind = match kind_of(&m) {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::Other => "other",
        };
        out.insert(r.clone(), kind);
        if kind == "dir" {
            list_entries(&entry.path(), &r, skip, out);
        }
    }
}

fn join_rel(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

/// Compare a restored tree with the original, recursively: the same entries,
/// each of the same type; the same bytes in files; the same mode bits
/// (`& 0o7777`) and mtime (whole seconds) on files and directories; the same
/// symlink targets; the same owner and group; and the same hard-link groups
/// (names sharing one inode in the original share one in the restore, and no
/// others do). The roots themselves are compared too. Relative paths in
/// `ignore` (and everything under them) are skipped on both sides. Panics
/// listing every difference.
pub fn compare_trees(expected: &Path, actual: &Path, ignore: &[&str]) {
    let mut cmp = TreeCompare {
        expected,
        actual,
        ignore,
        problems: Vec::new(),
        expected_inodes: BTreeMap::new(),
        actual_inodes: BTreeMap::new(),
    };
    cmp.entry("");
    cmp.hard_links();
    assert!(
        cmp.problems.is_empty(),
        "restored tree {} differs from {}:\n  {}",
        actual.display(),
        expected.display(),
        cmp.problems.join("\n  ")
    );
}

struct TreeCompare<'a> {
    expected: &'a Path,
    actual: &'a Path,
    ignore: &'a [&'a str],
    problems: Vec<String>,
    expected_inodes: BTreeMap<(u64, u64), Vec<String>>,
    actual_inodes: BTreeMap<(u64, u64), Vec<String>>,
}

impl TreeCompare<'_> {
    fn at(base: &Path, rel: &str) -> PathBuf {
        if rel.is_empty() {
            base.to_path_buf()
        } else {
            base.join(rel)
        }
    }

    fn entry(&mut self, rel: &str) {
        let shown = if rel.is_empty() { "." } else { rel };
        let e_path = Self::at(self.expected, rel);
        let a_path = Self::at(self.actual, rel);
        let em = fs::symlink_metadata(&e_path).expect("lstat original");
        let am = match fs::symlink_metadata(&a_path) {
            Ok(m) => m,
            Err(e) => {
                self.problems
                    .push(format!("{shown}: missing in restore ({e})"));
                return;
            }
        };
        let (ek, ak) = (kind_of(&em), kind_of(&am));
        if ek != ak {
            self.problems
                .push(format!("{shown}: type {ek:?} restored as {ak:?}"));
            return;
        }
        if em.uid() != am.uid() || em.gid() != am.gid() {
            self.problems.push(format!(
                "{shown}: owner {}:{} restored as {}:{}",
                em.uid(),
                em.gid(),
                am.uid(),
                am.gid()
            ));
        }
        if ek != Kind::Symlink {
            if em.mode() & 0o7777 != am.mode() & 0o7777 {
                self.problems.push(format!(
                    "{shown}: mode {:o} restored as {:o}",
                    em.mode() & 0o7777,
                    am.mode() & 0o7777
                ));
            }
            if em.mtime() != am.mtime() {
                self.problems.push(format!(
                    "{shown}: mtime {} restored as {}",
                    em.mtime(),
                    am.mtime()
                ));
            }
        }
        match ek {
            Kind::File => {
                if em.len() != am.len() {
                    self.problems.push(format!(
                        "{shown}: size {} restored as {}",
                        em.len(),
                        am.len()
                    ));
                } else {
                    let (e, a) = (fs::read(&e_path), fs::read(&a_path));
                    match (e, a) {
                        (Ok(e), Ok(a)) if e == a => {}
                        (Ok(_), Ok(_)) => {
                            self.problems.push(format!("{shown}: contents differ"));
                        }
                        (e, a) => self
                            .problems
                            .push(format!("{shown}: cannot read ({e:?} / {a:?})")),
                    }
                }
                self.expected_inodes
                    .entry((em.dev(), em.ino()))
                    .or_default()
                    .push(rel.to_string());
                self.actual_inodes
                    .entry((am.dev(), am.ino()))
                    .or_default()
                    .push(rel.to_string());
            }
            Kind::Symlink => {
                let (e, a) = (fs::read_link(&e_path), fs::read_link(&a_path));
                if e.as_ref().ok() != a.as_ref().ok() {
                    self.problems
                        .push(format!("{shown}: symlink target {e:?} restored as {a:?}"));
                }
            }
            Kind::Dir => {
                let e_names = self.names(&e_path, rel);
                let a_names = self.names(&a_path, rel);
                for extra in a_names.difference(&e_names) {
                    self.problems.push(format!(
                        "{}: in the restore but not in the original",
                        join_rel(rel, extra)
                    ));
                }
                for name in &e_names {
                    if a_names.contains(name) {
                        self.entry(&join_rel(rel, name));
                    } else {
                        self.problems
                            .push(format!("{}: missing in restore", join_rel(rel, name)));
                    }
                }
            }
            Kind::Other => {}
        }
    }

    fn names(&self, dir: &Path, rel: &str) -> BTreeSet<String> {
        fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .map(|e| {
                e.expect("entry")
                    .file_name()
                    .into_string()
                    .expect("UTF-8 name")
            })
            .filter(|n| !self.ignore.contains(&join_rel(rel, n).as_str()))
            .collect()
    }

    fn hard_links(&mut self) {
        let groups = |m: &BTreeMap<(u64, u64), Vec<String>>| -> BTreeSet<Vec<String>> {
            m.values().filter(|v| v.len() > 1).cloned().collect()
        };
        let (e, a) = (groups(&self.expected_inodes), groups(&self.actual_inodes));
        for g in e.difference(&a) {
            self.problems.push(format!(
                "hard links {g:?} do not share one inode in the restore"
            ));
        }
        for g in a.difference(&e) {
            self.problems.push(format!(
                "{g:?} share one inode in the restore but not in the original"
            ));
        }
    }
}
