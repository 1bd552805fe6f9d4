//! Lifecycle events: contract ended or reinstated, erasure requested, legal
//! hold set or released. Pure: parsing, checking, and folding a tenant's
//! events into its state.

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    ContractEnded,
    ContractReinstated,
    ErasureRequested,
    HoldSet,
    HoldReleased,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ContractEnded => "contract_ended",
            EventType::ContractReinstated => "contract_reinstated",
            EventType::ErasureRequested => "erasure_requested",
            EventType::HoldSet => "hold_set",
            EventType::HoldReleased => "hold_released",
        }
    }
}

/// An event as written into the inbox (and as the CLI makes one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub tenant: String,
    /// The contract's last day (for `contract_ended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective: Option<Date>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// When it happened; when absent, the moment it was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    /// For `erasure_requested`: erase snapshots kept under a legal
    /// obligation too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_legal: bool,
}

/// An accepted event, as stored in `lifecycle/events/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredEvent {
    pub event: Event,
    pub received: Timestamp,
    /// The host that accepted it.
    pub host: String,
    /// "cli" or "inbox".
    pub via: String,
}

impl StoredEvent {
    /// When the event takes effect in the order of events.
    pub fn time(&self) -> Timestamp {
        self.event.time.unwrap_or(self.received)
    }
}

/// Whether an event id can name an object: 1-128 of `A-Z a-z 0-9 . _ : -`,
/// not starting with '.'.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

impl Event {
    /// Parses one inbox file; the message says what is wrong.
    pub fn parse(json: &[u8]) -> Result<Event, String> {
        let event: Event =
            serde_json::from_slice(json).map_err(|e| format!("not a lifecycle event: {e}"))?;
        event.check()?;
        Ok(event)
    }

    /// Checks the fields each type needs.
    pub fn check(&self) -> Result<(), String> {
        if !valid_id(&self.id) {
            return Err(format!(
                "id {:?}: use 1-128 letters, digits, '.', '_', ':' or '-'",
                self.id
            ));
        }
        crate::config::validate_tenant(&self.tenant)?;
        let needs_reason = matches!(self.kind, EventType::ErasureRequested | EventType::HoldSet);
        if needs_reason && self.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
            return Err(format!("{} needs a \"reason\"", self.kind.as_str()));
        }
        match (self.kind, self.effective) {
            (EventType::ContractEnded, None) => {
                return Err("contract_ended needs \"effective\": the contract's last day, like \"2026-10-31\"".into());
            }
            (EventType::ContractEnded, Some(_)) | (_, None) => {}
            (other, Some(_)) => {
                return Err(format!("{} takes no \"effective\"", other.as_str()));
            }
        }
        if self.include_legal && self.kind != EventType::ErasureRequested {
            return Err("\"include_legal\" belongs only to erasure_requested".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub reason: String,
    pub since: Timestamp,
    pub event: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// Snapshots taken up to this moment are erased.
    pub at: Timestamp,
    pub reason: String,
    pub include_legal: bool,
    pub event: String,
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
    pub hold: Option<Hold>,
    pub erasures: Vec<Erasure>,
}

/// Folds events, in the order of their time (then id), into each tenant's
/// state: a reinstatement cancels the contract's end, a release the hold;
/// erasures accumulate (each covers the snapshots taken before it).
pub fn fold(events: &[StoredEvent]) -> BTreeMap<String, TenantState> {
    let mut sorted: Vec<&StoredEvent> = events.iter().collect();
    sorted.sort_by(|a, b| (a.time(), &a.event.id).cmp(&(b.time(), &b.event.id)));
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
            EventType::ContractReinstated => state.contract_end = None,
            EventType::HoldSet => {
                state.hold = Some(Hold {
                    reason: e.reason.clone().unwrap_or_default(),
                    since: s.time(),
                    event: e.id.clone(),
                });
            }
            EventType::HoldReleased => state.hold = None,
            EventType::ErasureRequested => state.erasures.push(Erasure {
                at: s.time(),
                reason: e.reason.clone().unwrap_or_default(),
                include_legal: e.include_legal,
                event: e.id.clone(),
            }),
        }
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

    #[test]
    fn the_design_example_parses() {
        let e = Event::parse(
            br#"{"id": "crm-2026-000123", "type": "contract_ended", "tenant": "acme",
 "effective": "2026-10-31", "ref": "CRM 4711", "time": "2026-10-02T09:14:00Z"}"#,
        )
        .unwrap();
        assert_eq!(e.kind, EventType::ContractEnded);
        assert_eq!(e.effective, Some(jiff::civil::date(2026, 10, 31)));
        assert_eq!(e.reference.as_deref(), Some("CRM 4711"));
    }

    #[test]
    fn bad_events_say_why() {
        for (json, needle) in [
            (
                r#"{"id":"a","type":"contract_ended","tenant":"acme"}"#,
                "effective",
            ),
            (r#"{"id":"a","type":"hold_set","tenant":"acme"}"#, "reason"),
            (
                r#"{"id":"a/b","type":"hold_released","tenant":"acme"}"#,
                "id",
            ),
            (
                r#"{"id":"a","type":"hold_released","tenant":"../x"}"#,
                "tenant",
            ),
            (
                r#"{"id":"a","type":"hold_released","tenant":"acme","efective":"x"}"#,
                "efective",
            ),
            (
                r#"{"id":"a","type":"contract_paused","tenant":"acme"}"#,
                "contract_paused",
            ),
            (
                r#"{"id":"a","type":"hold_released","tenant":"acme","effective":"2026-01-01"}"#,
                "takes no",
            ),
            ("{not json", "not a lifecycle event"),
        ] {
            let e = Event::parse(json.as_bytes()).unwrap_err();
            assert!(e.contains(needle), "{json}: {e}");
        }
    }

    proptest::proptest! {
        /// Inbox files come from other systems: any bytes are an event or a
        /// reason to reject, never a panic.
        #[test]
        fn inbox_decoder_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = Event::parse(&bytes);
        }
    }

    #[test]
    fn fold_follows_time_order() {
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
        assert_eq!(states["beta"].hold.as_ref().unwrap().reason, "court order");
        let erasure = &states["beta"].erasures[0];
        assert_eq!(
            erasure.at,
            "2026-11-01T00:00:00Z".parse().unwrap(),
            "received time"
        );
    }
}
