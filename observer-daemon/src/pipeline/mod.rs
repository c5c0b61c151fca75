//! The event pipeline between the kernel and the outputs.
pub mod inbox;
