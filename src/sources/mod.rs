//! Where activities come from. Each source turns its input into [`crate::activity::Activity`]
//! values; the export files of `export` are the first.

pub mod bucket;
pub mod export;
pub mod folder;
pub mod github;
pub mod scarf;
pub mod slack;
