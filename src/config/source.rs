//! `[[source]]`: what is backed up. A source is either paths, each with
//! at most one `{tenant}` component that discovers the tenants, or a
//! command whose standard output is one tenant's file.

use serde::Deserialize;

use super::{Agent, ConfigFile};
use crate::error::Result;
use crate::schedule::Schedule;

#[derive(Debug, Clone)]
pub enum SourceKind {
    /// Paths, each possibly holding one `{tenant}` component.
    Paths(Vec<String>),
    Command {
        argv: Vec<String>,
        stdout_file: String,
    },
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub category: String,
    /// Set for a source of one named tenant; `None` for `{tenant}` discovery.
    pub tenant: Option<String>,
    pub kind: SourceKind,
    pub exclude: Vec<String>,
    pub one_file_system: bool,
    /// When the agent backs this source up.
    pub schedule: Schedule,
}

/// A `[[source]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    name: String,
    category: String,
    tenant: Option<String>,
    paths: Option<Vec<String>>,
    command: Option<Vec<String>>,
    stdout_file: Option<String>,
    #[serde(default)]
    exclude: Vec<String>,
    one_file_system: Option<bool>,
    /// Spanned, so that an error names the line of this source's schedule.
    schedule: Option<toml::Spanned<String>>,
}

/// The sources, checked; a source without a schedule takes the agent's.
pub(super) fn parse(raw: Vec<RawSource>, agent: &Agent, file: &ConfigFile) -> Result<Vec<Source>> {
    let err = |message: String| file.error(message);
    let mut sources = Vec::new();
    for s in raw {
        let at = format!("[[source]] {:?}", s.name);
        if sources.iter().any(|o: &Source| o.name == s.name) {
            return Err(err(format!("{at}: the name appears twice")));
        }
        if let Some(t) = &s.tenant {
            crate::tenant_name::check(t).map_err(|m| err(format!("{at}: {m}")))?;
        }
        let kind = match (s.paths, s.command) {
            (Some(paths), None) => {
                if paths.is_empty() {
                    return Err(err(format!("{at}: paths is empty")));
                }
                for p in &paths {
                    if !p.starts_with('/') {
                        return Err(err(format!("{at}: path {p:?} is not absolute")));
                    }
                    // A source path is opened one folder at a time from
                    // `/` (`beneath::open_source`); `..` after a tenant's
                    // folder would climb out of what the operator named.
                    if p.split('/').any(|c| c == ".." || c == ".") {
                        return Err(err(format!(
                            "{at}: path {p:?} holds a \".\" or \"..\" component; write the path it means"
                        )));
                    }
                    let n = p.matches("{tenant}").count();
                    let whole = p.split('/').filter(|c| *c == "{tenant}").count();
                    if n > 1 || n != whole {
                        return Err(err(format!(
                            "{at}: path {p:?}: {{tenant}} may appear once, as a whole path component"
                        )));
                    }
                    if n == 0 && s.tenant.is_none() {
                        return Err(err(format!(
                            "{at}: path {p:?} has no {{tenant}} pattern, so the source needs `tenant = \"...\"`"
                        )));
                    }
                    if n == 1 && s.tenant.is_some() {
                        return Err(err(format!(
                            "{at}: path {p:?} discovers tenants with {{tenant}}; drop `tenant` or the pattern"
                        )));
                    }
                }
                if s.stdout_file.is_some() {
                    return Err(err(format!(
                        "{at}: stdout_file is only for command sources"
                    )));
                }
                SourceKind::Paths(paths)
            }
            (None, Some(argv)) => {
                if argv.is_empty() {
                    return Err(err(format!("{at}: command is empty")));
                }
                if s.tenant.is_none() {
                    return Err(err(format!(
                        "{at}: a command source needs `tenant = \"...\"`"
                    )));
                }
                let stdout_file = s.stdout_file.unwrap_or_else(|| format!("{}.out", s.name));
                if !crate::format::tree::is_safe_name(stdout_file.as_bytes()) {
                    return Err(err(format!(
                        "{at}: stdout_file {stdout_file:?} must be a plain file name"
                    )));
                }
                SourceKind::Command { argv, stdout_file }
            }
            _ => {
                return Err(err(format!(
                    "{at}: give exactly one of `paths` and `command`"
                )));
            }
        };
        for g in &s.exclude {
            globset::Glob::new(g).map_err(|e| err(format!("{at}: exclude {g:?}: {e}")))?;
        }
        let schedule = match &s.schedule {
            Some(spanned) => spanned.get_ref().parse::<Schedule>().map_err(|m| {
                err(format!(
                    "line {}: {at}: schedule: {m}",
                    file.line_of(spanned.span().start)
                ))
            })?,
            None => agent.schedule.clone(),
        };
        sources.push(Source {
            name: s.name,
            category: s.category,
            tenant: s.tenant,
            kind,
            exclude: s.exclude,
            one_file_system: s.one_file_system.unwrap_or(true),
            schedule,
        });
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

    #[test]
    fn bad_sources_are_refused() {
        for (bad, needle) in [
            (r#"paths = ["/var/{tenant}/x/{tenant}"]"#, "once"),
            (r#"paths = ["/var/www/x{tenant}"]"#, "whole path component"),
            (r#"paths = ["/var/www/static"]"#, "needs `tenant"),
            (r#"paths = ["relative/{tenant}"]"#, "not absolute"),
            (r#"paths = ["/srv/{tenant}/../common"]"#, "\"..\" component"),
        ] {
            let text = MINIMAL.replace(r#"paths = ["/var/www/{tenant}"]"#, bad);
            let msg = parse(&text).unwrap_err().to_string();
            assert!(msg.contains(needle), "{bad}: {msg}");
        }
    }

    #[test]
    fn a_bad_source_schedule_names_its_line() {
        let text = MINIMAL.replace(
            "category = \"site\"\n",
            "category = \"site\"\nschedule = \"every 6h\"\n",
        ) + "\n[[source]]\nname = \"mail\"\ncategory = \"mail\"\npaths = [\"/var/mail/{tenant}\"]\nschedule = \"every fortnight\"\n";
        let line = text.lines().position(|l| l.contains("fortnight")).unwrap() + 1;
        assert_eq!(line, 19, "the second source's schedule, not the first's");
        refused(
            &text,
            &[
                &format!("line {line}:"),
                "[[source]] \"mail\"",
                "schedule",
                "every fortnight",
            ],
        );
        let msg = parse(&text).unwrap_err().to_string();
        assert!(!msg.contains("www"), "{msg}");

        let good = text.replace("every fortnight", "every 15m");
        let c = parse(&good).unwrap();
        assert_eq!(c.sources[0].schedule.to_string(), "every 6h");
        assert_eq!(c.sources[1].schedule.to_string(), "every 15m");
    }
}
