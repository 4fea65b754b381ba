//! Framing: how one message is laid out on a TCP stream.
//!
//! ```text
//! +----------------+----------------+---------------------------+
//! | length: u32 BE | crc32: u32 BE  | payload: `length` bytes   |
//! +----------------+----------------+---------------------------+
//! ```
//!
//! `length` counts the payload only; `crc32` (crc32fast, IEEE) covers the payload; the
//! payload is one postcard-encoded value with no trailing bytes.
//!
//! Invariants:
//! 1. No frame's payload exceeds [`FRAME_BYTES_MAX`]: the writer refuses to build one and
//!    the reader rejects the length before reading (or allocating) the payload.
//! 2. The reader allocates only as payload bytes actually arrive, so a peer that claims a
//!    large length and sends nothing costs a few kilobytes, not the claimed size.
//! 3. A frame is accepted only if its crc matches and its payload decodes completely:
//!    checksum written before sending, checked after receiving (an assertion pair).
//! 4. Every malformed input is an [`Error::Frame`] with a reason; nothing here panics on
//!    input. Clean EOF at a frame boundary is `Ok(None)`; EOF inside a frame is an error.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Hard maximum payload size of one frame: 8 MiB. The node bounds what it puts in one
/// message (values per Accept, entries per catch-up chunk or log read) well below this;
/// a larger frame on the wire is treated as garbage and closes the connection.
pub const FRAME_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Bytes before the payload: length and crc32.
pub const FRAME_HEADER_BYTES: usize = 8;

/// Payload bytes the reader reserves up front; it grows beyond this only as data arrives.
const READ_RESERVE_BYTES: usize = 64 * 1024;

/// Encodes `msg` as one complete frame (header + payload). Refuses, with the size in the
/// reason, a message whose payload would exceed [`FRAME_BYTES_MAX`].
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>> {
    let mut frame = postcard::to_extend(msg, vec![0u8; FRAME_HEADER_BYTES])
        .map_err(|e| Error::Frame(format!("cannot encode message: {e}")))?;
    let payload_len = frame.len() - FRAME_HEADER_BYTES;
    if payload_len > FRAME_BYTES_MAX {
        return Err(Error::Frame(format!(
            "message of {payload_len} bytes exceeds the frame maximum of {FRAME_BYTES_MAX} bytes"
        )));
    }
    let crc = crc32fast::hash(&frame[FRAME_HEADER_BYTES..]);
    // payload_len <= FRAME_BYTES_MAX < u32::MAX, so the cast is exact.
    frame[0..4].copy_from_slice(&(payload_len as u32).to_be_bytes());
    frame[4..8].copy_from_slice(&crc.to_be_bytes());
    Ok(frame)
}

/// Decodes a payload (already length- and crc-checked) into exactly one value.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
    let (value, rest) = postcard::take_from_bytes(payload)
        .map_err(|e| Error::Frame(format!("undecodable payload: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::Frame(format!(
            "{} trailing bytes after the message",
            rest.len()
        )));
    }
    Ok(value)
}

/// Reads one frame and decodes it. `Ok(None)`: the stream ended cleanly at a frame
/// boundary. Oversized length, crc mismatch, truncated frame or undecodable payload:
/// [`Error::Frame`]. Other read failures (reset, ...): [`Error::Io`].
///
/// Not cancel-safe: dropping the future mid-frame loses the bytes read so far, so do not
/// race it against other branches of a `select!` unless the connection is then closed.
pub async fn read_frame<T, R>(reader: &mut R) -> Result<Option<T>>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    Ok(read_frame_counted(reader).await?.map(|(msg, _)| msg))
}

/// [`read_frame`], also returning the frame's size on the wire (header + payload bytes,
/// before any TLS), for the byte counters of the metrics.
pub async fn read_frame_counted<T, R>(reader: &mut R) -> Result<Option<(T, usize)>>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut header = [0u8; FRAME_HEADER_BYTES];
    let mut filled = 0;
    while filled < FRAME_HEADER_BYTES {
        let n = reader
            .read(&mut header[filled..])
            .await
            .map_err(|e| Error::io("reading frame header", e))?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(Error::Frame(format!(
                "truncated frame: stream ended after {filled} of {FRAME_HEADER_BYTES} header bytes"
            )));
        }
        filled += n;
    }
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if len > FRAME_BYTES_MAX {
        return Err(Error::Frame(format!(
            "frame length {len} exceeds the maximum of {FRAME_BYTES_MAX} bytes"
        )));
    }
    let mut payload = Vec::with_capacity(len.min(READ_RESERVE_BYTES));
    (&mut *reader)
        .take(len as u64)
        .read_to_end(&mut payload)
        .await
        .map_err(|e| Error::io("reading frame payload", e))?;
    if payload.len() < len {
        return Err(Error::Frame(format!(
            "truncated frame: stream ended after {} of {len} payload bytes",
            payload.len()
        )));
    }
    let actual = crc32fast::hash(&payload);
    if actual != crc {
        return Err(Error::Frame(format!(
            "crc mismatch: header says {crc:#010x}, payload of {len} bytes has {actual:#010x}"
        )));
    }
    decode_payload(&payload).map(|msg| Some((msg, FRAME_HEADER_BYTES + len)))
}

/// Writes `msg` as one frame and flushes `writer`. For batching, write several
/// [`encode_frame`] results through a `BufWriter` and flush once instead.
pub async fn write_frame<T, W>(writer: &mut W, msg: &T) -> Result<()>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    write_frame_counted(writer, msg).await.map(|_| ())
}

