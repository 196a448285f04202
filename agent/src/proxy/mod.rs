//! The proxies cutover drives: one trait, one implementation per proxy.
pub mod haproxy;
