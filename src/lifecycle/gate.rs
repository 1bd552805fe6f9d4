//! Which tenants may be backed up. One place for the agent and `gallra
//! backup`: a customer whose contract's window has started, or whose
//! erasure is in force, is not backed up again (what is kept of them only
//! waits for its deletion), and when the events cannot be read no tenant is,
//! since any of them may be erased.

use jiff::Timestamp;
use std::collections::BTreeMap;

use super::events::{CLOCK_TOLERANCE, TenantState, fold};
use super::journal;
use super::plan::contract_window_start;
use super::rules::Policy;
use crate::error::{Error, Result};
use crate::layout;
use crate::repo::Repository;

/// Why a tenant is not backed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub why: String,
    /// Not the tenant's lifecycle but a fault (events unreadable): the run
    /// fails and says so, where a skip of an ended tenant is routine.
    pub fault: bool,
}

/// The decision for one tenant, given its state. `confirmed`: the operator
/// named the tenant and confirmed (`--include-ended --yes`). `has_key` is
/// asked only when an erased tenant is confirmed: a destroyed key is not
/// made anew without a reinstatement, so that an erasure cannot be undone
/// by a backup.
pub fn refusal(
    policy: &Policy,
    tenant: &str,
    state: Option<&TenantState>,
    confirmed: bool,
    now: Timestamp,
    has_key: impl FnOnce() -> Result<bool>,
) -> Option<Refusal> {
    let state = state?;
    let skip = |why: String| Refusal { why, fault: false };
    if let Some(e) = state.erasure_in_force(now) {
        if !confirmed {
            return Some(skip(format!(
                "its erasure was requested (event {}, received {}): not backed up again; `gallra contract reinstate {tenant}` ends the erasure for new backups",
                e.event, e.at
            )));
        }
        return match has_key() {
            Ok(true) => None,
            Ok(false) => Some(skip(format!(
                "its key was destroyed by the erasure (event {}); no new key is made for it until `gallra contract reinstate {tenant}`",
                e.event
            ))),
            Err(err) => Some(Refusal {
                why: format!("whether its key still exists could not be read: {err}"),
                fault: true,
            }),
        };
    }
    if let Some(end) = &state.contract_end {
        let start = contract_window_start(policy, end.last_day);
        if start <= now && !confirmed {
            return Some(skip(format!(
                "its contract ended (last day {}, event {}): not backed up again; `gallra backup --tenant {tenant} --include-ended --yes` backs it up anyway",
                end.last_day, end.event
            )));
        }
    }
    None
}

/// For each of `tenants` that is not to be backed up, why, by the events
/// on the primary. Fails closed: when the events cannot be read, every
/// tenant is refused, naming the reason.
pub fn backup_refusals(
    repo: &Repository,
    policy: &Policy,
    tenants: &[String],
    confirmed: &[String],
    now: Timestamp,
) -> BTreeMap<String, Refusal> {
    let states = match journal::load(repo) {
        Ok(events) => fold(&events),
        Err(e) => {
            let why = format!(
                "lifecycle events could not be read ({e}): no tenant is backed up until they can, since any of them may be erased (`gallra check` names the damage)"
            );
            return tenants
                .iter()
                .map(|t| {
                    (
                        t.clone(),
                        Refusal {
                            why: why.clone(),
                            fault: true,
                        },
                    )
                })
                .collect();
        }
    };
    let mut out = BTreeMap::new();
    for t in tenants {
        let has_key = || Ok(repo.store.size_of(&layout::tenant_key_path(t))?.is_some());
        if let Some(r) = refusal(
            policy,
            t,
            states.get(t),
            confirmed.contains(t),
            now,
            has_key,
        ) {
            out.insert(t.clone(), r);
        }
    }
    out
}

/// Refuses a backup creation time ahead of the clock (beyond the clock
/// tolerance): such a snapshot would report a negative age to status and
/// drills and outlive its retention.
pub fn check_backup_time(time: Timestamp, now: Timestamp) -> Result<()> {
    if time > now + CLOCK_TOLERANCE {
        return Err(Error::Usage(format!(
            "--time {time} is in the future (now {now}): a backup's creation time may be at most {} minutes ahead of the clock",
            CLOCK_TOLERANCE.as_mins()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::events::{ContractEnd, Erasure};
    use super::*;

    fn policy() -> Policy {
        Policy::new(
            &crate::lifecycle::rules::Retention::default(),
            &[],
            jiff::tz::TimeZone::UTC,
        )
        .unwrap()
    }

    fn erased(until: Option<Timestamp>) -> TenantState {
        TenantState {
            erasures: vec![Erasure {
                at: "2026-11-01T00:00:00Z".parse().unwrap(),
                until,
                reason: "asked".into(),
                include_legal: false,
                event: "x1".into(),
            }],
            ..TenantState::default()
        }
    }

    #[test]
    fn erased_and_ended_tenants_are_refused_unless_confirmed() {
        let p = policy();
        let now: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let no_key = || Ok(false);
        let with_key = || Ok(true);
        let st = erased(None);
        assert!(refusal(&p, "a", Some(&st), false, now, with_key).is_some());
        assert!(refusal(&p, "a", Some(&st), true, now, with_key).is_none());
        let r = refusal(&p, "a", Some(&st), true, now, no_key).unwrap();
        assert!(r.why.contains("reinstate") && !r.fault, "{r:?}");
        // Reinstated: backed up again, a new key allowed.
        let st = erased(Some("2026-11-15T00:00:00Z".parse().unwrap()));
        assert!(refusal(&p, "a", Some(&st), false, now, no_key).is_none());
        let ended = TenantState {
            contract_end: Some(ContractEnd {
                last_day: jiff::civil::date(2026, 11, 10),
                event: "c1".into(),
            }),
            ..TenantState::default()
        };
        assert!(refusal(&p, "a", Some(&ended), false, now, no_key).is_some());
        assert!(refusal(&p, "a", Some(&ended), true, now, no_key).is_none());
        let before = "2026-11-05T00:00:00Z".parse().unwrap();
        assert!(refusal(&p, "a", Some(&ended), false, before, no_key).is_none());
        assert!(refusal(&p, "a", None, false, now, no_key).is_none());
    }

    #[test]
    fn a_creation_time_ahead_of_the_clock_is_refused() {
        let now: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        assert!(check_backup_time(now + jiff::SignedDuration::from_mins(4), now).is_ok());
        assert!(check_backup_time(now - jiff::SignedDuration::from_hours(900), now).is_ok());
        let e = check_backup_time(now + jiff::SignedDuration::from_mins(6), now).unwrap_err();
        assert!(e.to_string().contains("future"), "{e}");
    }
}
