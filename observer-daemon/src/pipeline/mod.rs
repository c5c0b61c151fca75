//! The event pipeline between the kernel and the outputs: the reader
//! drains the ring buffer into the writer thread's inbox, the processor
//! enriches, names, evaluates policies and writes records and receipts,
//! and loss accounting turns every drop counter into `loss` records.
pub mod inbox;
pub mod lifecycle;
pub mod loss;
pub mod processor;
pub mod prune;
pub mod reader;
pub mod receipts;
