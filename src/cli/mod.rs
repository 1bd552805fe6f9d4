//! Command implementations that live in the binary: argument shapes and
//! printing. The work is the library's.

pub mod agent;
pub mod drill;
pub mod lifecycle;
