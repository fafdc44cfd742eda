//! The targets a registry answers besides its objects: fallbacks for calls
//! nobody exposed, and the built-in `rpc.objects` (introspection) and
//! `rpc.changed` (registration events).
//!
//! Owns: what these answer. The registry decides when they are reached.

use std::sync::Arc;

use super::incoming::Incoming;
use super::service::{Handled, Service};

/// The built-in target that lists a registry's objects.
pub(crate) const INTROSPECTION: &str = "rpc.objects";

/// One object the other side exposes, as
/// [`Peer::remote_objects`](crate::Peer::remote_objects) lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RemoteObject {
    /// The name it is exposed under.
    pub name: String,
    /// The wire names of its methods, in declaration order.
    pub methods: Vec<String>,
}

/// The built-in one-way target by which a side tells the other that it
/// exposed or removed an object.
pub(crate) const CHANGED: &str = "rpc.changed";

/// A change to the objects the other side exposes, as
/// [`Peer::remote_changes`](crate::Peer::remote_changes) reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum RemoteChange {
    /// An object was exposed under this name.
    Exposed(String),
    /// The object of this name was removed.
    Removed(String),
}

/// Receives the other side's `rpc.changed` notifications.
pub(super) struct Changed;

impl Service for Changed {
    fn name() -> &'static str {
        "rpc"
    }

    fn methods() -> &'static [&'static str] {
        &["changed"]
    }

    fn dispatch(self: Arc<Self>, _method: usize, call: Incoming) -> Handled {
        Handled::Done(match call.args::<(RemoteChange,)>() {
            Ok((change,)) => {
                call.context().peer().heard_change(change);
                call.reply(&())
            }
            Err(e) => call.fail(e),
        })
    }
}

/// The answer of the built-in `rpc.objects`.
pub(super) struct Listing(pub(super) Vec<RemoteObject>);

impl Service for Listing {
    fn name() -> &'static str {
        "rpc"
    }

    fn methods() -> &'static [&'static str] {
        &["objects"]
    }

    fn dispatch(self: Arc<Self>, _method: usize, call: Incoming) -> Handled {
        Handled::Done(call.reply(&self.0))
    }
}

/// A handler for the calls no exposed object answers; see
/// [`Registry::fallback`](crate::Registry::fallback). Any `Fn(Incoming) -> Handled` is one.
///
/// # Examples
///
/// ```
/// use rpc_core::{Fallback, Handled, Incoming, RemoteError};
///
/// /// Refuses politely, naming what was asked for.
/// struct Polite;
///
/// impl Fallback for Polite {
///     fn call(&self, call: Incoming) -> Handled {
///         let why = format!("nobody here answers {}.{}", call.object(), call.method());
///         Handled::Done(call.fail(RemoteError::Failed(why)))
///     }
/// }
///
/// let registry = rpc_core::Registry::new();
/// registry.fallback(Polite);
/// ```
pub trait Fallback: Send + Sync + 'static {
    /// Answers one call, at once ([`Handled::Done`](crate::Handled::Done))
    /// or from a future ([`Handled::Pending`](crate::Handled::Pending)).
    fn call(&self, call: Incoming) -> Handled;
}

impl<F> Fallback for F
where
    F: Fn(Incoming) -> Handled + Send + Sync + 'static,
{
    fn call(&self, call: Incoming) -> Handled {
        self(call)
    }
}

/// A fallback as the dispatcher sees it: a service with no methods of its
/// own, to which every call it is given goes.
pub(super) struct FallbackService(pub(super) Box<dyn Fallback>);

impl Service for FallbackService {
    fn name() -> &'static str {
        "fallback"
    }

    fn methods() -> &'static [&'static str] {
        &[]
    }

    fn dispatch(self: Arc<Self>, _method: usize, call: Incoming) -> Handled {
        self.0.call(call)
    }
}
