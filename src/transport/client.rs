//! The client side of the client protocol: dial a replica, say [`Hello::Client`], then
//! one request, one response, in order. Leader discovery, retries and request ids are the
//! client library's job (`src/client`), not this module's.

use super::frame::{encode_frame, read_frame};
use super::tls::{split_plain, split_tls, ReadHalf, TlsContext, WriteHalf};
use super::wire::{ClientRequest, ClientResponse, Hello};
use crate::core::Uid;
use crate::error::{Error, Result};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A client connection to one replica.
pub struct ClientLink {
    addr: SocketAddr,
    reader: BufReader<ReadHalf>,
    writer: WriteHalf,
    /// TLS is on (for error messages).
    tls: bool,
}

impl std::fmt::Debug for ClientLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLink")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .finish()
    }
}

impl ClientLink {
    /// Dials `addr` (giving up after `timeout`) and sends the hello, in plaintext.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<ClientLink> {
        ClientLink::connect_to(addr, timeout, None).await
    }

    /// Dials `addr`, with TLS when `tls` is `Some((context, uid))`: the replica there
    /// must present replica `uid`'s certificate. `timeout` bounds the dial and the
    /// handshake.
    pub async fn connect_to(
        addr: SocketAddr,
        timeout: Duration,
        tls: Option<(&TlsContext, Uid)>,
    ) -> Result<ClientLink> {
        let context = || match tls {
            Some(_) => format!("connecting to {addr} (TLS)"),
            None => format!("connecting to {addr}"),
        };
        let opened = tokio::time::timeout(timeout, async {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok::<_, std::io::Error>(match tls {
                Some((tls, uid)) => split_tls(tls.connect(stream, uid).await?),
                None => split_plain(stream),
            })
        })
        .await
        .map_err(|_| Error::io(context(), std::io::ErrorKind::TimedOut.into()))?;
        let (reader, mut writer) = opened.map_err(|e| Error::io(context(), e))?;
        let hello = encode_frame(&Hello::Client)?;
        writer
            .write_all(&hello)
            .await
            .map_err(|e| Error::io(context(), e))?;
        writer.flush().await.map_err(|e| Error::io(context(), e))?;
        Ok(ClientLink {
            addr,
            reader: BufReader::new(reader),
            writer,
            tls: tls.is_some(),
        })
    }

    /// The replica's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `request` and waits for its response (no timeout here: wrap the call in
    /// `tokio::time::timeout`, allowing for `wait_ms` of a `ReadLog`). After an error or
    /// a timeout the link is out of step: drop it and connect again.
    pub async fn call(&mut self, request: &ClientRequest) -> Result<ClientResponse> {
        let frame = encode_frame(request)?;
        let sent = async {
            self.writer.write_all(&frame).await?;
            self.writer.flush().await
        };
        let tls = if self.tls { " (TLS)" } else { "" };
        let plaintext = !self.tls;
        sent.await.map_err(|e| {
            Error::io(
                format!("sending request to {}{tls}", self.addr),
                hint_tls(e, plaintext),
            )
        })?;
        let context = || {
            if self.tls {
                format!("reading response from {} (TLS)", self.addr)
            } else {
                format!("reading response from {}", self.addr)
            }
        };
        match read_frame(&mut self.reader).await {
            Ok(Some(response)) => Ok(response),
            Ok(None) => Err(Error::io(
                context(),
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    if self.tls {
                        "the replica closed the connection".to_string()
                    } else {
                        format!("the replica closed the connection ({TLS_HINT})")
                    },
                ),
            )),
            // In TLS 1.3 the replica refuses a client certificate after the handshake:
            // the refusal (an alert) arrives here.
            // A TLS replica may also reset a plaintext connection (it closed with the
            // client's bytes unread): say so rather than only "reset".
            Err(Error::Io { source, .. }) => Err(Error::io(context(), hint_tls(source, !self.tls))),
            // A TLS replica answers a plaintext hello with an alert record, which reads
            // as a bad frame here.
            Err(Error::Frame(reason)) if !self.tls => Err(Error::io(
                context(),
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("not a paxos answer ({reason}): {TLS_HINT}"),
                ),
            )),
            Err(e) => Err(e),
        }
    }
}

/// What a plaintext client's connection errors add when the replica may want TLS.
const TLS_HINT: &str = "does the replica require TLS? then the config needs its [tls] section";

/// A plaintext connection reset or cut by the replica: most likely a TLS replica that
/// refused the plaintext hello. Adds that hint to the error (TLS connections as they are).
fn hint_tls(e: std::io::Error, plaintext: bool) -> std::io::Error {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    if plaintext && matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe) {
        std::io::Error::new(e.kind(), format!("{e} ({TLS_HINT})"))
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::hint_tls;
    use std::io::{Error, ErrorKind};

    #[test]
    fn a_reset_plaintext_connection_names_tls_and_a_tls_one_stays_as_it_is() {
        let reset = || Error::new(ErrorKind::ConnectionReset, "Connection reset by peer");
        let hinted = hint_tls(reset(), true);
        assert_eq!(hinted.kind(), ErrorKind::ConnectionReset);
        assert!(hinted.to_string().contains("require TLS"), "{hinted}");
        assert!(!hint_tls(reset(), false).to_string().contains("TLS"));
        let eof = Error::new(ErrorKind::UnexpectedEof, "eof");
        assert!(!hint_tls(eof, true).to_string().contains("TLS"));
    }
}
