//! observer-tests holds integration tests only (tests/*.rs); cargo needs a
//! library or binary target in every package, so this one is empty.
