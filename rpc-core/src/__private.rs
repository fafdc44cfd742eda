//! Items used by the code that `#[expose]` generates. Not a public API:
//! anything here may change in any release.

pub use crate::caller::{CallSpec, Caller};
pub use crate::context::CallContext;
pub use crate::dispatch::{Handled, HandlerFuture, Incoming, Replied, Service};
pub use crate::error::RpcError;
pub use crate::local::{LocalHandled, LocalService};
pub use crate::peer::Peer;
pub use crate::remote::Exposed;
pub use crate::stream::RpcStream;
pub use futures::Stream;
pub use serde::de::DeserializeOwned;
pub use serde::Serialize;

use std::sync::Arc;
use std::time::Duration;

/// The full wire targets (`object.method`) of an object's methods, built once
/// per stub so that calls do no string work.
pub fn targets(object: &str, methods: &[&str]) -> Arc<[Box<str>]> {
    methods
        .iter()
        .map(|m| format!("{object}.{m}").into_boxed_str())
        .collect()
}

/// The spec of a stub's call: its target, the stub's timeout (else the
/// caller's default), and whether the method is idempotent.
fn spec(target: &str, timeout: Option<Duration>, idempotent: bool) -> CallSpec<'_> {
    CallSpec::new(target)
        .timeout(timeout)
        .idempotent(idempotent)
}

/// Makes a call on behalf of a generated stub.
pub async fn call<C, A, R>(
    caller: &C,
    target: &str,
    args: &A,
    timeout: Option<Duration>,
    idempotent: bool,
) -> Result<R, RpcError>
where
    C: Caller,
    A: Serialize + Sync + ?Sized,
    R: DeserializeOwned + Send,
{
    Caller::call(caller, spec(target, timeout, idempotent), args).await
}

/// A call that returns a stream, as a stub makes it.
pub async fn call_stream<C, A, T>(
    caller: &C,
    target: &str,
    args: &A,
    timeout: Option<Duration>,
    idempotent: bool,
) -> Result<RpcStream<T>, RpcError>
where
    C: Caller,
    A: Serialize + Sync + ?Sized,
    T: DeserializeOwned + Send,
{
    Caller::call_stream(caller, spec(target, timeout, idempotent), args).await
}

/// A call that takes a stream and returns one, as a stub makes it.
pub async fn call_duplex<C, A, T, S>(
    caller: &C,
    target: &str,
    args: &A,
    input: S,
    timeout: Option<Duration>,
    idempotent: bool,
) -> Result<RpcStream<T>, RpcError>
where
    C: Caller,
    A: Serialize + Sync + ?Sized,
    T: DeserializeOwned + Send,
    S: Stream + Send + 'static,
    S::Item: Serialize + Send,
{
    Caller::call_duplex(caller, spec(target, timeout, idempotent), args, input).await
}

/// A call that takes a stream and returns a value, as a stub makes it.
pub async fn call_with_input<C, A, R, S>(
    caller: &C,
    target: &str,
    args: &A,
    input: S,
    timeout: Option<Duration>,
    idempotent: bool,
) -> Result<R, RpcError>
where
    C: Caller,
    A: Serialize + Sync + ?Sized,
    R: DeserializeOwned + Send,
    S: Stream + Send + 'static,
    S::Item: Serialize + Send,
{
    Caller::call_with_input(caller, spec(target, timeout, idempotent), args, input).await
}

/// A balancer's view of `peer`: its calls in flight, or `None` when its
/// connection is closing or closed.
pub fn load_if_open(peer: &Peer) -> Option<usize> {
    peer.load_if_open()
}

/// A call through `peer` that also tells, when it fails, whether it was
/// sent (`true`: it may have run), for a balancing caller's failover.
pub async fn call_reaching<A, R>(
    peer: &Peer,
    spec: CallSpec<'_>,
    args: &A,
) -> Result<R, (RpcError, bool)>
where
    A: Serialize + Sync + ?Sized,
    R: DeserializeOwned + Send,
{
    let mut sent = false;
    let result = peer
        .call_reaching(spec.target(), args, spec.timeout_or(None), &mut sent)
        .await;
    result.map_err(|e| (e, sent))
}

