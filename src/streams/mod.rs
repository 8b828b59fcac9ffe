//! Streams: the chain listener, log decoding and the pipeline that turns ranges of blocks into
//! atomic store batches.

pub mod achievements;
pub mod changes;
pub mod decode;
pub mod destination;
pub mod listener;
pub mod pipeline;
pub mod relay;
