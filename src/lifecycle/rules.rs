//! Retention rules: which rule governs a snapshot, and its calendar periods.
//! Pure: no I/O.
//!
//! Precedence, most specific last: the built-in default (6 months, 1 month
//! after the contract), `[retention.default]`, `[retention.category.C]`,
//! `[retention.tenant.T]` (an agreement with one customer). A category rule
//! with `legal_obligation = true` comes after the tenant's agreement: a
//! contract cannot shorten what a law requires to be kept. Each layer sets
//! only the keys it names; the rest come from the layers before it.

use jiff::Span;
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::format::rules::{RuleBody, RulesBody};

/// A retention rule as written in agent.toml (`[retention.default]`,
/// `[retention.category.C]`, `[retention.tenant.T]`, a target's
/// `retention`): each key optional, resolved by [`Policy::rule_for`].
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub keep: Option<String>,
    pub after_contract: Option<String>,
    pub legal_basis: Option<String>,
    #[serde(default)]
    pub legal_obligation: bool,
}

/// The `[retention]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[serde(default)]
    pub default: Rule,
    #[serde(default)]
    pub category: BTreeMap<String, Rule>,
    #[serde(default)]
    pub tenant: BTreeMap<String, Rule>,
}

pub const BUILTIN_KEEP: &str = "6 months";
pub const BUILTIN_AFTER_CONTRACT: &str = "1 month";
pub const BUILTIN_LEGAL_BASIS: &str = "contract";

pub use crate::units::parse_period;

/// The rule that governs a snapshot, with every key resolved.
#[derive(Debug, Clone)]
pub struct ResolvedRule {
    /// Where it comes from: "default", "category.bookkeeping", "tenant.acme".
    pub name: String,
    pub keep: Span,
    pub after_contract: Span,
    pub legal_basis: String,
    pub legal_obligation: bool,
}

#[derive(Debug, Clone)]
struct ParsedRule {
    keep: Option<Span>,
    after_contract: Option<Span>,
    legal_basis: Option<String>,
    legal_obligation: bool,
}

impl ParsedRule {
    fn parse(rule: &Rule, at: &str) -> Result<ParsedRule, String> {
        let period = |key: &str, v: &Option<String>| {
            v.as_deref()
                .map(parse_period)
                .transpose()
                .map_err(|m| format!("{at} {key}: {m}"))
        };
        Ok(ParsedRule {
            keep: period("keep", &rule.keep)?,
            after_contract: period("after_contract", &rule.after_contract)?,
            legal_basis: rule.legal_basis.clone(),
            legal_obligation: rule.legal_obligation,
        })
    }
}

/// A target's own, shorter keep period (`retention = { keep = "30 days" }`).
#[derive(Debug, Clone)]
pub struct TargetRule {
    pub keep: Span,
    pub legal_basis: Option<String>,
}

/// Every retention rule of a config, parsed and checked.
#[derive(Debug, Clone)]
pub struct Policy {
    default: ParsedRule,
    category: BTreeMap<String, ParsedRule>,
    tenant: BTreeMap<String, ParsedRule>,
    target: BTreeMap<String, TargetRule>,
    pub time_zone: jiff::tz::TimeZone,
}

impl Policy {
    /// Parses the rules; errors name the table and key.
    pub fn new(
        retention: &Retention,
        targets: &[(String, Option<Rule>)],
        time_zone: jiff::tz::TimeZone,
    ) -> Result<Policy, String> {
        let mut category = BTreeMap::new();
        for (name, rule) in &retention.category {
            category.insert(
                name.clone(),
                ParsedRule::parse(rule, &format!("[retention.category.{name}]"))?,
            );
        }
        let mut tenant = BTreeMap::new();
        for (name, rule) in &retention.tenant {
            crate::tenant_name::check(name)
                .map_err(|m| format!("[retention.tenant.{name}]: {m}"))?;
            tenant.insert(
                name.clone(),
                ParsedRule::parse(rule, &format!("[retention.tenant.{name}]"))?,
            );
        }
        let mut target = BTreeMap::new();
        for (name, rule) in targets {
            let Some(rule) = rule else { continue };
            let at = format!("[[target]] {name}: retention");
            if rule.after_contract.is_some() || rule.legal_obligation {
                return Err(format!(
                    "{at}: a target may only shorten `keep` (after_contract and legal_obligation belong to [retention] rules)"
                ));
            }
            let keep = rule
                .keep
                .as_deref()
                .ok_or_else(|| format!("{at}: give `keep`, e.g. {{ keep = \"30 days\" }}"))?;
            target.insert(
                name.clone(),
                TargetRule {
                    keep: parse_period(keep).map_err(|m| format!("{at} keep: {m}"))?,
                    legal_basis: rule.legal_basis.clone(),
                },
            );
        }
        Ok(Policy {
            default: ParsedRule::parse(&retention.default, "[retention.default]")?,
            category,
            tenant,
            target,
            time_zone,
        })
    }

