//! The report of a drill run, for an auditor, in Markdown or HTML.

use std::path::Path;

use jiff::{Span, Timestamp, tz::TimeZone};

use super::{DrillResult, Problem};
use crate::audit::Record;
use crate::text::{html_escape, md_cell, short_hex};

/// What a report says about the run as a whole.
pub struct ReportHeader<'a> {
    pub host: &'a str,
    pub target: &'a str,
    pub time: Timestamp,
    pub time_zone: &'a TimeZone,
    pub selection: &'a str,
    pub max_age: Span,
    /// The audit record written for each result, in the same order.
    pub records: &'a [Option<Record>],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Markdown,
    Html,
}

impl ReportFormat {
    /// HTML for a `.html` or `.htm` file, else Markdown.
    pub fn for_path(path: &Path) -> ReportFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm") => {
                ReportFormat::Html
            }
            _ => ReportFormat::Markdown,
        }
    }
}

/// A report a person can hand to an auditor: what was restored from where,
/// what was checked, how long it took, what failed and where the evidence
/// is in the audit trail.
pub fn report(results: &[DrillResult], head: &ReportHeader<'_>, format: ReportFormat) -> String {
    let model = ReportModel::new(results, head);
    match format {
        ReportFormat::Markdown => model.markdown(),
        ReportFormat::Html => model.html(),
    }
}

const TITLE: &str = "Restore drill report";
const DRILLS: &str = "Drills";
const PROBLEMS: &str = "Problems";
const CHECKED: &str = "What was checked";

const COLUMNS: [&str; 12] = [
    "Tenant",
    "Source",
    "Snapshot",
    "Taken",
    "Files",
    "Bytes",
    "First byte",
    "Seconds",
    "MB/s",
    "Freshness",
    "Result",
    "Audit record",
];

const CHECKS: [&str; 6] = [
    "Every file was restored from the target named above into an empty scratch folder, on this host, with nothing read from any other copy.",
    "Every file's bytes were hashed as they were written and read back from disk, and both SHA-256 sums compared with the one the snapshot recorded at backup time.",
    "Every file, directory and symlink was compared with the snapshot: kind, size, permission bits, modification time, symlink target, hard links, and owner when the drill ran as root.",
    "The number of files and their bytes were compared with what the snapshot records.",
    "The latest snapshot of each drilled source was checked to be younger than the maximum age.",
    "The scratch folder was emptied afterwards, and each drill was written to the hash-chained audit trail (without file names).",
];

/// What a report says, built once from the drills: every word and figure
/// is decided here, and the two renderers below only lay it out and escape
/// it, so that the Markdown and the HTML of one run cannot disagree.
struct ReportModel<'a> {
    facts: Vec<Fact>,
    /// One per drill, a cell per column of [`COLUMNS`].
    rows: Vec<[Cell; COLUMNS.len()]>,
    problems: Vec<ProblemLine<'a>>,
}

/// A fact about the run as a whole.
struct Fact {
    label: &'static str,
    value: String,
}

struct Cell {
    text: String,
    /// A failed drill's verdict, which HTML shows in red.
    failed: bool,
}

/// A problem, under the tenant and snapshot it was found in.
struct ProblemLine<'a> {
    tenant: &'a str,
    snapshot: &'a str,
    text: String,
}

