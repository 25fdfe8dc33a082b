//! A session's identity (`SessionId`, carried by the server ICE ufrag and the call id) and its
//! address where it lives now (`SessionKey`).
//!
//! Like a QUIC connection ID, the ufrag is issued by us, so every STUN request carries our own routing
//! information back: the node (room for a multi-host fleet), the shard that built the session, its slot
//! and generation in that shard's table, and a random part so that tags cannot be guessed.
//! The same tag, prefixed with `rtc_`, is the call id used by the HTTP API.
//!
//! The secret is sealed: its high half is a random nonce, its low half a keyed MAC over the rest
//! of the tag (`TagKey`). Any shard checks the seal before doing work for another (and a relay
//! holding the key can reject forged ufrags the same way); the owning shard's table still checks
//! the whole secret.

use std::fmt;

use aws_lc_rs::{constant_time, hmac};

/// Length of an encoded tag in hex characters.
pub const TAG_HEX_LEN: usize = 4 + 4 + 8 + 4 + 16;
/// Prefix of a call id.
pub const CALL_ID_PREFIX: &str = "rtc_";

/// Where a session lives now: a slot in its owning shard's table. A session keeps its
/// `SessionId` for life; its key changes when it is handed to another shard (the worker's
/// replies, the deadline queue and the table all use the key of the shard that owns it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub shard: u16,
    pub slot: u32,
    pub generation: u16,
}

/// A session's identity: where it was created, and the secret that proves the id is ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId {
    pub node: u16,
    pub shard: u16,
    pub slot: u32,
    pub generation: u16,
    pub secret: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("tag must be {TAG_HEX_LEN} hex characters, got {0}")]
    Length(usize),
    #[error("tag contains a character that is not lowercase hex")]
    NotHex,
    #[error("call id must start with {CALL_ID_PREFIX}")]
    Prefix,
}

/// The key that seals route tags.
#[derive(Clone)]
pub struct TagKey(hmac::Key);

impl fmt::Debug for TagKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TagKey(..)")
    }
}

impl TagKey {
    pub fn new(secret: &[u8]) -> Self {
        TagKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// A key for this process alone.
    pub fn random() -> Self {
        Self::new(&rand::random::<[u8; 32]>())
    }

    /// Eight bytes derived from the key for another purpose (`label`), such as the relay header's
    /// fleet token.
    pub fn derive(&self, label: &[u8]) -> [u8; 8] {
        let tag = hmac::sign(&self.0, label);
        let mut out = [0u8; 8];
        out.copy_from_slice(&tag.as_ref()[..8]);
        out
    }

    fn mac(&self, node: u16, shard: u16, slot: u32, generation: u16, nonce: u32) -> [u8; 4] {
        let mut msg = [0u8; 14];
        msg[0..2].copy_from_slice(&node.to_be_bytes());
        msg[2..4].copy_from_slice(&shard.to_be_bytes());
        msg[4..8].copy_from_slice(&slot.to_be_bytes());
        msg[8..10].copy_from_slice(&generation.to_be_bytes());
        msg[10..14].copy_from_slice(&nonce.to_be_bytes());
        let tag = hmac::sign(&self.0, &msg);
        let mut out = [0u8; 4];
        out.copy_from_slice(&tag.as_ref()[..4]);
        out
    }
}

impl SessionId {
    /// The session's key in its home shard's table (where it lives unless handed over).
    pub fn home_key(&self) -> SessionKey {
        SessionKey {
            shard: self.shard,
            slot: self.slot,
            generation: self.generation,
        }
    }

    /// A tag whose secret is `nonce` sealed with `key`.
    pub fn sealed(
        key: &TagKey,
        node: u16,
        shard: u16,
        slot: u32,
        generation: u16,
        nonce: u32,
    ) -> Self {
        let mac = u32::from_be_bytes(key.mac(node, shard, slot, generation, nonce));
        SessionId {
            node,
            shard,
            slot,
            generation,
            secret: (u64::from(nonce) << 32) | u64::from(mac),
        }
    }

    /// Whether `key` sealed this tag (constant time).
    pub fn is_sealed_by(&self, key: &TagKey) -> bool {
        let nonce = (self.secret >> 32) as u32;
        let want = key.mac(self.node, self.shard, self.slot, self.generation, nonce);
        let got = (self.secret as u32).to_be_bytes();
        constant_time::verify_slices_are_equal(&want, &got).is_ok()
    }