    /// The rule for a snapshot of `tenant` from a source of `category`.
    pub fn rule_for(&self, tenant: &str, category: &str) -> ResolvedRule {
        let mut rule = ResolvedRule {
            name: "default".into(),
            keep: parse_period(BUILTIN_KEEP).expect("valid"),
            after_contract: parse_period(BUILTIN_AFTER_CONTRACT).expect("valid"),
            legal_basis: BUILTIN_LEGAL_BASIS.into(),
            legal_obligation: false,
        };
        let apply = |rule: &mut ResolvedRule, layer: &ParsedRule, name: String| {
            rule.name = name;
            if let Some(k) = layer.keep {
                rule.keep = k;
            }
            if let Some(a) = layer.after_contract {
                rule.after_contract = a;
            }
            if let Some(b) = &layer.legal_basis {
                rule.legal_basis = b.clone();
            }
            rule.legal_obligation |= layer.legal_obligation;
        };
        apply(&mut rule, &self.default, "default".into());
        let category_rule = self.category.get(category);
        let tenant_rule = self.tenant.get(tenant);
        if let Some(c) = category_rule.filter(|c| !c.legal_obligation) {
            apply(&mut rule, c, format!("category.{category}"));
        }
        if let Some(t) = tenant_rule {
            apply(&mut rule, t, format!("tenant.{tenant}"));
        }
        if let Some(c) = category_rule.filter(|c| c.legal_obligation) {
            apply(&mut rule, c, format!("category.{category}"));
        }
        rule
    }

    /// A target's shorter keep period, if it has one.
    pub fn target_rule(&self, target: &str) -> Option<&TargetRule> {
        self.target.get(target)
    }

    /// Where `other` (a fleet server's rules, `other_name` its host) would
    /// decide a deletion differently from these: its time zone, and for
    /// each tenant and category given (those a repository holds), a
    /// resolved `keep`, `after_contract` or `legal_obligation` that is not
    /// the same. The wording of `legal_basis` decides nothing and is not
    /// compared; nor are rules of tenants and categories not given, so one
    /// host's rules can be the union of its fleet servers'.
    pub fn differences<'p>(
        &self,
        other: &Policy,
        other_name: &str,
        pairs: impl IntoIterator<Item = (&'p str, &'p str)>,
    ) -> Vec<RuleDifference> {
        let mut out = Vec::new();
        if self.time_zone != other.time_zone {
            let name =
                |tz: &jiff::tz::TimeZone| tz.iana_name().unwrap_or("a fixed offset").to_string();
            out.push(RuleDifference {
                tenant: None,
                text: format!(
                    "time zone {} on {other_name}, {} here",
                    name(&other.time_zone),
                    name(&self.time_zone)
                ),
            });
        }
        let pairs: std::collections::BTreeSet<(&str, &str)> = pairs.into_iter().collect();
        for (tenant, category) in pairs {
            let (here, there) = (
                self.rule_for(tenant, category),
                other.rule_for(tenant, category),
            );
            let mut keys = Vec::new();
            let span = |s: Span| format!("{s:#}");
            if here.keep.fieldwise() != there.keep.fieldwise() {
                keys.push(format!(
                    "keep {} there, {} here",
                    span(there.keep),
                    span(here.keep)
                ));
            }
            if here.after_contract.fieldwise() != there.after_contract.fieldwise() {
                keys.push(format!(
                    "after_contract {} there, {} here",
                    span(there.after_contract),
                    span(here.after_contract)
                ));
            }
            if here.legal_obligation != there.legal_obligation {
                keys.push(format!(
                    "legal_obligation {} there, {} here",
                    there.legal_obligation, here.legal_obligation
                ));
            }
            if !keys.is_empty() {
                out.push(RuleDifference {
                    tenant: Some(tenant.to_string()),
                    text: format!(
                        "tenant {tenant}, category {category}: {} (rule {} on {other_name}, {} here)",
                        keys.join(", "),
                        there.name,
                        here.name
                    ),
                });
            }
        }
        out
    }
}

