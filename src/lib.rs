//! Egret: one security gateway in front of every departmental website of a city.
//!
//! The binary (`src/main.rs`) is a thin shell around [`cli::main`]; tests and benches drive the
//! library directly. docs/architecture.md maps the request pipeline onto these modules.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod cli;
pub mod config;
pub mod crs_cli;
pub mod deface;
pub mod deface_cli;
pub mod demo;
pub mod error_pages;
pub mod metrics;
pub mod observe;
pub mod protect;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub mod request_path;
pub mod respond;
pub mod routing;
pub mod rules_cli;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod tls;
pub mod upstream;
pub mod waf;

/// Unit tests that allocate a lot (loading CRS) and the one that checks the process's resident
/// memory take this lock, so that the memory check does not count the others' allocations.
#[cfg(test)]
pub(crate) fn memory_heavy_test() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
