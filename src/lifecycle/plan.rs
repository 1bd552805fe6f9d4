//! The planner: snapshots + events + rules + now → what to delete, where,
//! why, under which rule. Pure: no I/O, no clock.
//!
//! A snapshot's expiry on a target is the earliest of: created + the rule's
//! `keep` (or the target's shorter `keep`); the day after the contract's last
//! day, 00:00 in the policy's time zone, + the rule's `after_contract`; the
//! moment gallra received an erasure request (for every snapshot of the
//! tenant, whatever its creation time, unless it was created after a
//! reinstatement received later; and not for those under a legal
//! obligation unless the erasure includes them).
//! Calendar arithmetic is jiff's: adding months keeps the wall-clock time and
//! clamps to the last day of a shorter month.

use jiff::{Span, Timestamp};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

use super::events::TenantState;
use super::rules::Policy;
use crate::format::Id;

/// What the planner needs to know of one snapshot on one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFacts {
    pub tenant: String,
    pub id: Id,
    pub target: String,
    pub created: Timestamp,
    pub category: String,
    /// The source it was taken from (not read by the planner).
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    Erasure,
    ContractEnded,
    Retention,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Erasure => "erasure",
            Reason::ContractEnded => "contract-ended",
            Reason::Retention => "retention",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    pub at: Timestamp,
    pub reason: Reason,
    pub rule: String,
    pub legal_basis: String,
    /// The governing rule is a legal obligation and an erasure spared it.
    pub spared_by_erasure: bool,
}

/// `at` + `span` in the policy's time zone, or the far future if the sum
/// leaves jiff's range.
fn add(policy: &Policy, at: Timestamp, span: Span) -> Timestamp {
    at.to_zoned(policy.time_zone.clone())
        .checked_add(span)
        .map(|z| z.timestamp())
        .unwrap_or(Timestamp::MAX)
}

/// The moment a contract's post-contract window starts: 00:00 of the day
/// after its last day.
pub fn contract_window_start(policy: &Policy, last_day: jiff::civil::Date) -> Timestamp {
    last_day
        .tomorrow()
        .and_then(|d| d.to_zoned(policy.time_zone.clone()))
        .map(|z| z.timestamp())
        .unwrap_or(Timestamp::MAX)
}

/// When a snapshot on its target expires, and why.
pub fn expiry(policy: &Policy, state: Option<&TenantState>, snap: &SnapshotFacts) -> Expiry {
    let rule = policy.rule_for(&snap.tenant, &snap.category);
    let mut best = Expiry {
        at: add(policy, snap.created, rule.keep),
        reason: Reason::Retention,
        rule: rule.name.clone(),
        legal_basis: rule.legal_basis.clone(),
        spared_by_erasure: false,
    };
    let mut consider = |candidate: Expiry| {
        if (candidate.at, candidate.reason) < (best.at, best.reason) {
            best = candidate;
        }
    };
    if let Some(t) = policy.target_rule(&snap.target) {
        consider(Expiry {
            at: add(policy, snap.created, t.keep),
            reason: Reason::Retention,
            rule: format!("target.{}", snap.target),
            legal_basis: t
                .legal_basis
                .clone()
                .unwrap_or_else(|| rule.legal_basis.clone()),
            spared_by_erasure: false,
        });
    }
    let Some(state) = state else { return best };
    if let Some(end) = &state.contract_end {
        consider(Expiry {
            at: add(
                policy,
                contract_window_start(policy, end.last_day),
                rule.after_contract,
            ),
            reason: Reason::ContractEnded,
            rule: rule.name.clone(),
            legal_basis: rule.legal_basis.clone(),
            spared_by_erasure: false,
        });
    }
    let mut spared = false;
    for e in state.erasures.iter().filter(|e| e.covers(snap.created)) {
        if rule.legal_obligation && !e.include_legal {
            spared = true;
            continue;
        }
        consider(Expiry {
            at: e.at,
            reason: Reason::Erasure,
            rule: rule.name.clone(),
            legal_basis: format!("erasure requested: {}", e.reason),
            spared_by_erasure: false,
        });
    }
    best.spared_by_erasure = spared && best.reason != Reason::Erasure;
    best
}

/// One snapshot on one target that goes (or, in `held`, would go).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanEntry {
    pub tenant: String,
    pub snapshot: String,
    pub target: String,
    pub expires: Timestamp,
    pub reason: Reason,
    pub rule: String,
    pub legal_basis: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldEntry {
    #[serde(flatten)]
    pub entry: PlanEntry,
    pub hold_reason: String,
}

