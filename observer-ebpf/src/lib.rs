#![no_std]
//! Host-side stub so observer-daemon can list this crate as a build dependency;
//! the programs live in the `observer` binary target (src/main.rs).
