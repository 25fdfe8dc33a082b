//! Who may open calls: server API keys (`--api-key` / `TERN_API_KEYS`) and the short-lived
//! `ek_...` tokens they mint for browsers (`POST /v1/realtime/client_secrets`).
//!
//! Ephemeral tokens are stateless: `ek_` + base64url(JSON {exp, session}) + `.` + base64url(HMAC-
//! SHA256 tag), so any shard (or any node sharing `--token-secret`) verifies them without shared
//! state. Keys are compared through HMAC tags in constant time.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

/// Allowed token lifetimes, seconds.
pub const TTL_RANGE: std::ops::RangeInclusive<u64> = 10..=7200;
pub const DEFAULT_TTL: u64 = 600;

/// What a request presented.
#[derive(Debug, Clone, PartialEq)]
pub enum Credential {
    /// Auth is off: everyone may call.
    Open,
    ServerKey,
    /// An ephemeral token, with the session config it was minted with.
    Ephemeral {
        session: Option<Value>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing Authorization: Bearer header")]
    Missing,
    #[error("invalid API key or token")]
    Invalid,
    #[error("ephemeral token expired")]
    Expired,
}

pub struct Auth {
    /// HMAC tags of the server keys, never the keys themselves.
    key_tags: Vec<hmac::Tag>,
    key_mac: hmac::Key,
    token_mac: hmac::Key,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("keys", &self.key_tags.len())
            .finish()
    }
}

impl Auth {
    /// `token_secret` signs ephemeral tokens; give every node of a fleet the same one.
    pub fn new(keys: &[String], token_secret: &[u8]) -> Self {
        let key_mac = hmac::Key::new(hmac::HMAC_SHA256, &rand::random::<[u8; 32]>());
        Auth {
            key_tags: keys
                .iter()
                .filter(|k| !k.is_empty())
                .map(|k| hmac::sign(&key_mac, k.as_bytes()))
                .collect(),
            key_mac,
            token_mac: hmac::Key::new(hmac::HMAC_SHA256, token_secret),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.key_tags.is_empty()
    }

    /// Checks an `Authorization` header value at `now_unix` (seconds).
    pub fn check(&self, header: Option<&str>, now_unix: u64) -> Result<Credential, AuthError> {
        if !self.enabled() {
            return Ok(Credential::Open);
        }
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        if let Some(rest) = token.strip_prefix("ek_") {
            return self.check_token(rest, now_unix);
        }
        let tag = hmac::sign(&self.key_mac, token.as_bytes());
        // Compare against every key, without stopping early.
        let mut ok = false;
        for k in &self.key_tags {
            ok |=
                aws_lc_rs::constant_time::verify_slices_are_equal(k.as_ref(), tag.as_ref()).is_ok();
        }
        if ok {
            Ok(Credential::ServerKey)
        } else {
            Err(AuthError::Invalid)
        }
    }

    fn check_token(&self, rest: &str, now_unix: u64) -> Result<Credential, AuthError> {
        let (payload, tag) = rest.rsplit_once('.').ok_or(AuthError::Invalid)?;
        let tag = B64.decode(tag).map_err(|_| AuthError::Invalid)?;
        hmac::verify(&self.token_mac, payload.as_bytes(), &tag).map_err(|_| AuthError::Invalid)?;
        let body = B64.decode(payload).map_err(|_| AuthError::Invalid)?;
        let v: Value = serde_json::from_slice(&body).map_err(|_| AuthError::Invalid)?;
        let exp = v["exp"].as_u64().ok_or(AuthError::Invalid)?;
        if now_unix >= exp {
            return Err(AuthError::Expired);
        }
        let session = v.get("session").filter(|s| s.is_object()).cloned();
        Ok(Credential::Ephemeral { session })
    }

    /// Mints a token valid for `ttl` seconds from `now_unix`; returns it and its expiry.
    pub fn mint(&self, ttl: u64, session: Option<&Value>, now_unix: u64) -> (String, u64) {
        let exp = now_unix + ttl;
        let mut body = json!({ "exp": exp });
        if let Some(s) = session {
            body["session"] = s.clone();
        }
        let payload = B64.encode(body.to_string());
        let tag = hmac::sign(&self.token_mac, payload.as_bytes());
        (format!("ek_{payload}.{}", B64.encode(tag.as_ref())), exp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(&["sk-one".into(), "sk-two".into()], b"secret")
    }

    #[test]
    fn server_keys() {
        let a = auth();
        assert_eq!(a.check(Some("Bearer sk-two"), 0), Ok(Credential::ServerKey));
        assert_eq!(a.check(Some("Bearer sk-three"), 0), Err(AuthError::Invalid));
        assert_eq!(a.check(Some("Basic sk-one"), 0), Err(AuthError::Missing));
        assert_eq!(a.check(None, 0), Err(AuthError::Missing));
        let open = Auth::new(&[], b"x");
        assert_eq!(open.check(None, 0), Ok(Credential::Open));
    }

    #[test]
    fn tokens_expire_and_cannot_be_forged() {
        let a = auth();
        let cfg = json!({"audio": {"input": {"turn_detection": null}}});
        let (t, exp) = a.mint(600, Some(&cfg), 1000);
        assert_eq!(exp, 1600);
        assert!(t.starts_with("ek_"));
        let h = format!("Bearer {t}");
        assert_eq!(
            a.check(Some(&h), 1599),
            Ok(Credential::Ephemeral { session: Some(cfg) })
        );
        assert_eq!(a.check(Some(&h), 1600), Err(AuthError::Expired));
        // Another node's secret, a changed payload, garbage: all invalid.
        let other = Auth::new(&["sk-one".into()], b"other");
        assert_eq!(other.check(Some(&h), 1000), Err(AuthError::Invalid));
        let (payload, tag) = t.rsplit_once('.').unwrap();
        let forged_body = B64.encode(json!({"exp": 99_999}).to_string());
        let forged = format!("Bearer ek_{forged_body}.{tag}");
        assert_eq!(a.check(Some(&forged), 1000), Err(AuthError::Invalid));
        assert_eq!(
            a.check(Some(&format!("{h}x")), 1000),
            Err(AuthError::Invalid)
        );
        assert_eq!(a.check(Some("Bearer ek_"), 1000), Err(AuthError::Invalid));
        assert!(payload.len() > 10);
    }
}
