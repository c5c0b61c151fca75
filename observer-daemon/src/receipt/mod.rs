//! Observation receipts: the evidence crate (observer-receipts) re-exported
//! under its old path, plus the two parts that belong to the daemon: which
//! enriched events become receipts ([`select`], folding PATH searches in
//! [`path_search`]) and the live feed of
//! committed ranges for `observerctl tail -f` ([`feed`]).
pub use observer_receipts::*;

pub mod feed;
pub mod path_search;
pub mod select;
