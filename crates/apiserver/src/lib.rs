//! podvisor apiserver: the Kubernetes REST API over a revisioned [`podvisor_store::Store`].
//!
//! Entry point: [`ApiServer`] (see [`server`]; served by [`serve`]). Requests flow through
//! [`rest::dispatch`]: authentication ([`auth`]), path parsing into a [`request::Ctx`] and
//! [`request::Target`] and authorization, body decoding, then the generic object operations
//! in [`ops`] on [`storage`], with per-kind rules from [`strategy`] and the kinds themselves
//! in [`registry`]. The handlers (`rest`, [`watch`], [`logs`], [`exec`], [`eviction`]) depend
//! on [`request`], never on `rest`; `rest` depends on [`server`], never the reverse.

pub mod admission;
pub mod audit;
pub mod auth;
pub mod crd;
pub mod decode;
pub mod discovery;
pub mod encryption;
pub mod error;
pub mod eviction;
pub mod exec;
pub mod flowcontrol;
pub mod logs;
pub mod metrics;
pub mod metrics_api;
pub mod objects;
pub mod openapi;
pub mod ops;
pub mod patch;
pub mod podsecurity;
pub mod portforward;
pub mod protobuf;
pub mod quota;
pub mod registry;
pub mod request;
pub mod rest;
pub mod serve;
pub mod server;
pub mod serviceaccount;
pub mod services;
pub mod storage;
pub mod strategy;
pub mod table;
pub mod testing;
pub mod timeline;
pub mod tls;
pub mod ui;
pub(crate) mod warning;
pub mod watch;

pub use error::ApiError;
pub use registry::{ResourceKind, Strategy, Subresource};
pub use server::{ApiServer, ApiServerConfig, ApiServerError, ConnectionLimits};
