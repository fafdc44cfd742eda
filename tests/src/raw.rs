//! A client written by hand on a raw socket, for tests that send what a
//! well-behaved peer never would.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Opens a raw socket to the server.
///
/// # Panics
///
/// When the connection cannot be made (this is test code).
pub async fn raw(addr: &rpc_transport::Address) -> Box<dyn RawStream> {
    match addr {
        rpc_transport::Address::Tcp(hp) => {
            Box::new(tokio::net::TcpStream::connect(hp.as_str()).await.unwrap())
        }
        rpc_transport::Address::Unix(p) => {
            Box::new(tokio::net::UnixStream::connect(p).await.unwrap())
        }
        rpc_transport::Address::Name(_) => panic!("a raw client needs a socket address"),
    }
}

/// Any byte stream a raw client can use (TCP or Unix).
pub trait RawStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> RawStream for T {}

/// Reads until the server closes the stream; returns how many bytes came.
pub async fn read_until_closed(s: &mut Box<dyn RawStream>) -> usize {
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink).await;
    sink.len()
}

/// A valid client handshake, written by hand.
pub async fn handshake_by_hand(s: &mut Box<dyn RawStream>) {
    use rpc_core::__wire::{Handshake, Hello, MAGIC, VERSION};
    let hello = Handshake::Hello(Hello {
        max_frame: 1 << 20,
        max_in_flight: 16,
        pake: None,
        name: Some("raw".into()),
    });
    let body = postcard::to_stdvec(&hello).unwrap();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    s.write_all(&out).await.unwrap();
    // The server's preamble, hello and verdict.
    let mut pre = [0u8; 6];
    s.read_exact(&mut pre).await.unwrap();
    for _ in 0..2 {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.unwrap();
        let mut body = vec![0; u32::from_le_bytes(len) as usize];
        s.read_exact(&mut body).await.unwrap();
        let msg: Handshake = postcard::from_bytes(&body).unwrap();
        if let Handshake::Verdict(v) = msg {
            assert!(
                matches!(v, rpc_core::__wire::Verdict::Accepted { .. }),
                "{v:?}"
            );
        }
    }
}

/// Opens a raw socket to the server and shakes hands by hand.
///
/// # Panics
///
/// When the connection or the handshake fails (this is test code).
pub async fn connected(addr: &rpc_transport::Address) -> Box<dyn RawStream> {
    let mut s = raw(addr).await;
    handshake_by_hand(&mut s).await;
    s
}

/// Writes one frame after the handshake: a length prefix, then `header`
/// and `payload` postcard-encoded.
pub async fn send_frame<P: serde::Serialize>(
    s: &mut Box<dyn RawStream>,
    header: &rpc_core::__wire::Header<'_>,
    payload: &P,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    rpc_core::__wire::encode_frame(&mut buf, header, payload).expect("encodes");
    s.write_all(&buf).await
}

/// Reads one frame after the handshake; its body (without the length).
///
/// # Panics
///
/// When the stream ends first (this is test code).
pub async fn read_frame(s: &mut Box<dyn RawStream>) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut body = vec![0; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut body).await.unwrap();
    body
}
