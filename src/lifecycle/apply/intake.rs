//! Taking in events, by the command line and by the inbox: each checked,
//! recorded on every target and audited.

use jiff::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

use super::Lifecycle;
use crate::error::{Error, Result};
use crate::lifecycle::events::{Event, EventType, Hold, StoredEvent, fold};
use crate::lifecycle::journal::{self, InboxItem, Recorded};

impl Lifecycle<'_> {
    /// Accepts one event: records it in the repository and audits it. A
    /// claimed time in the future is refused; a release names the hold it
    /// lifts (the tenant's only hold when it names none), and a release of
    /// a hold not in force is refused, before anything is written.
    pub fn accept(&self, event: Event, via: &str, now: Timestamp) -> Result<Recorded> {
        self.accept_event(event, via, now).map(|(r, _)| r)
    }

    /// `accept`, returning the event as recorded (a release with its hold).
    pub fn accept_event(
        &self,
        mut event: Event,
        via: &str,
        now: Timestamp,
    ) -> Result<(Recorded, Event)> {
        event.check().map_err(Error::Usage)?;
        event.check_time(now).map_err(Error::Usage)?;
        if event.kind == EventType::HoldReleased {
            let existing = journal::load(self.primary())?;
            // The same inbox file again: its hold was filled in when it was
            // first taken, so compare with that.
            let same = |s: &StoredEvent| {
                s.event
                    == Event {
                        hold: event.hold.clone().or_else(|| s.event.hold.clone()),
                        ..event.clone()
                    }
            };
            if let Some(s) = existing.iter().find(|s| same(s)) {
                return Ok((Recorded::Duplicate, s.event.clone()));
            }
            let states = fold(&existing);
            let holds = states
                .get(&event.tenant)
                .map(|s| s.holds.clone())
                .unwrap_or_default();
            event.hold = Some(resolve_hold(&event.tenant, event.hold.take(), &holds)?);
        }
        let stored = StoredEvent {
            event,
            received: now,
            host: self.host.clone(),
            via: via.to_string(),
        };
        let recorded = journal::record_event(&self.repo_refs(), &stored)?;
        if recorded == Recorded::New {
            self.audit_accepted(&stored.event)?;
        }
        Ok((recorded, stored.event))
    }

    /// Takes in every event waiting in `<state_dir>/inbox/`.
    pub fn process_inbox(&self, now: Timestamp) -> Result<Vec<InboxItem>> {
        let inbox = journal::inbox_dir(&self.state_dir);
        let files = journal::pending(&inbox)?;
        let mut out = Vec::new();
        if files.is_empty() {
            return Ok(out);
        }
        // An erased tenant has no folder left but is known by its events.
        let mut tenants: BTreeSet<String> = self.primary().tenant_names()?.into_iter().collect();
        if let Ok(events) = journal::load_target(self.primary()) {
            tenants.extend(events.events.into_iter().map(|e| e.event.tenant));
        }
        for file in files {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let mut item = InboxItem {
                file: name,
                outcome: String::new(),
                event: None,
                tenant: None,
                reason: None,
            };
            match journal::read_inbox_file(&file, &tenants) {
                Err(why) => {
                    journal::reject(&file, &why)?;
                    item.outcome = "rejected".into();
                    item.reason = Some(why);
                }
                Ok(event) => {
                    item.event = Some(event.id.clone());
                    item.tenant = Some(event.tenant.clone());
                    match self.accept(event, "inbox", now) {
                        Ok(r) => {
                            journal::move_to(&file, "processed")?;
                            item.outcome = match r {
                                Recorded::New => "accepted",
                                Recorded::Duplicate => "duplicate",
                            }
                            .into();
                        }
                        Err(e @ (Error::Usage(_) | Error::Refused(_))) => {
                            let why = e.to_string();
                            journal::reject(&file, &why)?;
                            item.outcome = "rejected".into();
                            item.reason = Some(why);
                        }
                        // The store is unreachable: the file waits for the next run.
                        Err(e) => {
                            item.outcome = "failed".into();
                            item.reason = Some(e.to_string());
                        }
                    }
                }
            }
            out.push(item);
        }
        Ok(out)
    }
}

/// The hold a release lifts: the one it names, which must be in force, or
/// the tenant's only hold.
fn resolve_hold(
    tenant: &str,
    named: Option<String>,
    holds: &BTreeMap<String, Hold>,
) -> Result<String> {
    let listed = || {
        holds
            .values()
            .map(|h| format!("{} ({})", h.event, h.reason))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match named {
        Some(id) if holds.contains_key(&id) => Ok(id),
        Some(id) if holds.is_empty() => Err(Error::Refused(format!(
            "tenant {tenant} has no legal hold, so hold {id} cannot be released; nothing recorded"
        ))),
        Some(id) => Err(Error::Refused(format!(
            "tenant {tenant} has no hold {id}; its holds: {}; nothing recorded",
            listed()
        ))),
        None => match holds.len() {
            0 => Err(Error::Refused(format!(
                "tenant {tenant} has no legal hold to release; nothing recorded"
            ))),
            1 => Ok(holds.keys().next().expect("one").clone()),
            n => Err(Error::Refused(format!(
                "tenant {tenant} has {n} legal holds: {}; name the one to release (`gallra hold release {tenant} --hold ID`, or \"hold\" in the event); nothing recorded",
                listed()
            ))),
        },
    }
}
