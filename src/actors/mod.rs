//! Actors: one file per actor, each holding the actor, its messages and its handlers over plain
//! logic that unit tests call directly.

pub mod host;
pub mod listener;
pub mod proposal;
pub mod remote;
pub mod voter_power;