/// [`call_reaching`] with arguments already encoded and the reply as it
/// came.
pub async fn call_raw_reaching(
    peer: &Peer,
    spec: CallSpec<'_>,
    encoded_args: &[u8],
) -> Result<Vec<u8>, (RpcError, bool)> {
    let mut sent = false;
    let result = peer
        .call_raw_reaching(
            spec.target(),
            encoded_args,
            spec.timeout_or(None),
            &mut sent,
        )
        .await;
    result.map_err(|e| (e, sent))
}

/// Checks at compile time that a stream's items can travel.
pub fn assert_item<S>(_: &S)
where
    S: Stream + Send + 'static,
    S::Item: Serialize + Send,
{
}

/// Runs a handler marked `#[expose(blocking)]` on tokio's blocking pool;
/// its panic comes back as the `Err`.
pub async fn run_blocking<F, R>(f: F) -> Result<R, Box<dyn std::any::Any + Send>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Ok(r),
        Err(e) if e.is_panic() => Err(e.into_panic()),
        Err(e) => Err(Box::new(e.to_string())),
    }
}

pub use tokio::runtime::Handle as RuntimeHandle;

/// Runs a blocking stub's call on the connection's runtime; refuses clearly
/// inside async code, where blocking would stall the runtime or deadlock.
pub fn block_on<F: std::future::Future>(runtime: &RuntimeHandle, future: F) -> F::Output {
    if RuntimeHandle::try_current().is_ok() {
        panic!(
            "a blocking stub (`..BlockingClient`) was called from async code, inside a tokio \
             runtime, where blocking would stall the runtime or deadlock: call the async \
             stub (`..Client`) and `.await` it there"
        );
    }
    runtime.block_on(future)
}

pub fn pending<F>(f: F) -> Handled
where
    F: std::future::Future<Output = Replied> + Send + 'static,
{
    Handled::Pending(Box::pin(f))
}

/// The waiting handler of a thread-bound object.
pub fn pending_local<F>(f: F) -> LocalHandled
where
    F: std::future::Future<Output = Replied> + 'static,
{
    LocalHandled::Pending(Box::pin(f))
}

/// Compile-time check that an object exposed with `#[expose]` can be
/// shared between threads; its name is the advice the error shows.
pub fn not_send_or_sync_use_expose_local<T: Send + Sync + ?Sized>() {}

/// Compile-time check that an argument type can travel (used with
/// `quote_spanned!` so the error points at the user's type).
pub fn assert_arg<T: Serialize + DeserializeOwned>() {}

/// Compile-time check that a return type can travel.
pub fn assert_ret<T: Serialize + DeserializeOwned>() {}

/// A `Vec<u8>` argument or return value on its way out, encoded as postcard
/// bytes. Postcard writes a sequence of `u8` and a byte string identically
/// (a varint length, then the bytes), so this only changes the speed: one
/// copy instead of a serializer call per byte. `#[expose]` uses it wherever
/// a signature says `Vec<u8>`.
pub struct AsBytes<'a>(pub &'a [u8]);

impl Serialize for AsBytes<'_> {
    #[inline]
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// A `Vec<u8>` coming in, decoded as postcard bytes (see [`AsBytes`]).
pub struct ByteBuf(pub Vec<u8>);

impl ByteBuf {
    /// The bytes.
    #[inline]
    pub fn into_inner(self) -> Vec<u8> {
        self.0
    }
}

impl<'de> serde::Deserialize<'de> for ByteBuf {
    #[inline]
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;

        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = ByteBuf;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }

            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }

            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ByteBuf, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(ByteBuf(v))
            }
        }

        d.deserialize_byte_buf(Visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_a_sequence_of_u8_are_the_same_on_the_wire() {
        let data: Vec<u8> = (0..=255).cycle().take(1000).collect();
        let as_seq = postcard::to_stdvec(&(&data, 7u32)).unwrap();
        let as_bytes = postcard::to_stdvec(&(AsBytes(&data), 7u32)).unwrap();
        assert_eq!(as_seq, as_bytes);
        let (back, n): (ByteBuf, u32) = postcard::from_bytes(&as_seq).unwrap();
        assert_eq!((back.0, n), (data.clone(), 7));
        let plain: (Vec<u8>, u32) = postcard::from_bytes(&as_bytes).unwrap();
        assert_eq!(plain.0, data);
    }
}