/// The next deletion of a tenant that is not due yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upcoming {
    pub tenant: String,
    pub expires: Timestamp,
    pub reason: Reason,
    /// Snapshot copies (over all targets) that go at that moment.
    pub copies: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Due now: delete.
    pub due: Vec<PlanEntry>,
    /// Past expiry but kept by a legal hold.
    pub held: Vec<HeldEntry>,
    /// Not erased although the tenant's erasure was requested: their rule is
    /// a legal obligation. With the day they go.
    pub legal_kept: Vec<PlanEntry>,
    pub upcoming: Vec<Upcoming>,
    /// Due, but the copy is under S3 Object Lock until later: deleted when
    /// the lock ends (a delete before would only hide it). Filled by the
    /// lifecycle, which asks the store; the planner leaves it empty.
    pub locked: Vec<LockedEntry>,
}

/// A due copy whose S3 Object Lock has not ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockedEntry {
    #[serde(flatten)]
    pub entry: PlanEntry,
    pub locked_until: Timestamp,
}

pub fn plan(
    policy: &Policy,
    states: &BTreeMap<String, TenantState>,
    snapshots: &[SnapshotFacts],
    now: Timestamp,
) -> Plan {
    let mut out = Plan::default();
    let mut next: BTreeMap<&str, (Timestamp, Reason, usize)> = BTreeMap::new();
    let mut seen_legal: HashSet<(&str, Id)> = HashSet::new();
    for snap in snapshots {
        let state = states.get(&snap.tenant);
        let e = expiry(policy, state, snap);
        let entry = PlanEntry {
            tenant: snap.tenant.clone(),
            snapshot: snap.id.to_hex(),
            target: snap.target.clone(),
            expires: e.at,
            reason: e.reason,
            rule: e.rule.clone(),
            legal_basis: e.legal_basis.clone(),
        };
        if e.spared_by_erasure && seen_legal.insert((&snap.tenant, snap.id)) {
            out.legal_kept.push(entry.clone());
        }
        if e.at <= now {
            match state.and_then(TenantState::held_because) {
                Some(hold_reason) => out.held.push(HeldEntry { entry, hold_reason }),
                None => out.due.push(entry),
            }
        } else {
            let slot = next
                .entry(&snap.tenant)
                .or_insert((Timestamp::MAX, e.reason, 0));
            if e.at < slot.0 {
                *slot = (e.at, e.reason, 1);
            } else if e.at == slot.0 {
                slot.2 += 1;
            }
        }
    }
    out.upcoming = next
        .into_iter()
        .map(|(tenant, (expires, reason, copies))| Upcoming {
            tenant: tenant.to_string(),
            expires,
            reason,
            copies,
        })
        .collect();
    let order = |e: &PlanEntry| {
        (
            e.tenant.clone(),
            e.expires,
            e.snapshot.clone(),
            e.target.clone(),
        )
    };
    out.due.sort_by_key(order);
    out.held.sort_by_key(|h| order(&h.entry));
    out.legal_kept.sort_by_key(order);
    out
}

/// Whether a tenant's key is to be destroyed (crypto-shredding): its
/// contract's window has started or an erasure is in force, no hold (or
/// disagreement between targets) suspends deletions, and no target holds a
/// snapshot of it any more.
pub fn key_destruction_due(
    policy: &Policy,
    state: Option<&TenantState>,
    snapshots_left: usize,
    now: Timestamp,
) -> bool {
    let Some(state) = state else { return false };
    snapshots_left == 0 && !state.held() && tenant_goes(policy, state, now)
}

/// Whether the tenant is going at `now`: its contract's window has started
/// or an erasure is in force. Its key goes with its last snapshot.
pub fn tenant_goes(policy: &Policy, state: &TenantState, now: Timestamp) -> bool {
    let ended = state
        .contract_end
        .as_ref()
        .is_some_and(|c| contract_window_start(policy, c.last_day) <= now);
    ended || state.erasure_in_force(now).is_some()
}

#[cfg(test)]
mod tests {
    use super::super::events::{ContractEnd, Erasure, Hold};
    use super::*;
    use crate::lifecycle::rules::{Retention, Rule};
    use proptest::prelude::*;

