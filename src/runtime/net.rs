//! The stream seam: every socket the broker accepts or opens (Kafka clients, replica
//! fetches, the metadata quorum's links) is a [`Stream`] from here, so what goes under all
//! three (TLS, accounting) goes in once. A stream is read and written as
//! `futures::AsyncRead + AsyncWrite`; each stack keeps its own framing on top.
//!
//! - [`Listener`]: binds with SO_REUSEPORT (every shard binds the same port) and accepts;
//! - [`Stream::connect`]: connects within a timeout, with TCP_NODELAY;
//! - [`Stream::accept_tls`]: the server side of a TLS handshake (`super::tls`), after which
//!   the stream reads and writes plaintext as before; [`Stream::connect_tls`] the client
//!   side (a node's links to other nodes). Under TLS a write may stay buffered
//!   until a flush: [`write_frame`] writes and flushes;
//! - [`read_exact_within`], [`read_frame`]: reads bounded in time and in bytes (a length
//!   prefix is checked against its cap before anything is allocated).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::time;

/// A listening socket of this shard.
pub struct Listener {
    inner: glommio::net::TcpListener,
}

impl Listener {
    /// Binds `address` with SO_REUSEPORT (glommio sets it on every listener): each shard
    /// binds the same port and the kernel spreads connections over them.
    pub fn bind(address: SocketAddr) -> io::Result<Listener> {
        let inner = glommio::net::TcpListener::bind(address).map_err(io::Error::from)?;
        Ok(Listener { inner })
    }

    /// The next connection. Errors (EMFILE, a connection reset before it was accepted) end
    /// one accept, not the listener.
    pub async fn accept(&self) -> io::Result<Stream> {
        let inner = self.inner.accept().await.map_err(io::Error::from)?;
        Ok(Stream {
            inner: Inner::Plain(inner),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr().map_err(io::Error::from)
    }
}

/// A connected socket: a client's, a follower's fetch session, a quorum link.
pub struct Stream {
    inner: Inner,
}

enum Inner {
    Plain(glommio::net::TcpStream),
    /// Boxed: a TLS session holds its buffers and state (kilobytes).
    Tls(Box<futures_rustls::server::TlsStream<glommio::net::TcpStream>>),
    TlsClient(Box<futures_rustls::client::TlsStream<glommio::net::TcpStream>>),
}

impl Inner {
    fn tcp(&self) -> &glommio::net::TcpStream {
        match self {
            Inner::Plain(stream) => stream,
            Inner::Tls(stream) => stream.get_ref().0,
            Inner::TlsClient(stream) => stream.get_ref().0,
        }
    }
}

impl Stream {
    /// Connects to `address` (`host:port`, an IP address in practice: names would be
    /// resolved with a blocking call) within `within`, with TCP_NODELAY set: every stack
    /// here writes whole frames and waits for answers.
    pub async fn connect(address: &str, within: Duration) -> io::Result<Stream> {
        let connected = time::timeout(within, glommio::net::TcpStream::connect(address)).await;
        let inner = match connected {
            Ok(connected) => connected.map_err(io::Error::from)?,
            Err(time::Elapsed) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connecting to {address} took longer than {within:?}"),
                ))
            }
        };
        let stream = Stream {
            inner: Inner::Plain(inner),
        };
        stream.set_nodelay();
        Ok(stream)
    }

    /// Connects to `address` and runs the client side of a TLS handshake within `within`:
    /// the server must present a certificate for the address's host (an IP address
    /// certificates name too) that the configuration's CAs signed; the configuration's own
    /// certificate is presented if the server asks (mTLS).
    pub async fn connect_tls(
        address: &str,
        within: Duration,
        config: &super::tls::ClientTls,
    ) -> io::Result<Stream> {
        let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        let Inner::Plain(tcp) = Stream::connect(address, within).await?.inner else {
            return Err(io::Error::other("a new connection has no TLS yet"));
        };
        let connector = futures_rustls::TlsConnector::from(config.current());
        match time::timeout(within, connector.connect(name, tcp)).await {
            Ok(Ok(tls)) => Ok(Stream {
                inner: Inner::TlsClient(Box::new(tls)),
            }),
            Ok(Err(error)) => Err(error),
            Err(time::Elapsed) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the TLS handshake with {address} took longer than {within:?}"),
            )),
        }
    }

    /// The server side of a TLS handshake on this (accepted, plain) stream, within
    /// `within`: a client that sends no TLS, an untrusted or missing certificate where one
    /// is required, or a slow handshake is an error and the connection is dropped.
    pub async fn accept_tls(
        self,
        config: &super::tls::ServerTls,
        within: Duration,
    ) -> io::Result<Stream> {
        let Inner::Plain(tcp) = self.inner else {
            return Err(io::Error::other("TLS is already on"));
        };
        let acceptor = futures_rustls::TlsAcceptor::from(config.current());
        match time::timeout(within, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => Ok(Stream {
                inner: Inner::Tls(Box::new(tls)),
            }),
            Ok(Err(error)) => Err(error),
            Err(time::Elapsed) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the TLS handshake took longer than {within:?}"),
            )),
        }
    }

    /// The certificate a TLS client presented (mTLS), DER.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        match &self.inner {
            Inner::Plain(_) | Inner::TlsClient(_) => None,
            Inner::Tls(stream) => stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|certificate| certificate.as_ref()),
        }
    }

    /// Disables Nagle's algorithm; a failure only costs latency, so it is logged.
    pub fn set_nodelay(&self) {
        if let Err(error) = self.inner.tcp().set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY failed");
        }
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.tcp().peer_addr().map_err(io::Error::from)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(stream) => Pin::new(stream).poll_read(context, buffer),
            Inner::Tls(stream) => Pin::new(stream.as_mut()).poll_read(context, buffer),
            Inner::TlsClient(stream) => Pin::new(stream.as_mut()).poll_read(context, buffer),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(stream) => Pin::new(stream).poll_write(context, buffer),
            Inner::Tls(stream) => Pin::new(stream.as_mut()).poll_write(context, buffer),
            Inner::TlsClient(stream) => Pin::new(stream.as_mut()).poll_write(context, buffer),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(stream) => Pin::new(stream).poll_flush(context),
            Inner::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(context),
            Inner::TlsClient(stream) => Pin::new(stream.as_mut()).poll_flush(context),
        }
    }

    /// Under TLS, sends close_notify first.
    fn poll_close(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(stream) => Pin::new(stream).poll_close(context),
            Inner::Tls(stream) => Pin::new(stream.as_mut()).poll_close(context),
            Inner::TlsClient(stream) => Pin::new(stream.as_mut()).poll_close(context),
        }
    }
}

