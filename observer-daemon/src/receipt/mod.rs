//! Observation receipts: the evidence crate (observer-receipts) re-exported
//! under its old path, plus the two parts that belong to the daemon: which
//! enriched events become receipts ([`select`], folding file opens in
//! [`open_fold`] and PATH searches in [`path_search`]) and the live feed of
//! committed ranges for `observerctl tail -f` ([`feed`]).
pub use observer_receipts::*;

pub mod feed;
pub mod open_fold;
pub mod path_search;
pub mod select;
