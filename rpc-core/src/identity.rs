//! [`PeerIdentity`]: who the other end of a connection proved to be, as the
//! transport under it established (a TLS certificate chain), and
//! [`AttachOptions`], through which a transport hands it in.
//!
//! This crate never checks an identity itself and depends on no TLS
//! library: it stores what the transport vouches for, per connection, and
//! shows it to handlers ([`CallContext::peer_identity`](crate::CallContext::peer_identity))
//! and to whoever holds the [`Peer`](crate::Peer)
//! ([`Peer::peer_identity`](crate::Peer::peer_identity)).

use std::fmt;
use std::sync::Arc;

/// The verified certificate chain the other end of a connection presented,
/// as DER bytes, end-entity certificate first.
///
/// A transport that authenticates its peer (`rpc-transport` with its `tls`
/// feature, when the TLS configuration verifies the other side's
/// certificate) hands it in when it attaches the stream
/// ([`Peer::attach_with`](crate::Peer::attach_with)); it lives as long as
/// that connection, and a reconnection brings its own. On a server with
/// mutual TLS it names the client; on a client, the server.
///
/// The chain is the one the peer sent, which the TLS layer verified against
/// its trust roots before the connection was set up; this type only carries
/// it. To read names out of it, parse the [`certificate`](Self::certificate)
/// with an X.509 parser (`rpc_transport::tls::CertificateInfo` does it).
///
/// Cheap to clone: the bytes are shared.
///
/// # Examples
///
/// ```
/// use rpc_core::PeerIdentity;
///
/// let end_entity = vec![0x30, 0x82, 0x01, 0x0a]; // DER bytes, as a TLS layer gives them
/// let intermediate = vec![0x30, 0x82, 0x02, 0x0b];
/// let id = PeerIdentity::from_chain([end_entity.clone(), intermediate]).unwrap();
/// assert_eq!(id.certificate(), &end_entity[..]);
/// assert_eq!(id.chain().len(), 2);
/// assert!(PeerIdentity::from_chain(Vec::<Vec<u8>>::new()).is_none());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    /// Never empty.
    chain: Arc<[Vec<u8>]>,
}

impl PeerIdentity {
    /// An identity made of `chain`: DER certificates, end-entity first.
    ///
    /// `None` when the chain is empty (the peer presented no certificate,
    /// so there is nothing to identify it by).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::PeerIdentity;
    ///
    /// let id = PeerIdentity::from_chain([b"\x30\x03\x02\x01\x01".to_vec()]).unwrap();
    /// assert_eq!(id.chain().len(), 1);
    /// assert_eq!(PeerIdentity::from_chain(Vec::<Vec<u8>>::new()), None);
    /// ```
    pub fn from_chain<I, C>(chain: I) -> Option<PeerIdentity>
    where
        I: IntoIterator<Item = C>,
        C: Into<Vec<u8>>,
    {
        let chain: Arc<[Vec<u8>]> = chain.into_iter().map(Into::into).collect();
        (!chain.is_empty()).then_some(PeerIdentity { chain })
    }

    /// The peer's own (end-entity) certificate, DER-encoded.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::PeerIdentity;
    ///
    /// let id = PeerIdentity::from_chain([vec![1u8, 2], vec![3u8]]).unwrap();
    /// assert_eq!(id.certificate(), [1, 2]);
    /// ```
    pub fn certificate(&self) -> &[u8] {
        &self.chain[0]
    }

    /// The whole chain the peer presented, end-entity first, then the
    /// intermediates it sent (if any), each DER-encoded.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::PeerIdentity;
    ///
    /// let id = PeerIdentity::from_chain([vec![1u8], vec![2u8]]).unwrap();
    /// let lens: Vec<usize> = id.chain().iter().map(Vec::len).collect();
    /// assert_eq!(lens, [1, 1]);
    /// ```
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }
}

impl fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bytes say nothing to a reader; their sizes do.
        let sizes: Vec<usize> = self.chain.iter().map(Vec::len).collect();
        f.debug_struct("PeerIdentity")
            .field("certificate_sizes", &sizes)
            .finish()
    }
}

/// What a transport knows about a new stream that the protocol does not
/// learn by itself, for [`Peer::attach_with`](crate::Peer::attach_with).
///
/// Everything in it belongs to that one connection: a reconnection attaches
/// a new stream with options of its own.
///
/// # Examples
///
/// ```
/// use rpc_core::{AttachOptions, PeerIdentity};
///
/// let id = PeerIdentity::from_chain([vec![0x30u8, 0x00]]).unwrap();
/// let options = AttachOptions::new().peer_identity(Some(id.clone()));
/// assert_eq!(options.identity(), Some(&id));
/// assert_eq!(AttachOptions::new().identity(), None);
/// ```
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    identity: Option<PeerIdentity>,
}

impl AttachOptions {
    /// No options: what [`Peer::attach`](crate::Peer::attach) uses.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(rpc_core::AttachOptions::new().identity().is_none());
    /// ```
    pub fn new() -> Self {
        AttachOptions::default()
    }

    /// The identity the transport verified for the other end (`None`: it
    /// verified none).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::{AttachOptions, PeerIdentity};
    ///
    /// let id = PeerIdentity::from_chain([vec![0x30u8, 0x00]]);
    /// assert_eq!(AttachOptions::new().peer_identity(id.clone()).identity(), id.as_ref());
    /// ```
    pub fn peer_identity(mut self, identity: Option<PeerIdentity>) -> Self {
        self.identity = identity;
        self
    }

    /// The identity set by [`peer_identity`](Self::peer_identity).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(rpc_core::AttachOptions::new().identity(), None);
    /// ```
    pub fn identity(&self) -> Option<&PeerIdentity> {
        self.identity.as_ref()
    }

    /// Takes the identity out.
    pub(crate) fn into_identity(self) -> Option<PeerIdentity> {
        self.identity
    }
}
