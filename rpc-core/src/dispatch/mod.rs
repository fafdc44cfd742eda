//! Dispatch: the [`Service`] trait that `#[expose]` implements, the
//! [`Incoming`] call a handler answers, and the [`Registry`] of named objects.
//!
//! Nothing here knows about sockets or tasks: the connection (`conn`) looks
//! targets up in the registry, hands each admitted call to a service as an
//! `Incoming`, and receives the answer through the [`Respond`] seam that it
//! implements.

mod builtin;
mod incoming;
mod registry;
mod service;

pub use builtin::{Fallback, RemoteChange, RemoteObject};
pub(crate) use builtin::{CHANGED, INTROSPECTION};
pub use incoming::Incoming;
pub(crate) use incoming::{Kind, Origin, Respond};
pub use registry::Registry;
pub(crate) use registry::{LookupCache, Target};
pub use service::{CloseFuture, Handled, HandlerFuture, Replied, Service};