    fn stockholm() -> Policy {
        let mut r = Retention::default();
        r.category.insert(
            "bookkeeping".into(),
            Rule {
                keep: Some("7 years".into()),
                after_contract: Some("7 years".into()),
                legal_basis: Some("legal obligation: Bokföringslagen".into()),
                legal_obligation: true,
            },
        );
        Policy::new(
            &r,
            &[(
                "local".into(),
                Some(Rule {
                    keep: Some("30 days".into()),
                    ..Rule::default()
                }),
            )],
            jiff::tz::TimeZone::get("Europe/Stockholm").unwrap(),
        )
        .unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse::<jiff::Zoned>()
            .map(|z| z.timestamp())
            .or_else(|_| s.parse())
            .unwrap()
    }

    fn snap(
        tenant: &str,
        n: u8,
        target: &str,
        created: Timestamp,
        category: &str,
    ) -> SnapshotFacts {
        SnapshotFacts {
            tenant: tenant.into(),
            id: Id([n; 32]),
            target: target.into(),
            created,
            category: category.into(),
            source: "www".into(),
        }
    }

    #[test]
    fn month_end_clamp_across_summer_time() {
        let p = stockholm();
        let s = snap(
            "a",
            1,
            "offsite",
            ts("2026-05-31T12:00:00+02:00[Europe/Stockholm]"),
            "site",
        );
        let e = expiry(&p, None, &s);
        assert_eq!(e.at, ts("2026-11-30T12:00:00+01:00[Europe/Stockholm]"));
        assert_eq!((e.reason, e.rule.as_str()), (Reason::Retention, "default"));
        let local = SnapshotFacts {
            target: "local".into(),
            ..s
        };
        let e = expiry(&p, None, &local);
        assert_eq!(e.at, ts("2026-06-30T12:00:00+02:00[Europe/Stockholm]"));
        assert_eq!(e.rule, "target.local");
    }

    #[test]
    fn contract_window_starts_the_day_after_the_last_day() {
        let p = stockholm();
        let state = TenantState {
            contract_end: Some(ContractEnd {
                last_day: jiff::civil::date(2026, 10, 31),
                event: "e".into(),
            }),
            ..TenantState::default()
        };
        let s = snap("a", 1, "offsite", ts("2026-10-20T02:00:00Z"), "site");
        let e = expiry(&p, Some(&state), &s);
        assert_eq!(e.at, ts("2026-12-01T00:00:00+01:00[Europe/Stockholm]"));
        assert_eq!(e.reason, Reason::ContractEnded);
        // Seven years from creation comes before seven years from the end.
        let b = snap("a", 2, "offsite", ts("2026-10-20T02:00:00Z"), "bookkeeping");
        let e = expiry(&p, Some(&state), &b);
        assert_eq!(e.at, ts("2033-10-20T02:00:00Z"));
        assert_eq!(
            (e.reason, e.rule.as_str()),
            (Reason::Retention, "category.bookkeeping")
        );
        let b = snap("a", 2, "offsite", ts("2026-10-31T23:30:00Z"), "bookkeeping");
        let e = expiry(&p, Some(&state), &b);
        assert_eq!(e.at, ts("2033-11-01T00:00:00+01:00[Europe/Stockholm]"));
        assert_eq!(e.reason, Reason::ContractEnded);
    }

    #[test]
    fn erasure_spares_legal_obligations_unless_included() {
        let p = stockholm();
        let at = ts("2026-11-20T10:00:00Z");
        let mut state = TenantState {
            // Reinstated on the 20th: `later` is the new contract's.
            erasures: vec![Erasure {
                at,
                until: Some(ts("2026-11-20T12:00:00Z")),
                reason: "customer asked".into(),
                include_legal: false,
                event: "e".into(),
            }],
            ..TenantState::default()
        };
        let site = snap("a", 1, "offsite", ts("2026-11-01T00:00:00Z"), "site");
        let books = snap("a", 2, "offsite", ts("2026-11-01T00:00:00Z"), "bookkeeping");
        let later = snap("a", 3, "offsite", ts("2026-11-21T00:00:00Z"), "site");
        let p1 = plan(
            &p,
            &BTreeMap::from([("a".into(), state.clone())]),
            &[site.clone(), books.clone(), later.clone()],
            ts("2026-11-22T00:00:00Z"),
        );
        assert_eq!(p1.due.len(), 1);
        assert_eq!(p1.due[0].reason, Reason::Erasure);
        assert_eq!(p1.due[0].snapshot, site.id.to_hex());
        assert_eq!(p1.legal_kept.len(), 1);
        assert_eq!(p1.legal_kept[0].snapshot, books.id.to_hex());
        state.erasures[0].include_legal = true;
        let p2 = plan(
            &p,
            &BTreeMap::from([("a".into(), state)]),
            &[site, books, later],
            ts("2026-11-22T00:00:00Z"),
        );
        assert_eq!(p2.due.len(), 2);
        assert!(p2.legal_kept.is_empty());
    }

