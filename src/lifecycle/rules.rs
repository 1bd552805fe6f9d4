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

    fn policy() -> Policy {
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
        Policy::new(
            &r,
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