/// Writes `bytes` whole and flushes: under TLS the last record may otherwise stay in the
/// session's buffer.
pub async fn write_frame(writer: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

/// Fills `buffer` within `within`; a timeout is `ErrorKind::TimedOut`, a close before the
/// end `ErrorKind::UnexpectedEof`.
pub async fn read_exact_within(
    reader: &mut (impl AsyncRead + Unpin),
    buffer: &mut [u8],
    within: Duration,
) -> io::Result<()> {
    match time::timeout(within, reader.read_exact(buffer)).await {
        Ok(read) => read,
        Err(time::Elapsed) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{} bytes did not arrive within {within:?}", buffer.len()),
        )),
    }
}

/// Reads one frame: a 4-byte big-endian length, then that many bytes. A length of zero or
/// above `bytes_max` is refused (`InvalidData`) before anything is allocated.
pub async fn read_frame(
    reader: &mut (impl AsyncRead + Unpin),
    bytes_max: usize,
) -> io::Result<Bytes> {
    let mut prefix = [0u8; 4];
    reader.read_exact(&mut prefix).await?;
    let length = u32::from_be_bytes(prefix) as usize;
    if length == 0 || length > bytes_max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {length} bytes (the cap is {bytes_max})"),
        ));
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    Ok(Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::AsyncWriteExt;

    #[test]
    fn frames_are_capped_before_allocation_and_read_whole() {
        futures_lite::future::block_on(async {
            let mut input: &[u8] = &[0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0];
            assert_eq!(read_frame(&mut input, 3).await.unwrap(), Bytes::from("abc"));
            let refused = read_frame(&mut input, 3).await.unwrap_err();
            assert_eq!(refused.kind(), io::ErrorKind::InvalidData, "an empty frame");
            let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0xff];
            let refused = read_frame(&mut huge, 1 << 20).await.unwrap_err();
            assert_eq!(refused.kind(), io::ErrorKind::InvalidData);
            let mut short: &[u8] = &[0, 0, 0, 9, 1];
            let cut = read_frame(&mut short, 64).await.unwrap_err();
            assert_eq!(cut.kind(), io::ErrorKind::UnexpectedEof);
        });
    }

    #[test]
    fn a_stream_connects_reads_within_its_time_and_times_out_on_silence() {
        crate::runtime::run_single("net-test", std::env::temp_dir(), || async {
            let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
            let address = listener.local_addr().expect("address").to_string();
            let server = crate::runtime::spawn(async move {
                let mut accepted = listener.accept().await.expect("accept");
                accepted.write_all(b"hi").await.expect("write");
                // Then silence: the client's second read times out.
                time::sleep(Duration::from_secs(5)).await;
            });
            let mut client = Stream::connect(&address, Duration::from_secs(1))
                .await
                .expect("connect");
            let mut greeting = [0u8; 2];
            read_exact_within(&mut client, &mut greeting, Duration::from_secs(5))
                .await
                .expect("greeting");
            assert_eq!(&greeting, b"hi");
            let mut more = [0u8; 1];
            let silent = read_exact_within(&mut client, &mut more, Duration::from_millis(50))
                .await
                .unwrap_err();
            assert_eq!(silent.kind(), io::ErrorKind::TimedOut);
            drop(server);
        })
        .expect("executor");
    }
}
