//! Cross-origin access for browser apps on their own origin (OpenAI's SDKs run there and call the
//! API with `Authorization` and SDK headers, so every call is preflighted).
//!
//! The policy: `--cors-origins` lists the origins allowed (or `*`). Unset, every origin is allowed
//! while auth is off (the server is open anyway) and none when auth is on, so a keyed server does
//! not hand its signaling to any page without an explicit choice. `Authorization` is not a CORS
//! credential (cookies are), so `*` works for bearer tokens; allowed request headers are echoed
//! from the preflight because `*` in `Access-Control-Allow-Headers` never covers `Authorization`.

use hyper::header::{HeaderMap, HeaderValue};

/// Which origins may call the API from a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsPolicy {
    /// Any origin (`Access-Control-Allow-Origin: *`).
    Any,
    /// Exactly these origins (scheme://host[:port], compared case-insensitively).
    List(Vec<String>),
}

impl CorsPolicy {
    /// The policy from `--cors-origins` (`None`: not given) and whether auth is on.
    pub fn from_flag(origins: Option<&[String]>, auth_on: bool) -> Self {
        match origins {
            Some(list) if list.iter().any(|o| o == "*") => CorsPolicy::Any,
            Some(list) => CorsPolicy::List(
                list.iter()
                    .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                    .collect(),
            ),
            None if auth_on => CorsPolicy::List(Vec::new()),
            None => CorsPolicy::Any,
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if it is allowed.
    pub fn allow(&self, origin: &str) -> Option<HeaderValue> {
        match self {
            CorsPolicy::Any => Some(HeaderValue::from_static("*")),
            CorsPolicy::List(list) => {
                let o = origin.to_ascii_lowercase();
                list.contains(&o)
                    .then(|| HeaderValue::from_str(origin).ok())
                    .flatten()
            }
        }
    }

    /// Adds the headers of an actual (non-preflight) response to a request from `origin`.
    pub fn decorate(&self, origin: Option<&str>, headers: &mut HeaderMap) {
        let Some(allow) = origin.and_then(|o| self.allow(o)) else {
            return;
        };
        headers.insert("access-control-allow-origin", allow);
        // The SDKs read the call id from Location; a cross-origin page sees it only when exposed.
        headers.insert(
            "access-control-expose-headers",
            HeaderValue::from_static("Location"),
        );
        if *self != CorsPolicy::Any {
            headers.insert("vary", HeaderValue::from_static("Origin"));
        }
    }

    /// Headers of a preflight answer, or `None` when the origin is not allowed.
    pub fn preflight(
        &self,
        origin: &str,
        request_headers: Option<&HeaderValue>,
    ) -> Option<HeaderMap> {
        let allow = self.allow(origin)?;
        let mut h = HeaderMap::new();
        h.insert("access-control-allow-origin", allow);
        h.insert(
            "access-control-allow-methods",
            HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
        );
        let asked = request_headers
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("authorization, content-type"));
        h.insert("access-control-allow-headers", asked);
        h.insert(
            "access-control-expose-headers",
            HeaderValue::from_static("Location"),
        );
        h.insert("access-control-max-age", HeaderValue::from_static("600"));
        h.insert(
            "vary",
            HeaderValue::from_static("Origin, Access-Control-Request-Headers"),
        );
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_open_without_auth_and_closed_with_it() {
        assert_eq!(CorsPolicy::from_flag(None, false), CorsPolicy::Any);
        let keyed = CorsPolicy::from_flag(None, true);
        assert!(keyed.allow("https://app.example").is_none());
    }

    #[test]
    fn a_list_allows_only_its_origins_and_echoes_them() {
        let p = CorsPolicy::from_flag(Some(&["https://App.example/".to_string()]), true);
        assert_eq!(
            p.allow("https://app.example").unwrap(),
            HeaderValue::from_static("https://app.example")
        );
        assert!(p.allow("https://evil.example").is_none());
        let mut h = HeaderMap::new();
        p.decorate(Some("https://app.example"), &mut h);
        assert_eq!(h["access-control-expose-headers"], "Location");
        assert_eq!(h["vary"], "Origin");
    }

    #[test]
    fn preflight_echoes_the_asked_headers() {
        let asked = HeaderValue::from_static("authorization,content-type,x-openai-agents-sdk");
        let h = CorsPolicy::Any
            .preflight("http://localhost:5173", Some(&asked))
            .unwrap();
        assert_eq!(h["access-control-allow-headers"], asked);
        assert_eq!(h["access-control-allow-origin"], "*");
        assert!(h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("DELETE"));
    }
}
