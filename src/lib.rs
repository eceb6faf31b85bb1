//! oql-sync: turns open-source usage signals into Open Source Qualified Lead stages and
//! scores. See `README.md` for the tour and `docs/` for the design.

pub mod activity;
pub mod scoring;
