//! Lifecycle events: contract ended or reinstated, erasure requested, legal
//! hold set or released. Pure: parsing, checking, and folding a tenant's
//! events into its state.

use jiff::Timestamp;
use jiff::civil::Date;
use std::collections::BTreeMap;

pub use crate::format::event::{CLOCK_TOLERANCE, Event, EventType, StoredEvent, valid_id};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub reason: String,
    /// When gallra received the `hold_set` event.
    pub since: Timestamp,
    /// The `hold_set` event's id: the hold's id, which releases it.
    pub event: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// When gallra received the request: it is due from then.
    pub at: Timestamp,
    /// When a reinstatement was received after it, if one was: snapshots
    /// created from then on are the reinstated tenant's and not covered.
    /// Until then every snapshot of the tenant is covered, whatever its
    /// creation time says, so that neither a back-dated request nor a
    /// forward-dated snapshot escapes it.
    pub until: Option<Timestamp>,
    pub reason: String,
    pub include_legal: bool,
    pub event: String,
}

impl Erasure {
    /// Whether a snapshot created at `created` is erased by this request.
    pub fn covers(&self, created: Timestamp) -> bool {
        self.until.is_none_or(|u| created < u)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractEnd {
    pub last_day: Date,
    pub event: String,
}

/// What a tenant's events add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantState {
    pub contract_end: Option<ContractEnd>,
    /// The legal holds in force, by the id of the `hold_set` event.
    pub holds: BTreeMap<String, Hold>,
    pub erasures: Vec<Erasure>,
    /// Why nothing of the tenant may be deleted although no hold says so:
    /// the targets' events disagree, or one cannot be read.
    pub dispute: Option<String>,
}

impl TenantState {
    /// Whether every deletion of the tenant is suspended.
    pub fn held(&self) -> bool {
        !self.holds.is_empty() || self.dispute.is_some()
    }

