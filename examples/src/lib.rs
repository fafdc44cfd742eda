//! Code shared by several examples.
//!
//! `#[expose]` generates the typed client stub (`EchoClient`) next to the
//! object it calls, so a server and its clients share the crate that defines
//! the object: here, the `echo_server` and `echo_client` examples both use
//! [`echo`], and read their TLS files with [`pem`].

pub mod echo;
pub mod pem;
pub mod secret;
