//! The `recipes` library: each paper recipe as a small module assembling the
//! vlrl crates, shared by the `recipes` binary and its integration tests.

pub mod generate;
pub mod policy;