    /// Why deletions are suspended, for the plan and the refusals.
    pub fn held_because(&self) -> Option<String> {
        let mut why: Vec<String> = self.holds.values().map(|h| h.reason.clone()).collect();
        why.extend(self.dispute.clone());
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// The erasure in force (received by `now`, not ended by a
    /// reinstatement), if any.
    pub fn erasure_in_force(&self, now: Timestamp) -> Option<&Erasure> {
        self.erasures
            .iter()
            .find(|e| e.at <= now && e.until.is_none())
    }
}

/// Folds events, in the order gallra received them (then id), into each
/// tenant's state: a reinstatement cancels the contract's end and ends the
/// erasures in force; a release lifts the hold it names; erasures
/// accumulate.
pub fn fold(events: &[StoredEvent]) -> BTreeMap<String, TenantState> {
    let mut sorted: Vec<&StoredEvent> = events.iter().collect();
    sorted.sort_by(|a, b| a.order().cmp(&b.order()));
    let mut states: BTreeMap<String, TenantState> = BTreeMap::new();
    for s in sorted {
        let e = &s.event;
        let state = states.entry(e.tenant.clone()).or_default();
        match e.kind {
            EventType::ContractEnded => {
                state.contract_end = e.effective.map(|d| ContractEnd {
                    last_day: d,
                    event: e.id.clone(),
                });
            }
            EventType::ContractReinstated => {
                state.contract_end = None;
                for erasure in state.erasures.iter_mut().filter(|x| x.until.is_none()) {
                    erasure.until = Some(s.received);
                }
            }
            EventType::HoldSet => {
                state.holds.insert(
                    e.id.clone(),
                    Hold {
                        reason: e.reason.clone().unwrap_or_default(),
                        since: s.received,
                        event: e.id.clone(),
                    },
                );
            }
            EventType::HoldReleased => match &e.hold {
                Some(id) => {
                    state.holds.remove(id);
                }
                None => state.holds.clear(),
            },
            EventType::ErasureRequested => state.erasures.push(Erasure {
                at: s.received,
                until: None,
                reason: e.reason.clone().unwrap_or_default(),
                include_legal: e.include_legal,
                event: e.id.clone(),
            }),
        }
    }
    states
}

/// The events read from one target.
#[derive(Debug, Clone, Default)]
pub struct TargetEvents {
    pub target: String,
    pub events: Vec<StoredEvent>,
    /// Ids of event objects on the target that could not be read.
    pub unreadable: Vec<String>,
}

/// Folds the events of every target that holds the repository. The states
/// come from every event any target holds; a tenant whose events are not
/// the same on every target, or whose audit trail (`audited_holds`:
/// tenant, `hold_set` event id) records a hold no target's events carry,
/// gets a `dispute` and so no deletion: a hold removed from one target
/// must not let another delete. An event object no target can read may be
/// any tenant's hold: every tenant in `tenants` is then disputed.
pub fn fold_targets<'a>(
    targets: &[TargetEvents],
    audited_holds: &[(String, String)],
    tenants: impl IntoIterator<Item = &'a String>,
) -> BTreeMap<String, TenantState> {
    let mut union: BTreeMap<&str, &StoredEvent> = BTreeMap::new();
    let mut disputes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut dispute = |tenant: &str, why: String| {
        disputes.entry(tenant.to_string()).or_default().push(why);
    };
    for t in targets {
        for e in &t.events {
            match union.get(e.event.id.as_str()) {
                Some(seen) if *seen != e => {
                    for tenant in [&seen.event.tenant, &e.event.tenant] {
                        dispute(
                            tenant,
                            format!(
                                "event {} is not the same on every target (see target {})",
                                e.event.id, t.target
                            ),
                        );
                    }
                }
                Some(_) => {}
                None => {
                    union.insert(&e.event.id, e);
                }
            }
        }
    }
    let mut unknown: Vec<&str> = Vec::new();
    for t in targets {
        let here: std::collections::BTreeSet<&str> =
            t.events.iter().map(|e| e.event.id.as_str()).collect();
        for (id, e) in &union {
            if !here.contains(id) && !t.unreadable.iter().any(|u| u == id) {
                dispute(
                    &e.event.tenant,
                    format!(
                        "target {} lacks event {id} ({})",
                        t.target,
                        e.event.kind.as_str()
                    ),
                );
            }
        }
        for id in &t.unreadable {
            match union.get(id.as_str()) {
                Some(e) => dispute(
                    &e.event.tenant,
                    format!("event {id} cannot be read on target {}", t.target),
                ),
                None => unknown.push(id),
            }
        }
    }
    for (tenant, id) in audited_holds {
        if !union.contains_key(id.as_str()) && !unknown.contains(&id.as_str()) {
            dispute(
                tenant,
                format!("the audit trail records hold {id}, but no target holds that event"),
            );
        }
    }
    let all: Vec<StoredEvent> = union.values().map(|e| (*e).clone()).collect();
    let mut states = fold(&all);
    if !unknown.is_empty() {
        unknown.sort();
        unknown.dedup();
        let why = format!(
            "event object(s) {} can be read on no target; any of them may be this tenant's hold",
            unknown.join(", ")
        );
        for tenant in tenants {
            dispute(tenant, why.clone());
        }
    }
    for (tenant, mut whys) in disputes {
        whys.sort();
        whys.dedup();
        states.entry(tenant).or_default().dispute = Some(format!(
            "events differ between targets: {}; nothing of it is deleted until they agree",
            whys.join("; ")
        ));
    }
    states
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(json: &str) -> StoredEvent {
        StoredEvent {
            event: Event::parse(json.as_bytes()).unwrap(),
            received: "2026-11-01T00:00:00Z".parse().unwrap(),
            host: "web01".into(),
            via: "inbox".into(),
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_790_000_000 + second).unwrap()
    }

    /// An event of `kind` (0..5) of `tenant`, received at `received`,
    /// claiming `claimed`; a release names `hold` when given.
    fn ev(
        i: usize,
        kind: u8,
        tenant: &str,
        received: i64,
        claimed: Option<i64>,
        hold: Option<String>,
    ) -> StoredEvent {
        let kind = [
            EventType::ContractEnded,
            EventType::ContractReinstated,
            EventType::ErasureRequested,
            EventType::HoldSet,
            EventType::HoldReleased,
        ][usize::from(kind % 5)];
        StoredEvent {
            event: Event {
                id: format!("e{i}"),
                kind,
                tenant: tenant.into(),
                effective: (kind == EventType::ContractEnded)
                    .then(|| jiff::civil::date(2026, 10, 31)),
                reason: Some("r".into()),
                reference: None,
                time: claimed.map(at),
                include_legal: false,
                hold: if kind == EventType::HoldReleased {
                    hold
                } else {
                    None
                },
            },
            received: at(received),
            host: "web01".into(),
            via: "inbox".into(),
        }
    }

    /// Events with distinct receipt times; releases name an earlier event
    /// (a hold or not) or none.
    fn arb_events() -> impl proptest::strategy::Strategy<Value = Vec<StoredEvent>> {
        use proptest::prelude::*;
        proptest::collection::vec(
            (
                0u8..5,
                "[ab]",
                0i64..10_000,
                proptest::option::of(-100_000i64..100_000),
                proptest::option::of(0usize..20),
            ),
            0..20,
        )
        .prop_map(|raw| {
            raw.into_iter()
                .enumerate()
                .map(|(i, (k, t, r, c, h))| {
                    ev(i, k, &t, r * 20 + i as i64, c, h.map(|h| format!("e{h}")))
                })
                .collect()
        })
    }

    fn last_received(events: &[StoredEvent]) -> i64 {
        events
            .iter()
            .map(|e| e.received.as_second() - 1_790_000_000)
            .max()
            .unwrap_or(0)
    }

    proptest::proptest! {
        /// Receipt orders events: neither the order they are read in nor
        /// the times they claim change what they add up to.
        #[test]
        fn fold_orders_by_receipt_not_by_claimed_time(
            events in arb_events(),
            times in proptest::collection::vec(proptest::option::of(-100_000i64..100_000), 20),
        ) {
            let mut other: Vec<StoredEvent> = events.iter().rev().cloned().collect();
            for (e, t) in other.iter_mut().zip(times) {
                e.event.time = t.map(at);
            }
            proptest::prop_assert_eq!(fold(&events), fold(&other));
        }

        /// A hold set after a release holds, whatever either claims.
        #[test]
        fn a_later_hold_set_always_wins_over_an_earlier_release(
            mut events in arb_events(),
            claimed in proptest::option::of(-100_000i64..100_000),
        ) {
            let n = events.len();
            let later = last_received(&events) + 1;
            events.push(ev(n, 3, "a", later, claimed, None));
            let states = fold(&events);
            let id = format!("e{n}");
            proptest::prop_assert!(states["a"].holds.contains_key(&id));
            proptest::prop_assert!(states["a"].held());
        }

        /// Releasing one hold lifts that hold and no other.
        #[test]
        fn holds_are_independent(events in arb_events()) {
            let before = fold(&events);
            for (tenant, state) in &before {
                for id in state.holds.keys() {
                    let mut more = events.clone();
                    let later = last_received(&events) + 1;
                    more.push(ev(999, 4, tenant, later, None, Some(id.clone())));
                    let after = fold(&more);
                    let mut want = state.holds.clone();
                    want.remove(id);
                    proptest::prop_assert_eq!(&after[tenant].holds, &want);
                }
            }
        }

        /// Targets that agree fold as one; a target that lacks an event
        /// keeps every deletion of its tenant suspended.
        #[test]
        fn targets_that_disagree_give_no_deletion(events in arb_events(), k in 0usize..20) {
            let tenants: Vec<String> = vec!["a".into(), "b".into()];
            let target = |name: &str, events: Vec<StoredEvent>| TargetEvents {
                target: name.into(),
                events,
                unreadable: Vec::new(),
            };
            let agree = fold_targets(
                &[target("local", events.clone()), target("offsite", events.clone())],
                &[],
                &tenants,
            );
            proptest::prop_assert_eq!(&agree, &fold(&events));
            if events.is_empty() {
                return Ok(());
            }
            let k = k % events.len();
            let mut fewer = events.clone();
            let gone = fewer.remove(k);
            for targets in [
                [target("local", fewer.clone()), target("offsite", events.clone())],
                [target("local", events.clone()), target("offsite", fewer.clone())],
            ] {
                let states = fold_targets(&targets, &[], &tenants);
                let st = &states[&gone.event.tenant];
                proptest::prop_assert!(st.dispute.as_ref().is_some_and(|d| d.contains(&gone.event.id)));
                proptest::prop_assert!(st.held());
            }
            // An object no target can read may be anyone's hold.
            let mut unreadable = target("local", fewer.clone());
            unreadable.unreadable.push(gone.event.id.clone());
            let states = fold_targets(&[unreadable.clone(), TargetEvents { target: "offsite".into(), ..unreadable }], &[], &tenants);
            for t in &tenants {
                proptest::prop_assert!(states[t].held());
            }
        }
    }

    #[test]
    fn an_audited_hold_no_target_carries_suspends_deletion() {
        let events = vec![ev(0, 0, "a", 1, None, None)];
        let t = TargetEvents {
            target: "local".into(),
            events,
            unreadable: Vec::new(),
        };
        let states = fold_targets(&[t], &[("a".into(), "h1".into())], &["a".to_string()]);
        let why = states["a"].dispute.as_deref().unwrap();
        assert!(why.contains("audit trail records hold h1"), "{why}");
    }

    #[test]
    fn an_old_release_without_a_hold_lifts_the_holds_received_before_it() {
        let states = fold(&[
            ev(0, 3, "a", 1, None, None),
            ev(1, 3, "a", 2, None, None),
            ev(2, 4, "a", 3, None, None),
            ev(3, 3, "a", 4, None, None),
        ]);
        assert_eq!(states["a"].holds.keys().collect::<Vec<_>>(), ["e3"]);
    }

    #[test]
    fn a_future_claimed_time_is_refused() {
        let now = at(0);
        let mut e = ev(0, 3, "a", 0, Some(60), None).event;
        assert!(e.check_time(now).is_ok(), "within the clock tolerance");
        e.time = Some(at(3_600));
        assert!(e.check_time(now).unwrap_err().contains("future"));
    }

    #[test]
    fn fold_follows_receipt_order() {
        let states = fold(&[
            stored(
                r#"{"id":"3","type":"contract_reinstated","tenant":"acme","time":"2026-10-03T00:00:00Z"}"#,
            ),
            stored(
                r#"{"id":"1","type":"contract_ended","tenant":"acme","effective":"2026-10-31","time":"2026-10-01T00:00:00Z"}"#,
            ),
            stored(
                r#"{"id":"2","type":"hold_set","tenant":"beta","reason":"court order","time":"2026-10-02T00:00:00Z"}"#,
            ),
            stored(
                r#"{"id":"4","type":"erasure_requested","tenant":"beta","reason":"GDPR art. 17"}"#,
            ),
        ]);
        assert_eq!(
            states["acme"].contract_end, None,
            "reinstated after it ended"
        );
        assert_eq!(states["beta"].holds["2"].reason, "court order");
        let erasure = &states["beta"].erasures[0];
        assert_eq!(
            erasure.at,
            "2026-11-01T00:00:00Z".parse().unwrap(),
            "received time"
        );
    }
}
