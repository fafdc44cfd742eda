//! A streaming object for the stream tests, and items that encode as byte
//! strings.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use rpc_core::{expose, CallContext, RpcError, RpcStream};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// Bytes that travel as one byte string (serde's `Vec<u8>` is a sequence,
/// one element at a time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk(pub Vec<u8>);

impl Serialize for Chunk {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Chunk {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Chunk;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Chunk, E> {
                Ok(Chunk(v.to_vec()))
            }
        }
        d.deserialize_bytes(Visit)
    }
}

/// A typed application error carried in items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemError {
    /// The item is odd.
    Odd(u32),
}

/// Sets its flag and wakes waiters when dropped: shows that a producer (or
/// an input) was dropped.
pub struct DropGuard(pub Arc<Dropped>);

/// What a [`DropGuard`] reports.
#[derive(Default)]
pub struct Dropped {
    /// How many guards were dropped.
    pub count: AtomicUsize,
    /// Woken on each drop.
    pub notify: Notify,
}

impl Dropped {
    /// Waits until at least `n` guards were dropped.
    pub async fn wait(&self, n: usize) {
        loop {
            let notified = self.notify.notified();
            if self.count.load(Ordering::SeqCst) >= n {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.count.fetch_add(1, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }
}

/// Counts the items a stream has produced (polled out of it).
pub fn counted<S: Stream>(s: S, produced: Arc<AtomicUsize>) -> impl Stream<Item = S::Item> {
    s.inspect(move |_| {
        produced.fetch_add(1, Ordering::SeqCst);
    })
}

/// The streaming object of the tests.
#[derive(Default, Clone)]
pub struct Streamer {
    /// Items the server-side producers have produced.
    pub produced: Arc<AtomicUsize>,
    /// Dropped server-side producers and inputs.
    pub dropped: Arc<Dropped>,
}

#[expose]
impl Streamer {
    /// `0..n`.
    pub fn count(&self, n: u32) -> impl Stream<Item = u32> + Send + 'static {
        futures::stream::iter(0..n)
    }

    /// `n` chunks of `size` bytes, counted, with a drop guard.
    pub fn chunks(&self, n: u32, size: u32) -> impl Stream<Item = Chunk> + Send + 'static {
        let guard = DropGuard(self.dropped.clone());
        let items = futures::stream::iter(0..n).map(move |i| {
            let _ = &guard;
            Chunk(vec![i as u8; size as usize])
        });
        counted(items, self.produced.clone())
    }

    /// Never ends and never yields; has a drop guard.
    pub fn forever(&self) -> impl Stream<Item = u32> + Send + 'static {
        let guard = DropGuard(self.dropped.clone());
        futures::stream::pending::<u32>().map(move |n| {
            let _ = &guard;
            n
        })
    }

    /// Items that are application errors for odd numbers.
    pub fn checked(&self, n: u32) -> impl Stream<Item = Result<u32, ItemError>> + Send + 'static {
        futures::stream::iter(0..n).map(|i| {
            if i % 2 == 0 {
                Ok(i)
            } else {
                Err(ItemError::Odd(i))
            }
        })
    }

    /// Sums the caller's numbers.
    pub async fn sum(&self, mut numbers: RpcStream<u32>) -> Result<u64, String> {
        let mut total = 0;
        while let Some(n) = numbers.next().await {
            total += u64::from(n.map_err(|e| e.to_string())?);
        }
        Ok(total)
    }

    /// Reads `n` items of the caller's stream, then drops it and returns
    /// how many it read.
    pub async fn take(&self, n: u32, mut input: RpcStream<Chunk>) -> u32 {
        let mut read = 0;
        while read < n {
            match input.next().await {
                Some(Ok(_)) => read += 1,
                _ => break,
            }
        }
        read
    }

    /// Reads one item, waits `ms`, then reads the rest; how many.
    pub async fn slow_reader(&self, ms: u64, mut input: RpcStream<Chunk>) -> u32 {
        let mut read = u32::from(input.next().await.is_some());
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        while let Some(Ok(_)) = input.next().await {
            read += 1;
        }
        read
    }

    /// Echoes the caller's numbers, doubled.
    pub fn double(&self, numbers: RpcStream<u32>) -> impl Stream<Item = u32> + Send + 'static {
        numbers.filter_map(|n| async move { n.ok().map(|n| n * 2) })
    }

    /// Calls back into the caller: reads the caller's `Source.numbers`
    /// stream and sums it.
    pub async fn sum_callers(&self, cx: CallContext, n: u32) -> Result<u64, RpcError> {
        let mut numbers = SourceClient::new(cx.peer()).numbers(n).await?;
        let mut total = 0;
        while let Some(x) = numbers.next().await {
            total += u64::from(x?);
        }
        Ok(total)
    }
}

/// An object a client exposes, for the server to stream from.
pub struct Source;

#[expose]
impl Source {
    /// `1..=n`.
    pub fn numbers(&self, n: u32) -> impl Stream<Item = u32> + Send + 'static {
        futures::stream::iter(1..=n)
    }
}
