//! Audit records the lifecycle writes beside its actions.

use std::collections::BTreeSet;

use super::{Holdings, Lifecycle};
use crate::audit::{Action, Entry, Survives, TargetCounts};
use crate::error::Result;
use crate::lifecycle::events::{Event, EventType};
use crate::lifecycle::plan::PlanEntry;

impl Lifecycle<'_> {
    pub(super) fn audit_append(&self, entry: Entry) -> Result<()> {
        let (_, failed) = self.audit.append(entry, &self.repo_refs())?;
        for (target, e) in failed {
            tracing::warn!("audit record not yet on target {target}: {e}; the next ship copies it");
        }
        Ok(())
    }

    /// The record of an event newly accepted.
    pub(super) fn audit_accepted(&self, e: &Event) -> Result<()> {
        let mut entry = Entry::new(
            match e.kind {
                EventType::ContractEnded => Action::ContractEnded,
                EventType::ContractReinstated => Action::ContractReinstated,
                EventType::ErasureRequested => Action::ErasureRequested,
                EventType::HoldSet => Action::HoldSet,
                EventType::HoldReleased => Action::HoldReleased,
            },
            Some(&e.tenant),
        );
        entry.event = Some(e.id.clone());
        entry.reason = e.reason.clone();
        let mut detail = Vec::new();
        if let Some(d) = e.effective {
            detail.push(format!("last day of contract {d}"));
        }
        if let Some(r) = &e.reference {
            detail.push(format!("ref {r}"));
        }
        if e.include_legal {
            detail.push("including snapshots kept under a legal obligation".into());
        }
        if let Some(h) = &e.hold {
            detail.push(format!("releases hold {h}"));
        }
        entry.detail = (!detail.is_empty()).then(|| detail.join("; "));
        self.audit_append(entry)
    }

    /// Says once per erasure which snapshots it spared, and why.
    pub(super) fn audit_legal_kept(&self, holdings: &Holdings, kept: &[PlanEntry]) -> Result<()> {
        if kept.is_empty() {
            return Ok(());
        }
        let recorded: BTreeSet<String> = self
            .audit
            .records()?
            .into_iter()
            .filter(|r| r.action == Action::LegalKept)
            .filter_map(|r| r.event)
            .collect();
        for (tenant, state) in &holdings.states {
            let mine: Vec<&PlanEntry> = kept.iter().filter(|e| &e.tenant == tenant).collect();
            if mine.is_empty() {
                continue;
            }
            for erasure in state.erasures.iter().filter(|e| !e.include_legal) {
                if recorded.contains(&erasure.event) {
                    continue;
                }
                let mut entry = Entry::new(Action::LegalKept, Some(tenant));
                let ids: BTreeSet<String> = mine.iter().map(|e| e.snapshot.clone()).collect();
                entry.snapshots = ids.into_iter().collect();
                entry.rule = Some(mine[0].rule.clone());
                entry.legal_basis = Some(mine[0].legal_basis.clone());
                entry.event = Some(erasure.event.clone());
                let last = mine.iter().map(|e| e.expires).max().expect("non-empty");
                entry.detail = Some(format!(
                    "kept despite the erasure: a legal obligation; the last goes at {last}, and the tenant key with it"
                ));
                self.audit_append(entry)?;
            }
        }
        Ok(())
    }
}

impl Lifecycle<'_> {
    /// The record of a completed key rotation: the epoch now in use, what
    /// it retired in the key service, and whose copies that made unreadable.
    pub(super) fn audit_rotation(
        &self,
        r: &crate::lifecycle::rotate::RotationReport,
    ) -> Result<()> {
        let mut entry = Entry::new(Action::KeyRotated, None);
        let retired: Vec<String> = r
            .retired
            .iter()
            .map(|x| {
                format!(
                    "epoch {} (service key {}, deletion scheduled{})",
                    x.epoch,
                    x.service_key,
                    x.deleted_by
                        .map(|t| format!(", gone by {t}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        let shredded: Vec<&str> = r.shredded.iter().map(String::as_str).collect();
        let rewrapped: usize = r.rewrapped.values().map(Vec::len).sum();
        let mut detail = format!(
            "key epoch {} wraps every kept tenant key ({rewrapped} rewrapped); retired: {}",
            r.epoch,
            if retired.is_empty() {
                "none".to_string()
            } else {
                retired.join("; ")
            }
        );
        if !shredded.is_empty() {
            detail.push_str(&format!(
                "; surviving copies of the keys of {} wrapped by a key epoch open no more",
                shredded.join(", ")
            ));
        }
        if !r.shredded_once_master_wrapped.is_empty() {
            let v1: Vec<&str> = r
                .shredded_once_master_wrapped
                .iter()
                .map(String::as_str)
                .collect();
            detail.push_str(&format!(
                "; copies of the keys of {} made before the repository had key epochs were wrapped by the master key and still open with the key file until those copies are gone",
                v1.join(", ")
            ));
        }
        if !r.from_master_key.is_empty() {
            let v1: Vec<&str> = r.from_master_key.iter().map(String::as_str).collect();
            detail.push_str(&format!(
                "; copies made before this rotation of the keys of {} were wrapped by the master key and still open with the key file until those copies are gone",
                v1.join(", ")
            ));
        }
        entry.detail = Some(detail);
        // One record per tenant it shredded, so that each tenant's export
        // shows when its surviving copies stopped opening.
        if r.shredded.is_empty() {
            return self.audit_append(entry);
        }
        for tenant in &r.shredded {
            let mut e = entry.clone();
            e.tenant = Some(tenant.clone());
            self.audit_append(e)?;
        }
        Ok(())
    }
}

/// The lines of `survives` for the targets a record counts, in its order:
/// a deletion leaves old versions only where it deleted.
pub(super) fn survives_on(survives: &[Survives], targets: &[TargetCounts]) -> Vec<Survives> {
    targets
        .iter()
        .filter_map(|c| survives.iter().find(|s| s.target == c.target))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_keeps_the_lines_of_the_targets_it_deleted_on() {
        let line = |t: &str| Survives {
            target: t.into(),
            old_versions: "kept".into(),
            until: None,
            words: format!("target {t}: ..."),
        };
        let counted = |t: &str| TargetCounts {
            target: t.into(),
            objects: 1,
            bytes: 1,
        };
        let all = [line("local"), line("offsite"), line("cold")];
        let got = survives_on(&all, &[counted("offsite"), counted("local")]);
        let names: Vec<&str> = got.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(names, ["offsite", "local"]);
        assert!(survives_on(&all, &[]).is_empty());
    }
}
