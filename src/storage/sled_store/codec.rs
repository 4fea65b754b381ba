//! The value codec of the sled trees: every stored value is
//! `crc32 (u32, big-endian) | postcard bytes`, and every slot key is a big-endian `u64`.
//! Decoding checks the crc32 first; any failure is [`Error::Corrupt`] naming the tree and
//! the key (`slot N`, or the meta key), never silent data.

use crate::core::Slot;
use crate::Error;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub(super) fn decode_slot(tree: &str, key: &[u8]) -> Result<Slot, Error> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| Error::Corrupt {
        tree: tree.to_string(),
        key: format!("key 0x{}", hex(key)),
        reason: format!("a slot key has 8 bytes, this one has {}", key.len()),
    })?;
    Ok(Slot::from_be_bytes(bytes))
}

pub(super) fn slot_name(slot: Slot) -> String {
    format!("slot {slot}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `crc32 (u32 BE) | postcard bytes`.
pub(super) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = postcard::to_extend(value, vec![0u8; 4]).map_err(|e| Error::Encode {
        what: std::any::type_name::<T>().to_string(),
        reason: e.to_string(),
    })?;
    let crc = crc32fast::hash(&out[4..]);
    out[..4].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// Checks the crc32 of a stored value and returns its postcard bytes; a failure is
/// [`Error::Corrupt`] naming `tree` and `key`.
pub(super) fn checked_body<'a>(tree: &str, key: &str, bytes: &'a [u8]) -> Result<&'a [u8], Error> {
    let corrupt = |reason: String| Error::Corrupt {
        tree: tree.to_string(),
        key: key.to_string(),
        reason,
    };
    if bytes.len() < 4 {
        return Err(corrupt(format!(
            "value has {} bytes, shorter than its crc32",
            bytes.len()
        )));
    }
    let (crc_bytes, body) = bytes.split_at(4);
    let stored = u32::from_be_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    let actual = crc32fast::hash(body);
    if stored != actual {
        return Err(corrupt(format!(
            "crc32 mismatch: stored {stored:08x}, computed {actual:08x}"
        )));
    }
    Ok(body)
}

/// [`checked_body`] for the value of `slot` in a slot tree.
pub(super) fn check_crc<'a>(tree: &str, slot: Slot, bytes: &'a [u8]) -> Result<&'a [u8], Error> {
    checked_body(tree, &slot_name(slot), bytes)
}

/// Checks the crc32 and decodes; any failure is [`Error::Corrupt`] naming `tree` and `key`.
pub(super) fn decode<T: DeserializeOwned>(tree: &str, key: &str, bytes: &[u8]) -> Result<T, Error> {
    let corrupt = |reason: String| Error::Corrupt {
        tree: tree.to_string(),
        key: key.to_string(),
        reason,
    };
    let body = checked_body(tree, key, bytes)?;
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| corrupt(format!("postcard decode: {e}")))?;
    if !rest.is_empty() {
        return Err(corrupt(format!(
            "{} trailing bytes after the record",
            rest.len()
        )));
    }
    Ok(value)
}
