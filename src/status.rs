//! `gallra status`: per tenant and source, what the targets hold, what the
//! agent did last and does next, and what the lifecycle owes. The agent's
//! metrics are rendered from the same [`Status`], so the two agree.

use jiff::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

use crate::agent_state::{AgentState, JobRun, ShipState, Totals};
use crate::audit::AuditLog;
use crate::config::Config;
use crate::error::Result;
use crate::lifecycle::plan;

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub host: String,
    pub time: String,
    pub agent: AgentSummary,
    pub targets: Vec<TargetStatus>,
    pub tenants: Vec<TenantStatus>,
    /// Snapshot copies past their expiry that still exist (not held, not
    /// kept under a legal obligation): the lifecycle owes these deletions.
    /// 0 when the primary cannot be read (its target row says why).
    pub overdue_deletions: u64,
    pub lifecycle: Option<JobRun>,
    pub drill: Option<JobRun>,
    pub ship: BTreeMap<String, ShipState>,
    pub totals: Totals,
    pub errors: BTreeMap<String, u64>,
    /// Objects (and targets) that could not be read, each naming its
    /// tenant when it has one; every other tenant is still summarised.
    #[serde(serialize_with = "crate::failure::json::lifecycle")]
    pub problems: Vec<crate::failure::Failure>,
    /// The sequence of this host's last audit record, from the local head
    /// (`<state_dir>/audit.head`); `None` before the first record. It only
    /// ever grows: a drop means records were removed from the trail's end.
    pub audit_head_sequence: Option<u64>,
    /// With `[key_service]`: the epoch that wraps tenant keys, and whether
    /// a rotation is due (erasures wait for it to hold against copies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_epochs: Option<KeyEpochs>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyEpochs {
    /// The newest epoch on any target (8 hex digits), if any.
    pub current: Option<String>,
    /// Epochs on any target: more than one while a rotation is unfinished.
    pub count: usize,
    pub rotation: crate::lifecycle::rotate::Due,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentSummary {
    pub running: bool,
    pub pid: Option<u32>,
    pub started: Option<String>,
    pub next_lifecycle: Option<String>,
    pub next_drill: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetStatus {
    pub target: String,
    pub url: String,
    pub primary: bool,
    pub ok: bool,
    pub error: Option<String>,
    pub initialised: bool,
    pub snapshots: u64,
    pub objects: u64,
    pub bytes: u64,
    /// Objects (and their bytes) the primary holds and this target lacks:
    /// the ship backlog.
    pub missing: u64,
    pub missing_bytes: u64,
    /// Key slots the primary has and this target lacks (counted in
    /// `missing`): a key added that does not yet open this target.
    pub key_slots_lacking: Vec<String>,
    /// Key slots removed on the primary that this target still has (also
    /// counted in `missing`): a revoked key that still opens it.
    pub key_slots_extra: Vec<String>,
    /// Whether the store keeps old versions of what gallra deletes: the
    /// recorded probe, or one made now for a target that opened. `None`:
    /// never probed, and the target could not be read.
    pub old_versions: Option<crate::survival::Versioning>,
    /// What the target states its bucket rule does with old versions.
    pub noncurrent_expiry: Option<String>,
    /// What protects the target against this server (the recorded probe).
    pub protection: Option<crate::protection::Protection>,
    /// Who deletes there: "here" or "lifecycle-host".
    pub deletions: String,
    /// Snapshot copies on this target past their expiry (not held): on a
    /// target whose lifecycle host deletes, how far that host lags.
    pub overdue_deletions: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantStatus {
    pub tenant: String,
    pub contract_end: Option<String>,
    /// Why deletions are suspended (every hold's reason), if they are.
    pub hold: Option<String>,
    /// Each legal hold in force, by the id of its `hold_set` event.
    pub holds: Vec<HoldStatus>,
    pub erasure_requested: bool,
    pub sources: Vec<SourceStatus>,
    /// Snapshots and bytes on each target.
    pub targets: BTreeMap<String, TargetHolding>,
    pub oldest_snapshot: Option<String>,
    pub oldest_age_seconds: Option<i64>,
    /// When the oldest snapshot copy goes (on any target).
    pub oldest_expires: Option<String>,
    pub ship_backlog_objects: u64,
    pub ship_backlog_bytes: u64,
    pub last_drill: Option<LastDrill>,
    /// Snapshot copies due for deletion now.
    pub due_now: u64,
    /// The next deletion the lifecycle will make.
    pub next_deletion: Option<NextDeletion>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HoldStatus {
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceStatus {
    pub source: String,
    pub category: String,
    /// Whether the agent still backs this up: the source is in the config
    /// for this tenant, and the tenant's contract and erasures allow it.
    /// Only such sources have per-source metrics, so that the freshness
    /// alert never fires for what is rightly no longer backed up.
    pub backed_up: bool,
    pub last_backup: Option<String>,
    pub age_seconds: Option<i64>,
    pub next_run: Option<String>,
    pub last_duration_seconds: Option<f64>,
    pub last_error: Option<String>,
    pub snapshots: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TargetHolding {
    pub snapshots: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastDrill {
    pub time: String,
    pub ok: bool,
    pub seconds: Option<f64>,
    pub target: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NextDeletion {
    pub time: String,
    pub copies: u64,
    pub reason: String,
}

/// Reads every target, the lifecycle events and the audit trail, and the
/// agent's state file. Touches nothing.
pub fn collect(config: &Config, now: Timestamp) -> Result<Status> {
    let state = AgentState::load(&config.agent.state_dir)?;
    let opened = match config.open_repositories() {
        Ok(o) => o,
        Err(e) => return Ok(primary_unreadable(config, state, now, &e)),
    };
    let audit = AuditLog::open(&config.agent.state_dir, &config.agent.host)?;
    let lc = config.lifecycle(&opened, &audit);
    let (due, world) = lc.plan(now)?;

    let mut tenants: BTreeMap<String, TenantStatus> = BTreeMap::new();
    fn tenant<'a>(
        tenants: &'a mut BTreeMap<String, TenantStatus>,
        name: &str,
    ) -> &'a mut TenantStatus {
        tenants
            .entry(name.to_string())
            .or_insert_with(|| TenantStatus {
                tenant: name.to_string(),
                ..Default::default()
            })
    }
    fn source<'a>(t: &'a mut TenantStatus, name: &str, category: &str) -> &'a mut SourceStatus {
        match t.sources.iter().position(|s| s.source == name) {
            Some(i) => &mut t.sources[i],
            None => {
                t.sources.push(SourceStatus {
                    source: name.to_string(),
                    category: category.to_string(),
                    ..Default::default()
                });
                t.sources.last_mut().expect("pushed")
            }
        }
    }

    // What the configuration expects: every (tenant, source) it would back up.
    let (jobs, _) = crate::backup::plan_jobs(config, &[]);
    for j in &jobs {
        source(
            tenant(&mut tenants, &j.tenant),
            &j.source.name,
            &j.source.category,
        );
    }

    // What the targets hold.
    let mut newest: BTreeMap<(String, String), Timestamp> = BTreeMap::new();
    let mut oldest: BTreeMap<String, &plan::SnapshotFacts> = BTreeMap::new();
    for f in &world.snapshots {
        let t = tenant(&mut tenants, &f.tenant);
        let s = source(t, &f.source, &f.category);
        *s.snapshots.entry(f.target.clone()).or_default() += 1;
        let n = newest
            .entry((f.tenant.clone(), f.source.clone()))
            .or_insert(f.created);
        *n = (*n).max(f.created);
        let o = oldest.entry(f.tenant.clone()).or_insert(f);
        if f.created < o.created {
            *o = f;
        }
    }
    for ((t, s), at) in &newest {
        let src = source(tenant(&mut tenants, t), s, "");
        src.last_backup = Some(at.to_string());
        src.age_seconds = Some(now.as_second() - at.as_second());
    }
    for (t, f) in &oldest {
        let ts = tenant(&mut tenants, t);
        ts.oldest_snapshot = Some(f.created.to_string());
        ts.oldest_age_seconds = Some(now.as_second() - f.created.as_second());
        let e = plan::expiry(&config.policy, world.states.get(t), f);
        ts.oldest_expires = (e.at != Timestamp::MAX).then(|| e.at.to_string());
    }
    for (name, st) in &world.states {
        let t = tenant(&mut tenants, name);
        t.contract_end = st.contract_end.as_ref().map(|c| c.last_day.to_string());
        t.hold = st.held_because();
        t.holds = st
            .holds
            .iter()
            .map(|(id, h)| HoldStatus {
                id: id.clone(),
                reason: h.reason.clone(),
            })
            .collect();
        t.erasure_requested = !st.erasures.is_empty();
    }
    for e in &due.due {
        tenant(&mut tenants, &e.tenant).due_now += 1;
    }
    for u in &due.upcoming {
        let t = tenant(&mut tenants, &u.tenant);
        if t.next_deletion
            .as_ref()
            .is_none_or(|n| u.expires.to_string() < n.time)
        {
            t.next_deletion = Some(NextDeletion {
                time: u.expires.to_string(),
                copies: u.copies as u64,
                reason: u.reason.as_str().to_string(),
            });
        }
    }

    // Objects and bytes per target, and what each secondary lacks.
    let mut targets = Vec::new();
    let primary = &opened.repos[0].store;
    for t in &config.targets {
        let repo = opened.repos.iter().find(|r| r.store.name() == t.name);
        let state_dir = &config.agent.state_dir;
        let mut row = TargetStatus {
            target: t.name.clone(),
            url: t.url.clone(),
            primary: t.primary,
            // A target that did not open is not probed: the probe would
            // only wait out its timeouts again.
            old_versions: match repo {
                Some(_) => Some(crate::survival::known(state_dir, t)),
                None => crate::survival::recorded(state_dir, t),
            },
            noncurrent_expiry: t.noncurrent_expiry.map(|e| e.to_string()),
            ..Default::default()
        };
        row.protection = Some(crate::protection::recorded(state_dir, t));
        row.deletions = t.deletions.as_word().to_string();
        let read = match repo {
            Some(r) => crate::ship::status(primary, &r.store).and_then(|per| {
                if !t.primary {
                    let d = crate::repo::keys::slot_difference(primary, &r.store)?;
                    row.missing += (d.lacking.len() + d.extra.len()) as u64;
                    row.missing_bytes += d.lacking_bytes;
                    row.key_slots_lacking = d.lacking;
                    row.key_slots_extra = d.extra;
                }
                Ok(per)
            }),
            None => Err(crate::Error::Usage(
                opened
                    .failures
                    .iter()
                    .find(|f| f.target.as_ref() == Some(&t.name))
                    .map_or("not opened".into(), |f| f.error.clone()),
            )),
        };
        match read {
            Ok(per) => {
                row.ok = true;
                // The repository opened, so its config object is there.
                row.initialised = true;
                for p in per {
                    row.snapshots += p.snapshots as u64;
                    row.objects += p.objects as u64;
                    row.bytes += p.bytes;
                    row.missing += p.missing as u64;
                    row.missing_bytes += p.missing_bytes;
                    if p.snapshots + p.objects + p.missing == 0 {
                        continue;
                    }
                    let ts = tenant(&mut tenants, &p.tenant);
                    ts.targets.insert(
                        t.name.clone(),
                        TargetHolding {
                            snapshots: p.snapshots as u64,
                            bytes: p.bytes,
                        },
                    );
                    if !t.primary {
                        ts.ship_backlog_objects += p.missing as u64;
                        ts.ship_backlog_bytes += p.missing_bytes;
                    }
                }
            }
            Err(e) => {
                row.error = Some(e.to_string());
            }
        }
        targets.push(row);
    }

    for d in crate::drill::history(&audit.records()?, None) {
        if let Some(t) = tenants.get_mut(&d.tenant) {
            t.last_drill = Some(LastDrill {
                time: d.time.clone(),
                ok: d.ok,
                seconds: d.seconds,
                target: d.target.clone(),
                error: d.error.clone(),
            });
        }
    }

    // Which sources the agent still backs up.
    for t in tenants.values_mut() {
        let stopped = crate::lifecycle::gate::refusal(
            &config.policy,
            &t.tenant,
            world.states.get(&t.tenant),
            false,
            now,
            || Ok(true),
        )
        .is_some();
        for s in &mut t.sources {
            s.backed_up = !stopped
                && config.sources.iter().any(|c| {
                    c.name == s.source && c.tenant.as_deref().is_none_or(|ct| ct == t.tenant)
                });
        }
    }

    // What the agent did and does next. A run of a source the config no
    // longer has (for this tenant) is history, not a state to report.
    for run in state.backups.values() {
        if let Some(t) = tenants.get_mut(&run.tenant)
            && let Some(s) = t
                .sources
                .iter_mut()
                .find(|s| s.source == run.source && s.backed_up)
        {
            s.last_duration_seconds = Some(run.last_duration_seconds);
            s.last_error = run.last_error.clone();
        }
    }
    let running = state.agent_running();
    for t in tenants.values_mut() {
        for s in &mut t.sources {
            if running && s.backed_up {
                s.next_run = state.next.get(&format!("backup:{}", s.source)).cloned();
            }
            if s.category.is_empty()
                && let Some(c) = config.sources.iter().find(|c| c.name == s.source)
            {
                s.category = c.category.clone();
            }
        }
        t.sources.sort_by(|a, b| a.source.cmp(&b.source));
    }

    for t in &mut targets {
        t.overdue_deletions = due.due.iter().filter(|e| e.target == t.target).count() as u64;
    }
    let mut status = assemble(
        config,
        state,
        now,
        targets,
        tenants.into_values().collect(),
        due.due.len() as u64,
    );
    status.problems = world.failures;
    if config.key.service.is_some() {
        use crate::lifecycle::rotate;
        let epochs = rotate::all_epochs(&opened.repos)?;
        status.key_epochs = Some(KeyEpochs {
            current: epochs.last().map(|e| e.short()),
            count: epochs.len(),
            rotation: rotate::due_with(&opened.repos, &epochs, now)?,
        });
    }
    Ok(status)
}

/// What can be said when the primary cannot be opened: the error, and
/// what the agent remembers. Nothing else is read: every figure depends on
/// the primary.
fn primary_unreadable(
    config: &Config,
    state: AgentState,
    now: Timestamp,
    e: &crate::Error,
) -> Status {
    let targets = config
        .targets
        .iter()
        .map(|t| TargetStatus {
            target: t.name.clone(),
            url: t.url.clone(),
            primary: t.primary,
            error: Some(if t.primary {
                e.to_string()
            } else {
                "not read: the primary could not be opened".into()
            }),
            old_versions: crate::survival::recorded(&config.agent.state_dir, t),
            noncurrent_expiry: t.noncurrent_expiry.map(|e| e.to_string()),
            protection: Some(crate::protection::recorded(&config.agent.state_dir, t)),
            ..Default::default()
        })
        .collect();
    assemble(config, state, now, targets, Vec::new(), 0)
}

fn assemble(
    config: &Config,
    state: AgentState,
    now: Timestamp,
    targets: Vec<TargetStatus>,
    tenants: Vec<TenantStatus>,
    overdue_deletions: u64,
) -> Status {
    let running = state.agent_running();
    let known: BTreeSet<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
    Status {
        host: config.agent.host.clone(),
        time: now.to_string(),
        agent: AgentSummary {
            running,
            pid: state.pid.filter(|_| running),
            started: state.started.clone().filter(|_| running),
            next_lifecycle: state.next.get("lifecycle").cloned().filter(|_| running),
            next_drill: state.next.get("drill").cloned().filter(|_| running),
        },
        targets,
        tenants,
        overdue_deletions,
        lifecycle: state.lifecycle.clone(),
        drill: state.drill.clone(),
        ship: state
            .ship
            .into_iter()
            .filter(|(t, _)| known.contains(t.as_str()))
            .collect(),
        totals: state.totals,
        errors: state.errors,
        problems: Vec::new(),
        audit_head_sequence: AuditLog::open(&config.agent.state_dir, &config.agent.host)
            .and_then(|log| log.head_sequence())
            .unwrap_or(None),
        key_epochs: None,
    }
}
