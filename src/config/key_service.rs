//! `[key_service]`: the AWS KMS API service that holds the repository's
//! epoch keys, so that an erasure holds against every surviving copy
//! (docs/SECURITY.md). Optional: without it, an erased tenant's surviving
//! copies open with the key file, and gallra says so.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

use super::ConfigFile;
use crate::error::Result;
use crate::keyservice::{AWS_KMS, KeyServiceSettings};

/// The `[key_service]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeyService {
    kind: String,
    region: String,
    endpoint: Option<String>,
    credentials_file: Option<PathBuf>,
    /// "7 days" to "30 days".
    deletion_wait: Option<String>,
    rotate_after: Option<String>,
    timeout: Option<String>,
}

pub(super) fn parse(
    raw: Option<RawKeyService>,
    file: &ConfigFile,
) -> Result<Option<KeyServiceSettings>> {
    let Some(raw) = raw else { return Ok(None) };
    let err = |message: String| file.error(format!("[key_service] {message}"));
    if raw.kind != AWS_KMS {
        return Err(err(format!(
            "kind {:?}: the one kind is {AWS_KMS:?} (the AWS KMS API)",
            raw.kind
        )));
    }
    let region_ok = !raw.region.is_empty()
        && raw
            .region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !region_ok {
        return Err(err(format!(
            "region {:?}: expected a region name like \"eu-north-1\"",
            raw.region
        )));
    }
    let endpoint = match raw.endpoint {
        Some(e) => match url::Url::parse(&e) {
            // The replies carry epoch keys in plaintext: plain HTTP only
            // to this machine (a test server, a local proxy).
            Ok(u) if u.scheme() == "https" && u.host().is_some() => e,
            Ok(u) if u.scheme() == "http" && is_loopback(&u) => e,
            Ok(u) if u.scheme() == "http" => {
                return Err(err(format!(
                    "endpoint {e:?}: plain http only to a loopback address (the key service's replies carry epoch keys); use https"
                )));
            }
            _ => {
                return Err(err(format!(
                    "endpoint {e:?}: expected an http(s) URL like \"https://kms.eu-north-1.amazonaws.com\""
                )));
            }
        },
        None => format!("https://kms.{}.amazonaws.com", raw.region),
    };
    let days = |key: &str, text: &str| -> Result<u64> {
        fixed_length(text)
            .filter(|d| d.as_secs() % 86_400 == 0)
            .map(|d| d.as_secs() / 86_400)
            .ok_or_else(|| {
                err(format!(
                    "{key} {text:?}: expected whole days, like \"7 days\""
                ))
            })
    };
    let deletion_wait_days = match &raw.deletion_wait {
        Some(text) => days("deletion_wait", text)?,
        None => 7,
    };
    if !(7..=30).contains(&deletion_wait_days) {
        return Err(err(format!(
            "deletion_wait {:?}: the AWS KMS API waits 7 to 30 days before it deletes a key",
            raw.deletion_wait.unwrap_or_default()
        )));
    }
    let rotate_after = match &raw.rotate_after {
        None => Duration::from_secs(86_400),
        Some(text) => fixed_length(text).ok_or_else(|| {
            err(format!(
                "rotate_after {text:?}: expected a duration like \"1 day\" or \"12h\""
            ))
        })?,
    };
    // Longer would let an erasure wait past "one month after the end".
    if rotate_after > Duration::from_secs(7 * 86_400) {
        return Err(err(format!(
            "rotate_after {:?}: at most 7 days, so that an erasure holds against every copy well within a month",
            raw.rotate_after.unwrap_or_default()
        )));
    }
    let timeout = file.duration("[key_service] timeout", raw.timeout.as_deref(), "30s")?;
    Ok(Some(KeyServiceSettings {
        endpoint,
        region: raw.region,
        credentials_file: raw.credentials_file.map(|p| file.resolve(p)),
        deletion_wait_days: deletion_wait_days as u32,
        rotate_after,
        timeout,
    }))
}

fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// A positive duration, "30s" to "7 days", with a day of 24 hours.
fn fixed_length(text: &str) -> Option<Duration> {
    let span = crate::units::parse_period(text).ok()?;
    let d = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .ok()?;
    d.is_positive().then(|| d.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    fn with_service(lines: &str) -> String {
        format!("{MINIMAL}\n[key_service]\n{lines}\n")
    }

    #[test]
    fn a_key_service_is_optional_and_defaults_to_the_regions_endpoint() {
        assert!(parse(MINIMAL).unwrap().key.service.is_none());
        let c = parse(&with_service("kind = \"aws-kms\"\nregion = \"eu-north-1\"")).unwrap();
        let s = c.key.service.unwrap();
        assert_eq!(s.endpoint, "https://kms.eu-north-1.amazonaws.com");
        assert_eq!(s.deletion_wait_days, 7);
        assert_eq!(s.rotate_after.as_secs(), 86_400);
        let c = parse(&with_service(
            "kind = \"aws-kms\"\nregion = \"us-east-1\"\nendpoint = \"http://127.0.0.1:5000\"\ndeletion_wait = \"30 days\"\ncredentials_file = \"kms.env\"",
        ))
        .unwrap();
        let s = c.key.service.unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:5000");
        assert_eq!(s.deletion_wait_days, 30);
        assert!(s.credentials_file.unwrap().is_absolute());
    }

    #[test]
    fn a_wrong_key_service_is_refused_with_the_key_named() {
        for (lines, words) in [
            ("kind = \"vault\"\nregion = \"x\"", "kind \"vault\""),
            (
                "kind = \"aws-kms\"\nregion = \"EU North\"",
                "region \"EU North\"",
            ),
            (
                "kind = \"aws-kms\"\nregion = \"eu-north-1\"\nendpoint = \"kms.example\"",
                "endpoint \"kms.example\"",
            ),
            (
                "kind = \"aws-kms\"\nregion = \"eu-north-1\"\ndeletion_wait = \"3 days\"",
                "7 to 30 days",
            ),
            (
                "kind = \"aws-kms\"\nregion = \"eu-north-1\"\ndeletion_wait = \"60 days\"",
                "7 to 30 days",
            ),
            (
                "kind = \"aws-kms\"\nregion = \"eu-north-1\"\nendpoint = \"http://kms.example.net\"",
                "plain http only to a loopback address",
            ),
            (
                "kind = \"aws-kms\"\nregion = \"eu-north-1\"\nrotate_after = \"30 days\"",
                "at most 7 days",
            ),
        ] {
            refused(&with_service(lines), &[words]);
        }
    }
}
