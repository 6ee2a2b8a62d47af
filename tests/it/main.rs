//! Integration tests: one binary, one module per topic.

mod browser;
mod cli;
mod fan_out;
mod faults;
mod golden;
mod hardening;
mod http;
mod import;
mod load;
mod oauth2;
mod packaging;
mod pages;
mod poll;
mod prometheus;
mod promises;
mod props;
mod push;
mod reach;
mod reload;
mod security;
mod support;
mod tls;
mod tooling;
