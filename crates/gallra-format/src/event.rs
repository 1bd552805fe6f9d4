//! `lifecycle/events/<id>`: an accepted lifecycle event (docs/FORMAT.md
//! section 17.9): contract ended or reinstated, erasure requested, legal
//! hold set or released.
//!
//! A record (`format::record`, envelope kind 9) whose body is a
//! [`StoredEvent`] as JSON, bound to its path: an event moved to another
//! name, or one whose name is not its id, does not open. The inbox file an
//! event arrives in is the bare [`Event`], parsed by [`Event::parse`].
//! Folding events into a tenant's state is the lifecycle's
//! (`lifecycle::events`); reading and writing them in a repository is
//! `lifecycle::journal`'s; this module is what ship needs to copy them.

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::{Kind, record};
use crate::crypto::SecretKey;
use crate::error::{Error, Result};

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
    /// For `hold_released`: the id of the `hold_set` event whose hold it
    /// lifts. Holds are independent; events written before holds had ids
    /// lack it and lift every hold received before them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
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
    /// Where the event stands in the order of events: when gallra received
    /// it (stamped by the accepting agent inside the sealed object, so no
    /// author of an event can choose it), then its id. The `time` an event
    /// claims is kept as information only: an author who could date an
    /// event could otherwise place it before or after any other.
    pub fn order(&self) -> (Timestamp, &str) {
        (self.received, &self.event.id)
    }
}

/// How far ahead of this host's clock an event's claimed `time` (or a
/// backup's creation time) may be: clocks of a fleet drift a little.
pub const CLOCK_TOLERANCE: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

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
    pub fn parse(json: &[u8]) -> std::result::Result<Event, String> {
        let event: Event =
            serde_json::from_slice(json).map_err(|e| format!("not a lifecycle event: {e}"))?;
        event.check()?;
        Ok(event)
    }

    /// Checks the fields each type needs.
    pub fn check(&self) -> std::result::Result<(), String> {
        if !valid_id(&self.id) {
            return Err(format!(
                "id {:?}: use 1-128 letters, digits, '.', '_', ':' or '-'",
                self.id
            ));
        }
        crate::tenant_name::check(&self.tenant)?;
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
        if let Some(hold) = &self.hold {
            if self.kind != EventType::HoldReleased {
                return Err("\"hold\" belongs only to hold_released".into());
            }
            if !valid_id(hold) {
                return Err(format!("hold {hold:?} is not an event id"));
            }
        }
        Ok(())
    }

    /// Refuses a claimed time ahead of `now` (beyond the clock tolerance):
    /// such an event says it happens after events not yet received.
    pub fn check_time(&self, now: Timestamp) -> std::result::Result<(), String> {
        match self.time {
            Some(t) if t > now + CLOCK_TOLERANCE => Err(format!(
                "event {}: its time {t} is in the future (now {now}); an event is ordered by when gallra receives it, so give the time it happened, or none",
                self.id
            )),
            _ => Ok(()),
        }
    }
}

/// Seals an event for `path` under the repository's record key.
pub fn seal(stored: &StoredEvent, master: &SecretKey, repo_id: &[u8; 16], path: &str) -> Vec<u8> {
    record::seal(stored, Kind::Event, master, repo_id, path)
}

/// Opens the bytes of an event object found at `path`: sealed with the
/// repository key, bound to that name, and holding the event `id` that the
/// name gives (`layout::event_id_of_path`). What the lifecycle's reader
/// accepts, and so what ship copies.
pub fn open(
    bytes: &[u8],
    master: &SecretKey,
    repo_id: &[u8; 16],
    path: &str,
    id: &str,
) -> Result<StoredEvent> {
    let stored: StoredEvent = record::open(bytes, Kind::Event, master, repo_id, path)?;
    if stored.event.id != id {
        // Moved from another name: not the event this name would be.
        return Err(Error::corrupt(
            path,
            format!("it holds event {:?}, not {id:?}", stored.event.id),
        ));
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
