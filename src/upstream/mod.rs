//! Everything about origins: pools and backend choice, backend health, active health checks.

pub mod checker;
pub mod health;
pub mod pool;

pub use health::{BackendHealth, HealthRegistry};
pub use pool::{Backend, HealthCheck, LbPolicy, Passive, Pool, UpstreamTls};
