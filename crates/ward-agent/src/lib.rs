//! Ward's device agent: enrollment, facts about the Linux machine it runs on ([`facts`]), the live
//! channel ([`session`]) and remote actions ([`commands`], [`actions`]).
//!
//! **Invariant:** the agent never links the server or storage crates; it will talk to the server
//! through the wire types and client only.

pub mod actions;
pub mod commands;
pub mod config;
pub mod enroll;
pub mod facts;
pub mod identity;
pub mod journal;
pub mod session;
pub mod settings;

pub use facts::{CollectOptions, Facts, FactsDiff, apply, collect, diff, flatten};
