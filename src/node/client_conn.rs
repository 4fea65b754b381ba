//! Serves one client connection: reads `ClientRequest` frames one at a time, hands each
//! to the core loop, and writes the answer back before reading the next.
//!
//! A submit is answered once the core decides it, or with a retryable
//! `ClientResponse::Error` if nothing is decided within the wait (e.g. the leader changed
//! and dropped the proposal; the client retries with the same request id).

use super::ClientEvent;
use crate::transport::listener::ClientConn;
use crate::transport::wire::{ClientRequest, ClientResponse};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, warn};

/// A client connection silent for this long is closed (each holds one of the listener's
/// bounded connection slots). Long enough for any `ReadLog` wait between requests.
const CLIENT_IDLE: Duration = Duration::from_secs(300);

pub(crate) async fn serve(
    mut conn: ClientConn,
    core: mpsc::Sender<ClientEvent>,
    submit_wait: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let peer = conn.peer_addr();
    loop {
        let request = tokio::select! {
            _ = stop.changed() => return,
            r = tokio::time::timeout(CLIENT_IDLE, conn.read_request()) => r,
        };
        let request = match request {
            Err(_) => {
                debug!(client = %peer, idle_s = CLIENT_IDLE.as_secs(), "closing idle client connection");
                return;
            }
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                warn!(client = %peer, error = %e, "closing client connection: bad frame");
                return;
            }
        };
        let response = match request {
            ClientRequest::Submit { id, body } => {
                let (tx, rx) = oneshot::channel();
                if core
                    .send(ClientEvent::Submit {
                        id,
                        body,
                        reply: tx,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                match tokio::time::timeout(submit_wait, rx).await {
                    Ok(Ok(reply)) => ClientResponse::Submit(reply),
                    _ => ClientResponse::Error {
                        reason: format!(
                            "request {id} not decided within {}ms; retry",
                            submit_wait.as_millis()
                        ),
                    },
                }
            }
            ClientRequest::Status => {
                let (tx, rx) = oneshot::channel();
                if core.send(ClientEvent::Status { reply: tx }).await.is_err() {
                    return;
                }
                match rx.await {
                    Ok(status) => ClientResponse::Status(status),
                    Err(_) => return,
                }
            }
            ClientRequest::ReadIndex => {
                let (tx, rx) = oneshot::channel();
                if core
                    .send(ClientEvent::ReadIndex { reply: tx })
                    .await
                    .is_err()
                {
                    return;
                }
                match rx.await {
                    Ok(response) => response,
                    Err(_) => return,
                }
            }
            ClientRequest::ReadLog {
                from_slot,
                max_entries,
                wait_ms,
            } => {
                let (tx, rx) = oneshot::channel();
                let event = ClientEvent::ReadLog {
                    from_slot,
                    max_entries,
                    wait_ms,
                    reply: tx,
                };
                if core.send(event).await.is_err() {
                    return;
                }
                match rx.await {
                    Ok(response) => response,
                    Err(_) => return,
                }
            }
        };
        if let Err(e) = conn.send_response(&response).await {
            debug!(client = %peer, error = %e, "client connection closed");
            return;
        }
    }
}
