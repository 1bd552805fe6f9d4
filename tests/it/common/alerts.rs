//! The alerts README.md suggests, evaluated against the metrics text.
//!
//! [`README_ALERTS`] is the README's list, word for word (a test checks that
//! the README still says exactly these), and [`fires`] evaluates each one the
//! way Prometheus would at one instant: the exact subset of PromQL the list
//! uses (a selector compared with a number, `time() - selector`,
//! `increase(selector[1h])` over two scrapes an hour apart, and `or`). The
//! `for an hour` of the backlog alert is Prometheus's pending time, not part
//! of the expression.

use std::collections::BTreeSet;

/// One sample: metric name, labels (unescaped), value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// The alerts, as the README writes them.
pub const README_ALERTS: &[&str] = &[
    "gallra_overdue_deletions > 0",
    "time() - gallra_last_backup_timestamp_seconds > 26*3600",
    "gallra_last_drill_success == 0",
    "gallra_ship_backlog_objects > 0 or gallra_ship_backlog_unknown == 1",
    "increase(gallra_errors_total[1h]) > 0",
];

/// Parses the sample lines of a Prometheus text exposition (comments
/// skipped), undoing the label escapes. Panics on a line it cannot read:
/// a test must not pass on text it did not understand.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let end = line.find(['{', ' ']).expect("a value");
        let name = line[..end].to_string();
        let mut rest = &line[end..];
        let mut labels = Vec::new();
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            loop {
                let mut key = String::new();
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                }
                assert_eq!(chars.next().map(|c| c.1), Some('"'), "{line}");
                let mut value = String::new();
                loop {
                    match chars.next().expect("terminated").1 {
                        '"' => break,
                        '\\' => match chars.next().expect("escape").1 {
                            'n' => value.push('\n'),
                            c => value.push(c),
                        },
                        c => value.push(c),
                    }
                }
                labels.push((key, value));
                match chars.next().expect("closed") {
                    (_, ',') => continue,
                    (i, '}') => {
                        rest = &body[i + 1..];
                        break;
                    }
                    (_, c) => panic!("{line}: unexpected {c:?}"),
                }
            }
        }
        let value: f64 = rest.trim().parse().unwrap_or_else(|_| panic!("{line}"));
        out.push((name, labels, value));
    }
    out
}

/// The label sets for which `expr` (one of [`README_ALERTS`]) fires, at
/// `now` (Unix seconds), given the scrape at `now` and the one an hour
/// before it (for `increase`).
pub fn fires(
    expr: &str,
    now: f64,
    current: &[Sample],
    hour_ago: &[Sample],
) -> BTreeSet<Vec<(String, String)>> {
    let mut out = BTreeSet::new();
    for term in expr.split(" or ") {
        out.extend(term_fires(term.trim(), now, current, hour_ago));
    }
    out
}

fn term_fires(
    term: &str,
    now: f64,
    current: &[Sample],
    hour_ago: &[Sample],
) -> BTreeSet<Vec<(String, String)>> {
    let (lhs, op, rhs) = [" > ", " == "]
        .iter()
        .find_map(|op| term.split_once(op).map(|(l, r)| (l, op.trim(), r)))
        .unwrap_or_else(|| panic!("no comparison in {term:?}"));
    let threshold: f64 = rhs
        .split('*')
        .map(|f| f.trim().parse::<f64>().expect("a number"))
        .product();
    let compare = |v: f64| match op {
        ">" => v > threshold,
        "==" => v == threshold,
        _ => unreachable!(),
    };
    let selected = |name: &str, samples: &[Sample]| -> Vec<(Vec<(String, String)>, f64)> {
        samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, v)| (l.clone(), *v))
            .collect()
    };
    let values: Vec<(Vec<(String, String)>, f64)> =
        if let Some(name) = lhs.strip_prefix("time() - ") {
            selected(name, current)
                .into_iter()
                .map(|(l, v)| (l, now - v))
                .collect()
        } else if let Some(inner) = lhs
            .strip_prefix("increase(")
            .and_then(|r| r.strip_suffix("[1h])"))
        {
            // A series without an earlier sample has no increase; a counter
            // that went down was reset and counts from 0.
            let before = selected(inner, hour_ago);
            selected(inner, current)
                .into_iter()
                .filter_map(|(l, v)| {
                    let b = before.iter().find(|(bl, _)| *bl == l)?.1;
                    Some((l, if v >= b { v - b } else { v }))
                })
                .collect()
        } else {
            assert!(
                lhs.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "unknown expression {lhs:?}"
            );
            selected(lhs, current)
        };
    values
        .into_iter()
        .filter(|(_, v)| compare(*v))
        .map(|(l, _)| l)
        .collect()
}
