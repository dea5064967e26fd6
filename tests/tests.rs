//! Integration tests of OCG, one module per topic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent;
mod discord;
mod email;
mod embedding;
mod gateway;
mod irc;
mod matrix;
mod mcp;
mod postgres;
mod process;
mod schedule;
mod shared_store;
mod slack;
mod stack;
mod telegram;
mod tools;
mod tools_exec;