impl<'a> ReportModel<'a> {
    fn new(results: &'a [DrillResult], head: &ReportHeader<'_>) -> ReportModel<'a> {
        let records = head.records.iter().map(Some).chain(std::iter::repeat(None));
        ReportModel {
            facts: facts(results, head),
            rows: results
                .iter()
                .zip(records)
                .map(|(r, rec)| row(r, rec.and_then(Option::as_ref)))
                .collect(),
            problems: results
                .iter()
                .flat_map(|r| {
                    r.problems.iter().map(move |p: &Problem| ProblemLine {
                        tenant: &r.tenant,
                        snapshot: short_hex(&r.snapshot, 12),
                        text: p.to_string(),
                    })
                })
                .collect(),
        }
    }

    fn markdown(&self) -> String {
        let mut out = format!("# {TITLE}\n\n");
        for Fact { label, value } in &self.facts {
            out += &format!("- **{label}:** {}\n", md_cell(value));
        }
        out += &format!("\n## {DRILLS}\n\n|");
        for c in COLUMNS {
            out += &format!(" {c} |");
        }
        out += "\n|";
        out += &"---|".repeat(COLUMNS.len());
        out += "\n";
        for row in &self.rows {
            out += "|";
            for Cell { text, .. } in row {
                // An empty cell would read as a gap in the table.
                let shown = if text.is_empty() {
                    "-".into()
                } else {
                    md_cell(text)
                };
                out += &format!(" {shown} |");
            }
            out += "\n";
        }
        if !self.problems.is_empty() {
            out += &format!("\n## {PROBLEMS}\n\n");
            for p in &self.problems {
                let (tenant, text) = (md_cell(p.tenant), md_cell(&p.text));
                out += &format!("- {tenant} {}: {text}\n", p.snapshot);
            }
        }
        out += &format!("\n## {CHECKED}\n\n");
        for c in CHECKS {
            out += &format!("- {c}\n");
        }
        out
    }

    fn html(&self) -> String {
        let e = html_escape;
        let mut out = format!(
            "{HTML_HEAD}<title>{}</title>\n{HTML_STYLE}\n</head>\n<body>\n",
            e(TITLE)
        );
        out += &format!("<h1>{}</h1>\n<dl>\n", e(TITLE));
        for Fact { label, value } in &self.facts {
            out += &format!("<dt>{}</dt><dd>{}</dd>\n", e(label), e(value));
        }
        out += &format!("</dl>\n<h2>{}</h2>\n<table>\n<tr>", e(DRILLS));
        for c in COLUMNS {
            out += &format!("<th>{}</th>", e(c));
        }
        out += "</tr>\n";
        for row in &self.rows {
            out += "<tr>";
            for Cell { text, failed } in row {
                let class = if *failed { " class=\"failed\"" } else { "" };
                out += &format!("<td{class}>{}</td>", e(text));
            }
            out += "</tr>\n";
        }
        out += "</table>\n";
        if !self.problems.is_empty() {
            out += &format!("<h2>{}</h2>\n<ul>\n", e(PROBLEMS));
            for p in &self.problems {
                let (tenant, text) = (e(p.tenant), e(&p.text));
                out += &format!("<li>{tenant} {}: {text}</li>\n", p.snapshot);
            }
            out += "</ul>\n";
        }
        out += &format!("<h2>{}</h2>\n<ul>\n", e(CHECKED));
        for c in CHECKS {
            out += &format!("<li>{}</li>\n", e(c));
        }
        out += "</ul>\n</body>\n</html>\n";
        out
    }
}

const HTML_HEAD: &str = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
const HTML_STYLE: &str = "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #999;padding:.3em .6em;text-align:left}.failed{color:#a00;font-weight:bold}</style>";

fn facts(results: &[DrillResult], head: &ReportHeader<'_>) -> Vec<Fact> {
    let failed = results.iter().filter(|r| !r.ok).count();
    let verdict = if results.is_empty() {
        "No snapshot was drilled.".to_string()
    } else if failed == 0 {
        format!("All {} drills passed.", results.len())
    } else {
        format!("{failed} of {} drills FAILED.", results.len())
    };
    let local = head.time.to_zoned(head.time_zone.clone());
    let fact = |label, value| Fact { label, value };
    vec![
        fact("Result", verdict),
        fact("Host", head.host.to_string()),
        fact("Restored from target", head.target.to_string()),
        fact(
            "Time",
            format!("{} ({})", local.strftime("%Y-%m-%d %H:%M:%S %Z"), head.time),
        ),
        fact("Chosen", head.selection.to_string()),
        fact(
            "Maximum age of the latest backup",
            format!("{:#}", head.max_age),
        ),
        fact("Program", format!("gallra {}", env!("CARGO_PKG_VERSION"))),
    ]
}