/// One way a fleet server's rules decide differently from the lifecycle
/// host's: of one tenant, or (`None`) of every tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDifference {
    pub tenant: Option<String>,
    pub text: String,
}

impl From<&RuleBody> for Rule {
    fn from(b: &RuleBody) -> Rule {
        Rule {
            keep: b.keep.clone(),
            after_contract: b.after_contract.clone(),
            legal_basis: b.legal_basis.clone(),
            legal_obligation: b.legal_obligation,
        }
    }
}

impl From<&Rule> for RuleBody {
    fn from(r: &Rule) -> RuleBody {
        RuleBody {
            keep: r.keep.clone(),
            after_contract: r.after_contract.clone(),
            legal_basis: r.legal_basis.clone(),
            legal_obligation: r.legal_obligation,
        }
    }
}

impl Retention {
    /// These rules as a fleet server ships them to its lifecycle host
    /// (`lifecycle/rules`, FORMAT.md 17.13).
    pub fn to_body(&self, host: &str, time_zone: &str, written: jiff::Timestamp) -> RulesBody {
        let map =
            |m: &BTreeMap<String, Rule>| m.iter().map(|(k, r)| (k.clone(), r.into())).collect();
        RulesBody {
            version: crate::format::rules::RULES_VERSION,
            host: host.to_string(),
            written,
            time_zone: time_zone.to_string(),
            default: (&self.default).into(),
            category: map(&self.category),
            tenant: map(&self.tenant),
        }
    }

