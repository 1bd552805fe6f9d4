//! What failed of one job's many parts (a tenant's source in a backup, a
//! target in a ship, a tenant on a target in the lifecycle), and why; the
//! job carries on with the others and reports these together.
//!
//! One type for every job, but each command's `--json` has always printed
//! its own fields: `json` holds those views, so that scripts read what they
//! always read.

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

/// One part of a job that failed. Which fields are set says what failed:
/// a backup's names a tenant and source, a ship's its target, the
/// lifecycle's a target, a tenant, or a tenant on a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub tenant: Option<String>,
    /// The `[[source]]` a backup read ("*": none of the tenant's was found).
    pub source: Option<String>,
    pub target: Option<String>,
    /// Why; names neither the tenant, the source nor the target again
    /// (ship's, which carries no tenant, names the tenant here).
    pub error: String,
}

impl Failure {
    /// A backup of `tenant` from `source`.
    pub fn of_source(
        tenant: impl Into<String>,
        source: impl Into<String>,
        error: impl Into<String>,
    ) -> Failure {
        Failure {
            tenant: Some(tenant.into()),
            source: Some(source.into()),
            target: None,
            error: error.into(),
        }
    }

    /// A target as a whole.
    pub fn on_target(target: impl Into<String>, error: impl Into<String>) -> Failure {
        Failure {
            tenant: None,
            source: None,
            target: Some(target.into()),
            error: error.into(),
        }
    }

    /// A tenant, on one target or (`None`) on none in particular.
    pub fn of_tenant(
        tenant: impl Into<String>,
        target: Option<String>,
        error: impl Into<String>,
    ) -> Failure {
        Failure {
            tenant: Some(tenant.into()),
            source: None,
            target,
            error: error.into(),
        }
    }

    /// The target, or "" for a failure of no one target, as the
    /// lifecycle's reports have always printed it.
    pub fn target_or_empty(&self) -> &str {
        self.target.as_deref().unwrap_or_default()
    }
}

/// The fields each command's `--json` prints of a failure.
pub mod json {
    use super::*;

    /// Which fields a view prints.
    #[derive(Clone, Copy)]
    enum Shape {
        /// `{tenant, target, error}`: the tenant null when none, the target
        /// "" when none (`lifecycle`, `status`).
        Lifecycle,
        /// `{target, error}` (`ship`, a backup's `ship_failed`).
        Ship,
        /// `{tenant, source, error}` (a backup's `failed`).
        Backup,
    }

    struct Printed<'a>(&'a Failure, Shape);

    impl Serialize for Printed<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let Printed(f, shape) = self;
            let mut map = s.serialize_map(None)?;
            match shape {
                Shape::Lifecycle => {
                    map.serialize_entry("tenant", &f.tenant)?;
                    map.serialize_entry("target", f.target_or_empty())?;
                }
                Shape::Ship => map.serialize_entry("target", f.target_or_empty())?,
                Shape::Backup => {
                    map.serialize_entry("tenant", &f.tenant)?;
                    map.serialize_entry("source", &f.source)?;
                }
            }
            map.serialize_entry("error", &f.error)?;
            map.end()
        }
    }

    fn all<S: Serializer>(failures: &[Failure], shape: Shape, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(failures.len()))?;
        for f in failures {
            seq.serialize_element(&Printed(f, shape))?;
        }
        seq.end()
    }

    /// For `#[serde(serialize_with)]`: the lifecycle's `{tenant, target, error}`.
    pub fn lifecycle<S: Serializer>(failures: &[Failure], s: S) -> Result<S::Ok, S::Error> {
        all(failures, Shape::Lifecycle, s)
    }

    /// For `#[serde(serialize_with)]`: ship's `{target, error}`.
    pub fn ship<S: Serializer>(failures: &[Failure], s: S) -> Result<S::Ok, S::Error> {
        all(failures, Shape::Ship, s)
    }

    /// For `#[serde(serialize_with)]`: a backup's `{tenant, source, error}`.
    pub fn backup<S: Serializer>(failures: &[Failure], s: S) -> Result<S::Ok, S::Error> {
        all(failures, Shape::Backup, s)
    }

    /// One failure as ship prints it, `{target, error}`.
    pub fn ship_one(f: &Failure) -> impl Serialize + '_ {
        Printed(f, Shape::Ship)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Serialize)]
    struct Report {
        #[serde(serialize_with = "json::lifecycle")]
        lifecycle: Vec<Failure>,
        #[serde(serialize_with = "json::ship")]
        ship: Vec<Failure>,
    }

    /// The fields each command has always printed: scripts read them.
    #[test]
    fn each_view_prints_the_fields_its_command_always_printed() {
        let report = Report {
            lifecycle: vec![
                Failure::on_target("offsite", "events not read: 503"),
                Failure::of_tenant("acme", None, "disputed"),
                Failure::of_tenant("acme", Some("local".into()), "prune not done"),
            ],
            ship: vec![Failure::on_target("offsite", "tenant acme: locked")],
        };
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            json!({
                "lifecycle": [
                    {"tenant": null, "target": "offsite", "error": "events not read: 503"},
                    {"tenant": "acme", "target": "", "error": "disputed"},
                    {"tenant": "acme", "target": "local", "error": "prune not done"},
                ],
                "ship": [{"target": "offsite", "error": "tenant acme: locked"}],
            })
        );
        assert_eq!(
            serde_json::to_string(&json::ship_one(&report.ship[0])).unwrap(),
            r#"{"target":"offsite","error":"tenant acme: locked"}"#
        );
    }
}