    /// Parses the hex form (a server ufrag). Never panics, whatever the input.
    pub fn parse(s: &str) -> Result<Self, TagError> {
        let b = s.as_bytes();
        if b.len() != TAG_HEX_LEN {
            return Err(TagError::Length(b.len()));
        }
        let node = hex_field(&b[0..4])? as u16;
        let shard = hex_field(&b[4..8])? as u16;
        let slot = hex_field(&b[8..16])? as u32;
        let generation = hex_field(&b[16..20])? as u16;
        let secret = hex_field(&b[20..36])?;
        Ok(SessionId {
            node,
            shard,
            slot,
            generation,
            secret,
        })
    }

    /// Parses a call id (`rtc_` followed by the hex tag).
    pub fn parse_call_id(s: &str) -> Result<Self, TagError> {
        let rest = s.strip_prefix(CALL_ID_PREFIX).ok_or(TagError::Prefix)?;
        Self::parse(rest)
    }

    /// The ICE ufrag form: 36 lowercase hex characters (all valid ice-chars).
    pub fn ufrag(&self) -> String {
        self.to_string()
    }

    pub fn call_id(&self) -> String {
        format!("{CALL_ID_PREFIX}{self}")
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}{:04x}{:08x}{:04x}{:016x}",
            self.node, self.shard, self.slot, self.generation, self.secret
        )
    }
}

fn hex_field(b: &[u8]) -> Result<u64, TagError> {
    let mut v: u64 = 0;
    for &c in b {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return Err(TagError::NotHex),
        };
        v = (v << 4) | u64::from(d);
    }
    Ok(v)
}

/// Extracts our (server) ufrag from a STUN USERNAME `server:client`.
pub fn server_ufrag(username: &str) -> &str {
    username.split(':').next().unwrap_or(username)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_example() {
        let t = SessionId {
            node: 7,
            shard: 3,
            slot: 0xdead,
            generation: 9,
            secret: 0x0123_4567_89ab_cdef,
        };
        let u = t.ufrag();
        assert_eq!(u.len(), TAG_HEX_LEN);
        assert_eq!(SessionId::parse(&u), Ok(t));
        assert_eq!(SessionId::parse_call_id(&t.call_id()), Ok(t));
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(SessionId::parse("abc"), Err(TagError::Length(3)));
        assert_eq!(
            SessionId::parse(&"g".repeat(TAG_HEX_LEN)),
            Err(TagError::NotHex)
        );
        assert_eq!(
            SessionId::parse(&"A".repeat(TAG_HEX_LEN)),
            Err(TagError::NotHex)
        );
        assert_eq!(SessionId::parse_call_id("call_x"), Err(TagError::Prefix));
        // multi-byte characters never split a field mid-character
        assert!(SessionId::parse(&"é".repeat(TAG_HEX_LEN / 2)).is_err());
    }

    #[test]
    fn seals_verify_and_forgeries_do_not() {
        let key = TagKey::new(b"k1");
        let t = SessionId::sealed(&key, 1, 2, 77, 3, 0xabcd_0123);
        assert!(t.is_sealed_by(&key));
        assert!(!t.is_sealed_by(&TagKey::new(b"k2")), "another key");
        for forged in [
            SessionId { shard: 3, ..t },
            SessionId { slot: 78, ..t },
            SessionId { generation: 4, ..t },
            SessionId { node: 0, ..t },
            SessionId {
                secret: t.secret ^ 1,
                ..t
            },
            SessionId {
                secret: t.secret ^ (1 << 40),
                ..t
            },
        ] {
            assert!(!forged.is_sealed_by(&key), "{forged:?}");
        }
        assert_eq!(
            SessionId::parse(&t.ufrag()).map(|p| p.is_sealed_by(&key)),
            Ok(true)
        );
    }

    #[test]
    fn username_split() {
        assert_eq!(server_ufrag("abc:def"), "abc");
        assert_eq!(server_ufrag("abc"), "abc");
    }

    proptest! {
        #[test]
        fn round_trip(node: u16, shard: u16, slot: u32, generation: u16, secret: u64) {
            let t = SessionId { node, shard, slot, generation, secret };
            prop_assert_eq!(SessionId::parse(&t.ufrag()), Ok(t));
        }

        #[test]
        fn parse_never_panics(s in ".{0,64}") {
            let _ = SessionId::parse(&s);
            let _ = SessionId::parse_call_id(&s);
        }
    }
}
