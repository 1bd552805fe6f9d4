//! Printing shared by the commands: `--json`, times, sizes, errors on one
//! line, snapshots and ship reports.

use serde::Serialize;
use std::io::Write;

use gallra::ship::ShipReport;
pub use gallra::text::{escape_control as esc, human_bytes};

/// Prints one JSON document on stdout. It goes through a `Value`, whose
/// objects are sorted maps: the keys come out in alphabetical order
/// whatever the report's field order, as scripts have always read them.
pub fn print_json(report: &impl Serialize) -> anyhow::Result<()> {
    let v = serde_json::to_value(report)?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &v)?;
    writeln!(out)?;
    Ok(())
}

/// Unix time as RFC 3339 (UTC); empty when out of range.
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    jiff::Timestamp::new(secs, nanos as i32)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The error and its causes on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string();
        // Only for errors of other crates (an `io::Error` wrapping
        // another, jiff's), which may print their cause in their own text.
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        // gallra's errors print their cause in their own text (see
        // `gallra::error`): the rest of the chain is said.
        if c.is::<gallra::error::Error>() {
            break;
        }
    }
    parts.join(": ").replace('\n', " ")
}

pub fn print_ship_report(r: &ShipReport) {
    let snapshots: usize = r.tenants.iter().map(|t| t.snapshots_copied).sum();
    let present: usize = r.tenants.iter().map(|t| t.present).sum();
    println!(
        "shipped {} → {}: {} objects ({}, {} snapshots) copied{}, {} already there; {:.1}s, {} requests, {} retries",
        r.from,
        r.target,
        r.copied + r.repository_objects,
        human_bytes(r.copied_bytes),
        snapshots,
        if r.verified > 0 {
            format!(" and {} verified", r.verified)
        } else {
            String::new()
        },
        present,
        r.seconds,
        r.store.requests,
        r.store.retries
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use gallra::error::Error;

    fn io(path: &str) -> Error {
        Error::io(path, std::io::Error::other("permission denied"))
    }

    /// gallra's errors hold their cause's text, so the chain below them is
    /// not printed again; a context above them is.
    #[test]
    fn a_cause_is_printed_once() {
        let e = anyhow::Error::from(io("/srv/a"));
        assert_eq!(one_line(&e), "/srv/a: permission denied");
        let e = Err::<(), _>(io("/srv/a").in_target("offsite"))
            .context("restore of snapshot ab12")
            .unwrap_err();
        assert_eq!(
            one_line(&e),
            "restore of snapshot ab12: target offsite: /srv/a: permission denied"
        );
    }
}
