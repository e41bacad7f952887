//! Ward's device agent. Today: collecting facts about the Linux machine it runs on ([`facts`]).
//!
//! **Invariant:** the agent never links the server or storage crates; it will talk to the server
//! through the wire types and client only.

pub mod enroll;
pub mod facts;
pub mod identity;
pub mod session;

pub use facts::{CollectOptions, Facts, FactsDiff, apply, collect, diff, flatten};