    /// A shipped body's rules, parsed as the fleet server parsed them;
    /// the error names the rule or the time zone that does not parse.
    pub fn policy_of_body(body: &RulesBody) -> Result<Policy, String> {
        let map =
            |m: &BTreeMap<String, RuleBody>| m.iter().map(|(k, r)| (k.clone(), r.into())).collect();
        let retention = Retention {
            default: (&body.default).into(),
            category: map(&body.category),
            tenant: map(&body.tenant),
        };
        let tz = jiff::tz::TimeZone::get(&body.time_zone)
            .map_err(|_| format!("unknown time zone {:?}", body.time_zone))?;
        Policy::new(&retention, &[], tz)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(keep: Option<&str>, after: Option<&str>, basis: Option<&str>, legal: bool) -> Rule {
        Rule {
            keep: keep.map(String::from),
            after_contract: after.map(String::from),
            legal_basis: basis.map(String::from),
            legal_obligation: legal,
        }
    }

    /// A law's category, a longer category and one tenant's agreement.
    fn retention() -> Retention {
        let mut r = Retention::default();
        r.category.insert(
            "bookkeeping".into(),
            rule(
                Some("7 years"),
                Some("7 years"),
                Some("Bokföringslagen"),
                true,
            ),
        );
        r.category
            .insert("mail".into(), rule(Some("2 years"), None, None, false));
        r.tenant.insert(
            "acme".into(),
            rule(Some("12 months"), None, Some("agreement 2026-04"), false),
        );
        r
    }

    fn policy() -> Policy {
        Policy::new(
            &retention(),
            &[(
                "local".into(),
                Some(rule(Some("30 days"), None, None, false)),
            )],
            jiff::tz::TimeZone::UTC,
        )
        .unwrap()
    }

    #[test]
    fn precedence_and_inheritance() {
        let p = policy();
        let d = p.rule_for("beta", "site");
        assert_eq!(d.name, "default");
        assert_eq!(d.keep.get_months(), 6);
        assert_eq!(d.after_contract.get_months(), 1);
        assert_eq!(d.legal_basis, "contract");
        let m = p.rule_for("beta", "mail");
        assert_eq!((m.name.as_str(), m.keep.get_years()), ("category.mail", 2));
        assert_eq!(
            m.after_contract.get_months(),
            1,
            "inherited from the default"
        );
        let a = p.rule_for("acme", "mail");
        assert_eq!((a.name.as_str(), a.keep.get_months()), ("tenant.acme", 12));
        assert_eq!(a.legal_basis, "agreement 2026-04");
        // The law outranks the agreement.
        let b = p.rule_for("acme", "bookkeeping");
        assert_eq!(b.name, "category.bookkeeping");
        assert_eq!(b.keep.get_years(), 7);
        assert!(b.legal_obligation);
        assert_eq!(p.target_rule("local").unwrap().keep.get_days(), 30);
        assert!(p.target_rule("offsite").is_none());
    }

    #[test]
    fn rules_shipped_and_read_back_decide_alike_and_differences_are_named() {
        let p = policy();
        let r = retention();
        let body = r.to_body("web01", "UTC", "2026-12-04T04:00:00Z".parse().unwrap());
        let back = Retention::policy_of_body(&body).unwrap();
        let pairs = [("acme", "mail"), ("beta", "site"), ("acme", "bookkeeping")];
        assert_eq!(p.differences(&back, "web01", pairs), vec![]);
        // The wording of a legal basis decides nothing.
        let mut reworded = body.clone();
        reworded.tenant.get_mut("acme").unwrap().legal_basis = Some("avtal".into());
        let reworded = Retention::policy_of_body(&reworded).unwrap();
        assert_eq!(p.differences(&reworded, "web01", pairs), vec![]);

        // The host lacks web01's agreement with beta, and counts in
        // another zone.
        let mut fleet = body.clone();
        fleet.tenant.insert(
            "beta".into(),
            RuleBody {
                keep: Some("1 year".into()),
                ..RuleBody::default()
            },
        );
        fleet.time_zone = "Europe/Stockholm".into();
        let fleet = Retention::policy_of_body(&fleet).unwrap();
        let d = p.differences(&fleet, "web01", pairs);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].tenant, None);
        assert!(
            d[0].text.contains("Europe/Stockholm on web01"),
            "{}",
            d[0].text
        );
        assert_eq!(d[1].tenant.as_deref(), Some("beta"));
        assert!(
            d[1].text.contains("category site: keep 1y there, 6mo here")
                && d[1]
                    .text
                    .contains("rule tenant.beta on web01, default here"),
            "{}",
            d[1].text
        );
        // Only the tenants and categories given are compared: the host
        // may hold other servers' agreements.
        assert!(
            p.differences(&back, "web01", [("gamma", "site")])
                .is_empty()
        );
        let e = Retention::policy_of_body(&RulesBody {
            time_zone: "Mars/Olympus".into(),
            ..body
        })
        .unwrap_err();
        assert!(e.contains("Mars/Olympus"), "{e}");
    }

    #[test]
    fn bad_rules_name_table_and_key() {
        let mut r = Retention::default();
        r.category
            .insert("mail".into(), rule(Some("2 yeras"), None, None, false));
        let e = Policy::new(&r, &[], jiff::tz::TimeZone::UTC).unwrap_err();
        assert!(
            e.contains("[retention.category.mail] keep") && e.contains("2 yeras"),
            "{e}"
        );
        let e = parse_period("0 days").unwrap_err();
        assert!(e.contains("longer than zero"), "{e}");
        let t = [(
            "local".to_string(),
            Some(rule(None, Some("1 day"), None, false)),
        )];
        let e = Policy::new(&Retention::default(), &t, jiff::tz::TimeZone::UTC).unwrap_err();
        assert!(e.contains("local") && e.contains("only shorten"), "{e}");
    }
}
