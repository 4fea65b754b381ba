//! The client side of the client protocol: dial a replica, say [`Hello::Client`], then
//! one request, one response, in order. Leader discovery, retries and request ids are the
//! client library's job (`src/client`), not this module's.

use super::frame::{encode_frame, read_frame};
use super::wire::{ClientRequest, ClientResponse, Hello};
use crate::error::{Error, Result};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A client connection to one replica.
#[derive(Debug)]
pub struct ClientLink {
    addr: SocketAddr,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl ClientLink {
    /// Dials `addr` (giving up after `timeout`) and sends the hello.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<ClientLink> {
        let context = || format!("connecting to {addr}");
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::io(context(), std::io::ErrorKind::TimedOut.into()))?
            .map_err(|e| Error::io(context(), e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| Error::io("setting TCP_NODELAY", e))?;
        let (reader, mut writer) = stream.into_split();
        let hello = encode_frame(&Hello::Client)?;
        writer
            .write_all(&hello)
            .await
            .map_err(|e| Error::io(context(), e))?;
        Ok(ClientLink {
            addr,
            reader: BufReader::new(reader),
            writer,
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
        self.writer
            .write_all(&frame)
            .await
            .map_err(|e| Error::io(format!("sending request to {}", self.addr), e))?;
        match read_frame(&mut self.reader).await? {
            Some(response) => Ok(response),
            None => Err(Error::io(
                format!("reading response from {}", self.addr),
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the replica closed the connection",
                ),
            )),
        }
    }
}