/// A drill's row, in the order of [`COLUMNS`].
fn row(r: &DrillResult, record: Option<&Record>) -> [Cell; COLUMNS.len()] {
    let cell = |text: String| Cell {
        text,
        failed: false,
    };
    [
        cell(r.tenant.clone()),
        cell(r.source.clone()),
        cell(short_hex(&r.snapshot, 12).to_string()),
        cell(r.taken.clone().unwrap_or_default()),
        cell(format!("{} of {}", r.files, r.expected_files)),
        cell(format!("{} of {}", r.bytes, r.expected_bytes)),
        cell(
            r.first_byte_seconds
                .map_or(String::new(), |s| format!("{s:.3} s")),
        ),
        cell(format!("{:.3}", r.seconds)),
        cell(format!("{:.1}", r.mb_per_s)),
        cell(r.freshness.clone()),
        Cell {
            text: if r.ok { "passed" } else { "FAILED" }.to_string(),
            failed: !r.ok,
        },
        cell(record.map_or(String::new(), |r| {
            format!("{} #{} ({})", r.host, r.seq, short_hex(&r.hash, 16))
        })),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::result::fixtures::*;
    use super::*;
    use crate::audit::{Action, AuditLog};

    fn head<'a>(records: &'a [Option<Record>], tz: &'a TimeZone) -> ReportHeader<'a> {
        ReportHeader {
            host: "web01",
            target: "offsite",
            time: "2026-03-01T12:00:00Z".parse().unwrap(),
            time_zone: tz,
            selection: "tenants acme, <b>|x",
            max_age: jiff::Span::new().days(2),
            records,
        }
    }

    #[test]
    fn report_escapes_names_and_gives_the_verdict() {
        let mut odd = passing();
        odd.tenant = "<b>|x".into();
        let results = [odd, failing()];
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::open(tmp.path(), "web01").unwrap();
        let (rec, _) = log.append(results[0].audit_entry("x"), &[]).unwrap();
        let records = [Some(rec.clone()), None];
        let tz = TimeZone::UTC;
        let head = head(&records, &tz);

        let md = report(&results, &head, ReportFormat::Markdown);
        assert!(md.contains("- **Result:** 1 of 2 drills FAILED.\n"), "{md}");
        assert!(md.contains("\n| <b>\\|x | www | 5e5e5e5e5e5e |"), "{md}");
        assert!(
            !md.contains("<b>|x"),
            "an unescaped | splits the table: {md}"
        );
        assert!(
            md.contains(&format!("| web01 #1 ({}) |", &rec.hash[..16])),
            "{md}"
        );
        assert!(
            md.contains(&format!("- acme c0c0c0c0c0c0: {SECRET}: blob")),
            "{md}"
        );

        let html = report(&results, &head, ReportFormat::Html);
        assert!(html.contains("<dd>1 of 2 drills FAILED.</dd>"), "{html}");
        assert!(html.contains("<tr><td>&lt;b&gt;|x</td>"), "{html}");
        assert!(!html.contains("<b>"), "markup from a name: {html}");
        assert!(html.contains("<td class=\"failed\">FAILED</td>"), "{html}");

        let verdict = |r: &[DrillResult]| report(r, &head, ReportFormat::Markdown);
        assert!(verdict(&[passing()]).contains("All 1 drills passed."));
        assert!(verdict(&[]).contains("No snapshot was drilled."));
    }

    /// Three drills (passed, failed, and a tenant with nothing to drill)
    /// with an audit record for the first only.
    fn pinned_report(format: ReportFormat) -> String {
        let mut pass = passing();
        pass.tenant = "<b>|x".into();
        pass.taken = Some("2026-03-01T10:00:00Z".into());
        pass.expected_files = 3;
        pass.expected_bytes = 4096;
        pass.mb_per_s = 3.276_8;
        let absent = DrillResult::failed(
            "gamma",
            "offsite",
            Problem::of_snapshot("tenant gamma has no snapshot on target offsite".into()),
        );
        let results = [pass, failing(), absent];
        let record = Record {
            seq: 1,
            time: "2026-03-01T12:00:01Z".into(),
            host: "web01".into(),
            action: Action::Drill,
            tenant: Some("<b>|x".into()),
            snapshots: vec![],
            targets: vec![],
            rule: None,
            legal_basis: None,
            reason: None,
            event: None,
            detail: None,
            survives: Vec::new(),
            prev_hash: "0".repeat(64),
            hash: "00112233445566778899aabbccddeeff".repeat(2),
        };
        let records = [Some(record), None];
        // A fixed offset, so that no time zone database is needed.
        let tz = TimeZone::fixed(jiff::tz::offset(1));
        let text = report(&results, &head(&records, &tz), format);
        text.replace(env!("CARGO_PKG_VERSION"), "VERSION")
    }

    /// The reports, byte for byte: the Markdown and HTML renderers must say
    /// the same thing in the same words, and change only on purpose.
    #[test]
    fn report_renders_exactly_the_pinned_markdown_and_html() {
        let md = pinned_report(ReportFormat::Markdown);
        assert_eq!(md, include_str!("pinned_report.md"), "{md}");
        let html = pinned_report(ReportFormat::Html);
        assert_eq!(html, include_str!("pinned_report.html"), "{html}");
    }

    #[test]
    fn report_format_follows_the_extension() {
        let of = |p: &str| ReportFormat::for_path(Path::new(p));
        assert_eq!(of("r.HTML"), ReportFormat::Html);
        assert_eq!(of("r.htm"), ReportFormat::Html);
        assert_eq!(of("r.md"), ReportFormat::Markdown);
        assert_eq!(of("html"), ReportFormat::Markdown);
        assert_eq!(of("r.html.txt"), ReportFormat::Markdown);
    }
}