    fn arb_state(base: i64) -> impl Strategy<Value = TenantState> {
        (
            proptest::option::of(-400i32..400),
            any::<bool>(),
            proptest::option::of((-400i64..400, any::<bool>())),
        )
            .prop_map(move |(end, hold, erasure)| TenantState {
                contract_end: end.map(|d| ContractEnd {
                    last_day: Timestamp::from_second(base)
                        .unwrap()
                        .to_zoned(jiff::tz::TimeZone::UTC)
                        .date()
                        .checked_add(Span::new().days(d))
                        .unwrap(),
                    event: "c".into(),
                }),
                holds: hold
                    .then(|| {
                        (
                            "h".to_string(),
                            Hold {
                                reason: "court".into(),
                                since: Timestamp::from_second(base).unwrap(),
                                event: "h".into(),
                            },
                        )
                    })
                    .into_iter()
                    .collect(),
                dispute: None,
                erasures: erasure
                    .map(|(d, legal)| Erasure {
                        at: Timestamp::from_second(base + d * 86_400).unwrap(),
                        until: None,
                        reason: "asked".into(),
                        include_legal: legal,
                        event: "x".into(),
                    })
                    .into_iter()
                    .collect(),
            })
    }

    fn arb_world()
    -> impl Strategy<Value = (BTreeMap<String, TenantState>, Vec<SnapshotFacts>, Timestamp)> {
        let base = 1_790_000_000i64; // autumn 2026
        (
            proptest::collection::btree_map("[ab]", arb_state(base), 0..3),
            proptest::collection::vec(
                (
                    "[abc]",
                    any::<u8>(),
                    prop_oneof!["local", "offsite"],
                    -1200i64..60,
                    prop_oneof!["site", "bookkeeping", "mail"],
                ),
                0..24,
            ),
            -300i64..900,
        )
            .prop_map(move |(states, snaps, now)| {
                // One id is one snapshot: the same content, the same time.
                let snaps: BTreeMap<(String, u8, String), SnapshotFacts> = snaps
                    .into_iter()
                    .map(|(t, n, target, days, cat)| {
                        let s = snap(
                            &t,
                            n,
                            &target,
                            Timestamp::from_second(base + days * 86_400 + i64::from(n) * 97)
                                .unwrap(),
                            &cat,
                        );
                        ((t, n, target), s)
                    })
                    .collect();
                let snaps = snaps.into_values().collect();
                (
                    states,
                    snaps,
                    Timestamp::from_second(base + now * 86_400).unwrap(),
                )
            })
    }

    proptest! {
        #[test]
        fn planner_properties((states, snaps, now) in arb_world()) {
            let p = stockholm();
            let result = plan(&p, &states, &snaps, now);
            // Nothing before its expiry; nothing under a hold.
            for e in &result.due {
                prop_assert!(e.expires <= now);
                prop_assert!(states.get(&e.tenant).is_none_or(|s| !s.held()));
            }
            // Every snapshot past its expiry is planned (or held).
            for s in &snaps {
                let e = expiry(&p, states.get(&s.tenant), s);
                let due = result.due.iter().any(|d| d.snapshot == s.id.to_hex() && d.target == s.target && d.tenant == s.tenant);
                let held = result.held.iter().any(|h| h.entry.snapshot == s.id.to_hex() && h.entry.target == s.target && h.entry.tenant == s.tenant);
                let hold = states.get(&s.tenant).is_some_and(|st| st.held());
                prop_assert_eq!(due, e.at <= now && !hold);
                prop_assert_eq!(held, e.at <= now && hold);
            }
            // Idempotent: the same input plans the same; applying the plan
            // leaves nothing due.
            prop_assert_eq!(&plan(&p, &states, &snaps, now), &result);
            let left: Vec<SnapshotFacts> = snaps.iter().filter(|s| !result.due.iter().any(|d| d.snapshot == s.id.to_hex() && d.target == s.target && d.tenant == s.tenant)).cloned().collect();
            prop_assert!(plan(&p, &states, &left, now).due.is_empty());
            // A reinstatement cancels the contract's expiry.
            let reinstated: BTreeMap<String, TenantState> = states.iter().map(|(t, s)| (t.clone(), TenantState { contract_end: None, ..s.clone() })).collect();
            prop_assert!(plan(&p, &reinstated, &snaps, now).due.iter().all(|d| d.reason != Reason::ContractEnded));
        }
    }
}
