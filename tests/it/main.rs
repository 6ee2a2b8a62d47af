//! Integration tests: one binary, one module per topic.

mod golden;
mod poll;
mod support;
