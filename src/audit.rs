//! The audit trail. Being written by a helper; see the module's spec.
