//! Observation receipts: the evidence crate (observer-receipts) re-exported
//! under its old path, plus the two parts that belong to the daemon: which
//! enriched events become receipts ([`select`]) and the live feed of
//! committed ranges for `observerctl tail -f` ([`feed`]).
pub use observer_receipts::*;

pub mod feed;
pub mod select;
