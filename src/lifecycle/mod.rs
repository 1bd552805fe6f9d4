//! Lifecycle: retention rules, events, the pure planner, and applying a
//! plan to every target (prune, erasure, key destruction).

pub mod apply;
pub mod events;
pub mod gate;
pub mod journal;
pub mod plan;
pub mod prune;
pub mod rotate;
pub mod rules;

pub use events::{Event, EventType, StoredEvent, TenantState};
pub use plan::{Plan, PlanEntry, Reason, SnapshotFacts};
pub use rules::Policy;