/// [`write_frame`], returning the frame's size (header + payload bytes, before any TLS).
pub async fn write_frame_counted<T, W>(writer: &mut W, msg: &T) -> Result<usize>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    let frame = encode_frame(msg)?;
    writer
        .write_all(&frame)
        .await
        .map_err(|e| Error::io("writing frame", e))?;
    writer
        .flush()
        .await
        .map_err(|e| Error::io("flushing frame", e))?;
    Ok(frame.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Ballot, PeerMessage, RequestId, Value};
    use rand::{Rng, RngCore, SeedableRng};

    fn accept(values: usize, body_bytes: usize) -> PeerMessage {
        PeerMessage::Accept {
            ballot: Ballot::new(3, 1),
            first_slot: 42,
            values: (0..values)
                .map(|i| Value::Msg {
                    id: RequestId {
                        client_id: 7,
                        seq: i as u64,
                    },
                    body: "x".repeat(body_bytes),
                })
                .collect(),
            decided_upto: 40,
            decided_above: vec![(50, 52)],
        }
    }

    async fn read_all(bytes: &[u8]) -> Result<Vec<PeerMessage>> {
        let mut reader = bytes;
        let mut out = Vec::new();
        while let Some(msg) = read_frame(&mut reader).await? {
            out.push(msg);
        }
        Ok(out)
    }

    fn frame_error(result: Result<Vec<PeerMessage>>) -> String {
        match result {
            Err(Error::Frame(reason)) => reason,
            other => panic!("expected a frame error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn roundtrip() {
        let msgs = vec![
            accept(3, 10),
            PeerMessage::CatchUpRequest { from_slot: 9 },
            accept(0, 0),
        ];
        let mut bytes = Vec::new();
        for msg in &msgs {
            write_frame(&mut bytes, msg).await.unwrap();
        }
        assert_eq!(read_all(&bytes).await.unwrap(), msgs);
        assert_eq!(read_all(&[]).await.unwrap(), vec![]);
    }

    #[test]
    fn header_is_length_then_crc() {
        let frame = encode_frame(&PeerMessage::CatchUpRequest { from_slot: 1 }).unwrap();
        let len = u32::from_be_bytes(frame[0..4].try_into().unwrap()) as usize;
        let crc = u32::from_be_bytes(frame[4..8].try_into().unwrap());
        assert_eq!(len, frame.len() - FRAME_HEADER_BYTES);
        assert_eq!(crc, crc32fast::hash(&frame[8..]));
    }

    #[test]
    fn encode_refuses_oversized() {
        let big = accept(1, FRAME_BYTES_MAX);
        match encode_frame(&big) {
            Err(Error::Frame(reason)) => assert!(reason.contains("exceeds"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // Just under the maximum is fine.
        let ok = accept(1, FRAME_BYTES_MAX - 64);
        assert!(encode_frame(&ok).is_ok());
    }

    #[tokio::test]
    async fn oversized_length_is_rejected_before_reading() {
        let mut bytes = ((FRAME_BYTES_MAX + 1) as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 4]);
        let reason = frame_error(read_all(&bytes).await);
        assert!(reason.contains("exceeds"), "{reason}");
        let mut bytes = u32::MAX.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 4]);
        assert!(frame_error(read_all(&bytes).await).contains("exceeds"));
    }

    #[tokio::test]
    async fn crc_mismatch() {
        let mut frame = encode_frame(&accept(2, 5)).unwrap();
        let last = frame.len() - 1;
        frame[last] ^= 0x01;
        assert!(frame_error(read_all(&frame).await).contains("crc"));
        let mut frame = encode_frame(&accept(2, 5)).unwrap();
        frame[5] ^= 0x80;
        assert!(frame_error(read_all(&frame).await).contains("crc"));
    }

    #[tokio::test]
    async fn truncated_frames() {
        let frame = encode_frame(&accept(2, 5)).unwrap();
        for cut in 1..frame.len() {
            let reason = frame_error(read_all(&frame[..cut]).await);
            assert!(reason.contains("truncated"), "cut {cut}: {reason}");
        }
        // A good frame followed by half a header.
        let mut two = frame.clone();
        two.extend_from_slice(&frame[..3]);
        assert!(frame_error(read_all(&two).await).contains("truncated"));
    }

    #[tokio::test]
    async fn undecodable_and_trailing_payloads() {
        for payload in [vec![], vec![0xff; 12], vec![200, 1, 2]] {
            let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
            bytes.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
            bytes.extend_from_slice(&payload);
            let reason = frame_error(read_all(&bytes).await);
            assert!(reason.contains("undecodable"), "{reason}");
        }
        let mut payload =
            postcard::to_stdvec(&PeerMessage::CatchUpRequest { from_slot: 1 }).unwrap();
        payload.push(0);
        let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
        bytes.extend_from_slice(&payload);
        assert!(frame_error(read_all(&bytes).await).contains("trailing"));
    }

    #[tokio::test]
    async fn random_bytes_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        for round in 0..2000 {
            let len = rng.gen_range(0..256);
            let mut bytes = vec![0u8; len];
            rng.fill_bytes(&mut bytes);
            if round % 2 == 0 && len >= 8 {
                // Plausible length and a correct crc: exercises the decoder itself.
                let payload_len = (len - 8) as u32;
                bytes[0..4].copy_from_slice(&payload_len.to_be_bytes());
                let crc = crc32fast::hash(&bytes[8..]);
                bytes[4..8].copy_from_slice(&crc.to_be_bytes());
            }
            let _ = read_all(&bytes).await;
        }
    }
}
