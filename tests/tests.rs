//! Integration tests of OCG, one module per topic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent;
mod process;
mod stack;
