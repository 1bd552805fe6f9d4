//! Nothing a tenant stored may be read from the repository without the key:
//! no content, no file or directory name, no symlink target, no tag. And the
//! key file itself appears neither in the repository nor in any output.

use std::fs;
use std::os::unix::fs::symlink;

use crate::common::*;

const MARKER: &str = "GALLRA-MARKER-7f3a9c";
const UNRELATED_TEXT: &str = "The quick brown fox jumps over the lazy dog near Vänersborg 1893";
const FILE_NAMES: &[&str] = &[
    "gallra-fname-q8w7e6.txt",
    "zebrafinch-ledger-4471.csv",
    "tiny-marker-file-r4e3w2.txt",
];
const DIR_NAMES: &[&str] = &["gallra-dname-z1x2c3", "gallra-srcroot-k3j2h1"];
const LINK_TARGET: &str = "gallra-linktarget-p0o9i8/elsewhere.conf";
const TAG_KEY: &str = "ticket_u7y6t5";
const TAG_VALUE: &str = "gallra-tagvalue-m5n4b3";

const HEX: &[u8; 16] = b"0123456789abcdef";
const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn hex_encode(data: &[u8]) -> String {
    data.iter()
        .flat_map(|b| {
            [
                HEX[(b >> 4) as usize] as char,
                HEX[(b & 15) as usize] as char,
            ]
        })
        .collect()
}

fn base64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'-' => 62,
            b'_' => 63,
            _ => B64.iter().position(|&x| x == c)? as u32,
        };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Every encoding of the key that must never show up: the file's own bytes,
/// and the 32-byte key in raw, hex and base64 form.
fn key_needles(key_file: &[u8]) -> Vec<Vec<u8>> {
    let mut needles = vec![key_file.to_vec()];
    let raw = match std::str::from_utf8(key_file).map(str::trim) {
        Ok(t) if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) => hex_decode(t),
        Ok(t) if t.len() == 44 || t.len() == 43 => base64_decode(t).filter(|k| k.len() == 32),
        _ if key_file.len() == 32 => Some(key_file.to_vec()),
        _ => None,
    };
    let raw = raw.unwrap_or_else(|| {
        panic!(
            "the key file must be a 32-byte key: raw, hex or base64 ({} bytes)",
            key_file.len()
        )
    });
    needles.push(raw.clone());
    let hex = hex_encode(&raw);
    needles.push(hex.to_uppercase().into_bytes());
    needles.push(hex.into_bytes());
    let b64 = base64_encode(&raw);
    needles.push(
        b64.trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_")
            .into_bytes(),
    );
    needles.push(b64.into_bytes());
    if let Ok(t) = std::str::from_utf8(key_file) {
        needles.push(t.trim().as_bytes().to_vec());
    }
    needles
}

#[test]
fn repository_holds_no_plaintext_and_nothing_shows_the_key() {
    let env = Env::new();
    let src = env.path(DIR_NAMES[1]);
    let acme = src.join("acme");
    let globex = src.join("globex");
    let mut rng = Rng::new(3);

    // Compression cannot help: a tiny file holding only the marker, and the
    // marker embedded in random data.
    write_file(&acme.join(FILE_NAMES[2]), MARKER.as_bytes());
    let mut random = rng.bytes(600_000);
    for at in [0usize, 1000, 250_000, 599_000] {
        random[at..at + MARKER.len()].copy_from_slice(MARKER.as_bytes());
    }
    write_file(&acme.join("media/blob.bin"), &random);
    // Compression works: text with the marker on every tenth line.
    let mut text = Vec::new();
    for i in 0..20_000 {
        text.extend_from_slice(format!("{i} row of a web server access log ").as_bytes());
        if i % 10 == 0 {
            text.extend_from_slice(MARKER.as_bytes());
        }
        text.push(b'\n');
    }
    write_file(&acme.join(DIR_NAMES[0]).join(FILE_NAMES[0]), &text);
    write_file(&globex.join(FILE_NAMES[1]), UNRELATED_TEXT.as_bytes());
    write_file(
        &globex.join("prose.txt"),
        UNRELATED_TEXT.repeat(500).as_bytes(),
    );
    symlink(LINK_TARGET, acme.join("config-link")).unwrap();

    let pattern = format!("{}/{{tenant}}", s(&src));
    env.write_config("16 MiB", &paths_source("www", "site", &[&pattern], &[]));
    env.init();
    let tag = format!("{TAG_KEY}={TAG_VALUE}");
    let backup = env.backup(&["--tag", &tag]);
    let acme_id = backup_snapshot_id(&backup, "acme", "www");
    backup_snapshot_id(&backup, "globex", "www");

    // Exercise the other commands too, so that their output is checked for
    // the key below.
    let snaps = env.snapshots();
    assert!(
        snaps.iter().all(|s| s["tags"][TAG_KEY] == TAG_VALUE),
        "the tag is recorded: {snaps:?}"
    );
    env.json(&["ls", &acme_id]);
    env.restore_verified(&acme_id, &env.path("restored"));
    env.ok(&["dump", &acme_id, s(&acme.join(FILE_NAMES[2]))]);
    env.json(&["check", "--read-data"]);
    env.json(&["key", "list"]);

    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("content marker".into(), MARKER.as_bytes().to_vec()),
        ("unrelated text".into(), UNRELATED_TEXT.as_bytes().to_vec()),
        ("symlink target".into(), LINK_TARGET.as_bytes().to_vec()),
        ("tag key".into(), TAG_KEY.as_bytes().to_vec()),
        ("tag value".into(), TAG_VALUE.as_bytes().to_vec()),
    ];
    for name in FILE_NAMES.iter().chain(DIR_NAMES) {
        needles.push((format!("name {name}"), name.as_bytes().to_vec()));
    }
    let key_file = fs::read(&env.key).unwrap();
    for k in key_needles(&key_file) {
        needles.push(("the key".into(), k));
    }

    let objects = files_under(&env.repo);
    assert!(
        !pack_files(&env.repo).is_empty(),
        "the backup wrote packs: {objects:?}"
    );
    assert!(
        dir_size(&env.repo) >= random.len() as u64,
        "600 KB of random data must be stored somewhere in the repository"
    );
    let mut leaks = Vec::new();
    for object in &objects {
        let rel = object.strip_prefix(&env.repo).unwrap().to_str().unwrap();
        let data = fs::read(object).unwrap();
        for (what, needle) in &needles {
            if contains_bytes(&data, needle) {
                leaks.push(format!("{rel} contains the {what}"));
            }
            if contains_bytes(rel.as_bytes(), needle) {
                leaks.push(format!("the object path {rel} contains the {what}"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "plaintext in the repository:\n  {}",
        leaks.join("\n  ")
    );

    for (command, out) in env.commands_run() {
        for k in key_needles(&key_file) {
            assert!(
                !contains_bytes(&out.stdout, &k) && !contains_bytes(&out.stderr, &k),
                "`{command}` printed the key"
            );
        }
    }
}
