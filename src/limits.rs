//! The most gallra reads whole of each kind of object or file. Every one of
//! these is small by construction; one that is not was damaged or planted
//! (a 200 MiB lock object, a 64 MiB inbox file) and is refused, naming the
//! object and the limit, before it fills memory. Packs are read by range
//! and index objects by the size the listing gives, so they are not here.

use crate::text::human_bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLimit {
    /// A JSON event file in `<state_dir>/inbox/`.
    InboxFile,
    /// `tenants/<t>/locks/*`: a few hundred bytes of JSON.
    Lock,
    /// `lifecycle/events/*`: one sealed event.
    Event,
    /// `tenants/<t>/snapshots/*`: paths, tags and warnings of one snapshot.
    Snapshot,
    /// `keys/*`: one wrapped master key.
    KeySlot,
    /// `tenants/<t>/key`: one wrapped tenant key.
    TenantKey,
    /// `config`: the repository's parameters.
    Config,
    /// `audit/<host>/*`: one sealed audit record.
    AuditRecord,
    /// `<state_dir>/agent-state.json`: a line per tenant and source.
    AgentState,
    /// `tenants/<t>/holdings`: some 70 bytes per pack of the tenant.
    Holdings,
    /// `lifecycle/rules`: some 150 bytes per rule of a fleet server.
    Rules,
}

impl ReadLimit {
    pub const fn bytes(self) -> u64 {
        match self {
            ReadLimit::InboxFile | ReadLimit::Lock => 64 << 10,
            ReadLimit::KeySlot | ReadLimit::TenantKey | ReadLimit::Config => 64 << 10,
            ReadLimit::Event => 256 << 10,
            ReadLimit::AuditRecord => 4 << 20,
            ReadLimit::Snapshot | ReadLimit::Rules => 16 << 20,
            ReadLimit::AgentState | ReadLimit::Holdings => 64 << 20,
        }
    }

    pub const fn what(self) -> &'static str {
        match self {
            ReadLimit::InboxFile => "an inbox event file",
            ReadLimit::Lock => "a lock object",
            ReadLimit::Event => "an event object",
            ReadLimit::Snapshot => "a snapshot object",
            ReadLimit::KeySlot => "a key slot",
            ReadLimit::TenantKey => "a tenant key object",
            ReadLimit::Config => "a repository config object",
            ReadLimit::AuditRecord => "an audit record",
            ReadLimit::AgentState => "the agent state file",
            ReadLimit::Holdings => "a holdings object",
            ReadLimit::Rules => "a rules object",
        }
    }

    /// "larger than 64.0 KiB, the most a lock object may hold; not read".
    pub fn refusal(self) -> String {
        format!(
            "larger than {}, the most {} may hold; not read",
            human_bytes(self.bytes()),
            self.what()
        )
    }
}
