//! Signaling and metrics over HTTP/1.1, served by hyper on every shard (SO_REUSEPORT listeners).
//!
//! Routes follow OpenAI's Realtime WebRTC API so existing clients only change the base URL:
//! `POST /v1/realtime/calls` (SDP offer -> 201 + answer + Location), `DELETE /v1/realtime/calls/{id}`
//! and `POST /v1/realtime/calls/{id}/hangup`, plus `GET /healthz`, `GET /metrics` and the demo page
//! at `GET /`.
//! Errors are JSON `{"error":{"type","code","message"}}`.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use hyper::{Method, Request, Response, StatusCode};

use super::cors::CorsPolicy;
use super::mesh::ShardMsg;
use super::metrics::render;
use super::shard::SharedShard;
use crate::core::admission::Admission;
use crate::core::auth::{self, Auth, AuthError, Credential};
use crate::core::events::{ClientEvent, EventError};
use crate::core::multipart;
use crate::core::rate_limit::IpRateLimiter;
use crate::core::rtc_setup::OfferError;
use crate::core::session::SessionConfig;
use crate::core::session_id::SessionId;
use crate::core::session_object;

/// Limits and shared counters the HTTP side needs.
#[derive(Debug, Clone)]
pub struct HttpContext {
    pub max_sdp_bytes: usize,
    /// `--max-sessions`: the node's admission count (shared with the shard cores, which take
    /// the permits).
    pub admission: Admission,
    pub auth: Arc<Auth>,
    /// Per-address signaling rate (shared by the shards; never touched on the packet path).
    pub signaling_limit: Arc<std::sync::Mutex<IpRateLimiter>>,
    /// Set on the first SIGTERM: no new calls, existing ones go on.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Which browser origins may call (`--cors-origins`).
    pub cors: CorsPolicy,
    /// The server's session defaults (what a token's or a form's session is applied over).
    pub session_defaults: SessionConfig,
    /// The recorder's counters (`--record-dir`), for `/metrics`.
    pub recorder: Option<Arc<super::recorder::RecorderShared>>,
    /// The fleet thread's counters and owner lookups (`--fleet`).
    pub fleet: Option<(Arc<super::fleet::FleetShared>, super::fleet::FleetLookup)>,
    /// This node's id and the key that seals call ids (per-call requests for other nodes).
    pub node: u16,
    pub tag_key: crate::core::session_id::TagKey,
}

/// Seconds a client is told to wait before retrying a draining server (another node will do).
const DRAIN_RETRY_AFTER: &str = "5";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks the request's credentials; the error is the 401 to send.
#[allow(clippy::result_large_err)] // the error is the response itself, returned at once
fn authorize<B>(req: &Request<B>, ctx: &HttpContext) -> Result<Credential, Response<Body>> {
    let header = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    ctx.auth.check(header, unix_now()).map_err(|e| {
        let code = match e {
            AuthError::Missing => "missing_api_key",
            AuthError::Invalid => "invalid_api_key",
            AuthError::Expired => "token_expired",
        };
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            code,
            &e.to_string(),
        );
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer"),
        );
        r
    })
}

/// Most bytes of an oversized body read and thrown away so that the client, still sending, reads
/// the 413 instead of a reset connection; beyond this (or after `DRAIN_TIME`) the connection closes.
const DRAIN_MAX: usize = 1 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads a body of at most `limit` bytes; the error is the response to send.
#[allow(clippy::result_large_err)]
async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, Response<Body>> {
    let too_large = || {
        let mut r = error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "body_too_large",
            &format!("request body larger than {limit} bytes"),
        );
        r.headers_mut()
            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        r
    };
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let expects_continue = req
        .headers()
        .get(hyper::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if declared.is_some_and(|len| len > limit) && (expects_continue || declared > Some(DRAIN_MAX)) {
        // The client waits for 100 Continue (it has sent nothing), or the body is too big to
        // drain: answer now.
        return Err(too_large());
    }
    let mut body = req.into_body();
    let mut kept = bytes::BytesMut::new();
    let mut seen = 0usize;
    let read = async {
        while let Some(frame) = body.frame().await {
            let data = match frame.map(|f| f.into_data()) {
                Ok(Ok(d)) => d,
                Ok(Err(_)) => continue, // trailers
                Err(e) => return Err(e),
            };
            seen += data.len();
            if seen <= limit {
                kept.extend_from_slice(&data);
            } else if seen > DRAIN_MAX {
                break;
            }
        }
        Ok(true)
    };
    let timed_out = async {
        glommio::timer::sleep(DRAIN_TIME).await;
        Ok(false)
    };
    let r = futures_lite::future::or(read, timed_out).await;
    if seen > limit {
        return Err(too_large());
    }
    match r {
        Ok(true) => Ok(kept.freeze()),
        Ok(false) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            "body_timeout",
            &format!("the body did not arrive within {} s", DRAIN_TIME.as_secs()),
        )),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "bad_body",
            &format!("cannot read body: {e}"),
        )),
    }
}

/// `POST /v1/realtime/client_secrets`: a server key mints an ephemeral token for a browser.
async fn client_secret(req: Request<Incoming>, ctx: &HttpContext) -> Response<Body> {
    match authorize(&req, ctx) {
        Err(r) => return r,
        Ok(Credential::Ephemeral { .. }) => {
            return error(
                StatusCode::FORBIDDEN,
                "invalid_request_error",
                "forbidden",
                "an ephemeral token cannot mint tokens; use a server API key",
            )
        }
        Ok(_) => {}
    }
    let body = match read_body(req, 64 * 1024).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let v: serde_json::Value = if body.is_empty() {
        serde_json::json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "invalid_json",
                    "body must be a JSON object",
                )
            }
        }
    };
    let ttl = match &v["expires_after"]["seconds"] {
        serde_json::Value::Null => auth::DEFAULT_TTL,
        t => match t.as_u64().filter(|t| auth::TTL_RANGE.contains(t)) {
            Some(t) => t,
            None => {
                let msg = format!(
                    "expires_after.seconds must be an integer from {} to {}",
                    auth::TTL_RANGE.start(),
                    auth::TTL_RANGE.end()
                );
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "invalid_ttl",
                    &msg,
                );
            }
        },
    };
    let session = v.get("session").filter(|s| !s.is_null());
    let cfg = match session.map(|s| session_config_for(s, &ctx.session_defaults)) {
        None => ctx.session_defaults.clone(),
        Some(Ok(cfg)) => cfg,
        Some(Err(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_session",
                &e.to_string(),
            )
        }
    };
    let (value, expires_at) = ctx.auth.mint(ttl, session, unix_now());
    // The session as it will be: defaults, the request's fields, Tern's formats and turns.
    let mut effective = session_object::effective(
        &format!("sess_{:016x}", rand::random::<u64>()),
        cfg.turn,
        cfg.model_rate.hz(),
        &cfg.app,
    );
    effective["expires_at"] = expires_at.into();
    let out = serde_json::json!({
        "value": value,
        "expires_at": expires_at,
        "session": effective,
    });
    text(StatusCode::OK, "application/json", out.to_string())
}

/// The session config a token carries, applied on top of the server defaults (as a
/// `session.update` would be).
pub fn session_config_for(
    session: &serde_json::Value,
    base: &SessionConfig,
) -> Result<SessionConfig, EventError> {
    let update = serde_json::json!({ "type": "session.update", "session": session }).to_string();
    let defaults = base.turn.unwrap_or_default();
    match ClientEvent::parse(update.as_bytes(), defaults) {
        Ok(ClientEvent::SessionUpdate {
            turn_detection,
            app,
        }) => {
            let mut cfg = base.clone();
            if let Some(td) = turn_detection {
                cfg.turn = td;
            }
            session_object::merge(&mut cfg.app, app);
            if let Some(asked) = session_object::record_request(session, base.record_format)? {
                cfg.record = asked;
            }
            Ok(cfg)
        }
        Ok(_) => Ok(base.clone()),
        Err(e) => Err(e),
    }
}

type Body = Full<Bytes>;

/// Serves one accepted connection.
pub async fn serve_connection(
    stream: glommio::net::TcpStream,
    state: SharedShard,
    ctx: Rc<HttpContext>,
) {
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let io = HyperIo(stream);
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        let ctx = ctx.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(req, peer, state, ctx).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, svc)
        .await
    {
        tracing::debug!("http connection: {e}");
    }
}

/// The demo page: plain HTML and JS, embedded so the binary serves it with no files beside it.
const DEMO_PAGE: &str = include_str!("demo.html");

/// Builds the JSON error response.
pub fn error(status: StatusCode, kind: &str, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": { "type": kind, "code": code, "message": message } })
        .to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn text(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

/// Routes one request and adds the CORS headers its origin gets.
async fn handle(
    req: Request<Incoming>,
    peer: Option<std::net::IpAddr>,
    state: SharedShard,
    ctx: Rc<HttpContext>,
) -> Response<Body> {
    let origin = req
        .headers()
        .get(hyper::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if req.method() == Method::OPTIONS {
        return preflight(&req, origin.as_deref(), &ctx);
    }
    let mut r = route(req, peer, state, ctx.clone()).await;
    ctx.cors.decorate(origin.as_deref(), r.headers_mut());
    r
}

/// A CORS preflight: the allowed methods and headers for an allowed origin, 403 otherwise.
fn preflight<B>(req: &Request<B>, origin: Option<&str>, ctx: &HttpContext) -> Response<Body> {
    let allow_methods = HeaderValue::from_static("GET, POST, DELETE, OPTIONS");
    let Some(origin) = origin else {
        // Not a browser preflight: say what the server allows.
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NO_CONTENT;
        r.headers_mut().insert(hyper::header::ALLOW, allow_methods);
        return r;
    };
    let asked = req
        .headers()
        .get(hyper::header::ACCESS_CONTROL_REQUEST_HEADERS);
    match ctx.cors.preflight(origin, asked) {
        Some(headers) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r.headers_mut().extend(headers);
            r
        }
        None => {
            tracing::warn!(
                origin,
                "CORS preflight from an origin not in --cors-origins"
            );
            error(
                StatusCode::FORBIDDEN,
                "invalid_request_error",
                "origin_not_allowed",
                &format!("origin {origin} is not allowed (--cors-origins)"),
            )
        }
    }
}

async fn route(
    req: Request<Incoming>,
    peer: Option<std::net::IpAddr>,
    state: SharedShard,
    ctx: Rc<HttpContext>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    // Signaling that costs work (offers, tokens, hangups) is rate-limited per client address.
    if method == Method::POST || method == Method::DELETE {
        let allowed = match (peer, ctx.signaling_limit.lock()) {
            (Some(ip), Ok(mut l)) => l.check(ip, Instant::now()),
            _ => true,
        };
        if !allowed {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "invalid_request_error",
                "rate_limit_exceeded",
                "too many signaling requests from this address (--max-offers-per-ip)",
            );
            r.headers_mut()
                .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
    }
    match (method, path.as_str()) {
        (Method::POST, "/v1/realtime/calls") => create_call(req, state, &ctx).await,
        (Method::POST, "/v1/realtime/client_secrets") => client_secret(req, &ctx).await,
        (Method::GET, "/") | (Method::GET, "/index.html") => {
            text(StatusCode::OK, "text/html; charset=utf-8", DEMO_PAGE)
        }
        (Method::GET, "/healthz") => {
            // Liveness: this process answers. Draining is not unhealthy (restarting a draining
            // node would cut its calls); whether to send it calls is `/readyz`'s answer.
            let draining = state.borrow().stopping || ctx.draining.load(Ordering::Relaxed);
            let body = if draining {
                r#"{"status":"ok","draining":true}"#
            } else {
                r#"{"status":"ok","draining":false}"#
            };
            text(StatusCode::OK, "application/json", body)
        }
        (Method::GET, "/readyz") => {
            // Ready = this node takes new calls: not draining, and room left under
            // --max-sessions. A load balancer stops sending offers on 503.
            let draining = state.borrow().stopping || ctx.draining.load(Ordering::Relaxed);
            let full = ctx.admission.is_full();
            let (status, body) = match (draining, full) {
                (true, _) => (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"draining"}"#),
                (_, true) => (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":"full"}"#),
                _ => (StatusCode::OK, r#"{"status":"ready"}"#),
            };
            text(status, "application/json", body)
        }
        (Method::GET, "/metrics") => metrics(state, &ctx).await,
        (m, p) if p.starts_with("/v1/realtime/calls/") => {
            let rest = &p["/v1/realtime/calls/".len()..];
            let (id, action) = match rest.split_once('/') {
                Some((id, a)) => (id, Some(a)),
                None => (rest, None),
            };
            match (m, action) {
                (Method::DELETE, None) | (Method::POST, Some("hangup")) => {
                    if let Err(r) = authorize(&req, &ctx) {
                        return r;
                    }
                    if let Some(r) = forward_to_owner(&req, id, &ctx).await {
                        return r;
                    }
                    hangup(id, state).await
                }
                // OpenAI's SIP call controls: a WebRTC call was accepted by its SDP answer.
                (Method::POST, Some(a @ ("accept" | "reject" | "refer"))) => {
                    if let Err(r) = authorize(&req, &ctx) {
                        return r;
                    }
                    error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        "unsupported_for_webrtc",
                        &format!(
                            "calls.{a} applies to incoming SIP calls; {id} is a WebRTC call (answered by its SDP, ended with DELETE or /hangup)"
                        ),
                    )
                }
                _ => error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "invalid_request_error",
                    "method_not_allowed",
                    "use DELETE on the call or POST .../hangup",
                ),
            }
        }
        (_, "/v1/realtime/calls") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            "use POST with an SDP offer",
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "not_found",
            &format!("no route for {path}"),
        ),
    }
}

async fn create_call(
    req: Request<Incoming>,
    state: SharedShard,
    ctx: &HttpContext,
) -> Response<Body> {
    let credential = match authorize(&req, ctx) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let ctype = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mime = ctype
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/sdp" && mime != "multipart/form-data" {
        let msg = format!(
            "Content-Type must be application/sdp or multipart/form-data (sdp and session parts), got {ctype:?}"
        );
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            "unsupported_media_type",
            &msg,
        );
    }
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let forwarded = req.headers().contains_key(super::fleet_http::FORWARDED);
    let body = match read_body(req, ctx.max_sdp_bytes).await {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => return too_large(ctx),
        Err(r) => return r,
    };
    // In a fleet, the offer may be better answered by another node (an offer a node forwarded is
    // answered where it lands).
    if !forwarded {
        if let Some(r) = place_offer(&state, ctx, &ctype, auth.as_deref(), &body).await {
            return r;
        }
    }
    // The offer, and the session config: server defaults, then a token's session, then the form's.
    let mut config = match &credential {
        Credential::Ephemeral {
            session: Some(session),
        } => match session_config_for(session, &ctx.session_defaults) {
            Ok(cfg) => cfg,
            Err(e) => return invalid_session(&e.to_string()),
        },
        _ => ctx.session_defaults.clone(),
    };
    let offer = if mime == "multipart/form-data" {
        let form =
            match multipart::boundary(&ctype).and_then(|b| multipart::parse_call_form(&body, b)) {
                Ok(f) => f,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request_error",
                        "invalid_form",
                        &e.to_string(),
                    )
                }
            };
        if let Some(session) = form.session {
            let parsed = serde_json::from_slice::<serde_json::Value>(session)
                .map_err(|e| EventError::Invalid {
                    field: "session",
                    reason: format!("the form's session part is not JSON: {e}"),
                })
                .and_then(|v| session_config_for(&v, &config));
            match parsed {
                // Recording is the server's choice: a browser's form under a token keeps the
                // token's.
                Ok(cfg) if matches!(credential, Credential::Ephemeral { .. }) => {
                    config = SessionConfig {
                        record: config.record,
                        ..cfg
                    }
                }
                Ok(cfg) => config = cfg,
                Err(e) => return invalid_session(&e.to_string()),
            }
        }
        body.slice_ref(form.sdp)
    } else {
        body
    };
    let body = offer;
    if state.borrow().stopping || ctx.draining.load(Ordering::Relaxed) {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "draining",
            "server is draining for shutdown; retry on another node",
        );
        r.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            HeaderValue::from_static(DRAIN_RETRY_AFTER),
        );
        return r;
    }
    // Admission (`--max-sessions`) is the shard core's first step: its permit lives with the
    // session and is given back when the session is dropped, whatever happens next.
    let now = Instant::now();
    let result = {
        let mut s = state.borrow_mut();
        let r = s.core.accept_offer_with(now, &body, config);
        s.finish_step(now);
        r
    };
    match result {
        Ok((tag, answer)) => {
            if let Some(f) = &state.borrow().io.fleet {
                f.push(super::fleet::FleetEvent::CallStarted(tag));
            }
            let mut r = text(StatusCode::CREATED, "application/sdp", answer);
            let loc = format!("/v1/realtime/calls/{}", tag.call_id());
            if let Ok(v) = HeaderValue::from_str(&loc) {
                r.headers_mut().insert(LOCATION, v);
            }
            r
        }
        Err(e @ OfferError::NodeFull(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "session_limit",
            &e.to_string(),
        ),
        Err(OfferError::ShardFull) => {
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "shard_session_limit",
                &OfferError::ShardFull.to_string(),
            );
            r.headers_mut()
                .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        Err(e) => {
            let code = match e {
                OfferError::NotUtf8 | OfferError::NotSdp(_) => "invalid_offer",
                OfferError::NoAudio => "no_audio",
                OfferError::Rejected(_) | OfferError::ShardFull | OfferError::NodeFull(_) => {
                    "offer_rejected"
                }
            };
            error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                code,
                &e.to_string(),
            )
        }
    }
}

fn invalid_session(reason: &str) -> Response<Body> {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "invalid_session",
        reason,
    )
}

fn too_large(ctx: &HttpContext) -> Response<Body> {
    let msg = format!("SDP offer larger than {} bytes", ctx.max_sdp_bytes);
    let mut r = error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        "body_too_large",
        &msg,
    );
    // The rest of an oversized body is not read: the connection cannot be reused.
    r.headers_mut()
        .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Placement: when this node is draining, full or clearly busier than the less loaded of two
/// sampled nodes, the offer goes to that node and its answer (SDP, `Location`) comes back as is.
/// `None`: answer here (also when the hand-over fails, counted).
async fn place_offer(
    state: &SharedShard,
    ctx: &HttpContext,
    ctype: &str,
    auth: Option<&str>,
    body: &Bytes,
) -> Option<Response<Body>> {
    let (shared, lookup) = ctx.fleet.as_ref()?;
    let admitted = ctx.admission.admitted();
    let me = crate::core::fleet::LocalLoad {
        node: ctx.node,
        draining: state.borrow().stopping || ctx.draining.load(Ordering::Relaxed),
        full: ctx.admission.is_full(),
        load: admitted as f64 / ctx.admission.max().max(1) as f64,
    };
    let Ok(Some((to, why))) = lookup.place(me).await else {
        shared.placed_local.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let path = "/v1/realtime/calls";
    match super::fleet_http::request(to, "POST", path, auth, Some((ctype, body))).await {
        Ok(answer) => {
            shared.placed_away[why as usize].fetch_add(1, Ordering::Relaxed);
            let mut r = Response::new(Full::new(Bytes::from(answer.body)));
            *r.status_mut() =
                StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
            for (name, value) in [
                (CONTENT_TYPE, answer.content_type),
                (LOCATION, answer.location),
            ] {
                if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                    r.headers_mut().insert(name, v);
                }
            }
            Some(r)
        }
        Err(e) => {
            shared.place_failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(to = %to, reason = why.label(), "fleet: handing an offer over failed, answering here: {e}");
            None
        }
    }
}

/// A per-call request for a call of another node of the fleet goes to that node (over its
/// internal address) and its answer comes back as is. `None`: the call is this node's (or there is
/// no fleet): handle it here.
async fn forward_to_owner(
    req: &Request<Incoming>,
    id: &str,
    ctx: &HttpContext,
) -> Option<Response<Body>> {
    let (_, lookup) = ctx.fleet.as_ref()?;
    let tag = SessionId::parse_call_id(id).ok()?;
    if tag.node == ctx.node {
        return None;
    }
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "call_not_found",
            &format!("no call {id:?}"),
        )
    };
    // A forged or foreign call id costs no lookup, and no other node anything.
    if !tag.is_sealed_by(&ctx.tag_key) {
        return Some(not_found());
    }
    let owner = match lookup.owner(id).await {
        Ok(Some(addr)) => addr,
        Ok(None) => return Some(not_found()),
        Err(e) => {
            return Some(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "fleet_unavailable",
                &format!("call {id:?} lives on node {}: {e}", tag.node),
            ))
        }
    };
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let path = req.uri().path();
    match super::fleet_http::request(owner, req.method().as_str(), path, auth, None).await {
        Ok(answer) => {
            let mut r = Response::new(Full::new(Bytes::from(answer.body)));
            *r.status_mut() =
                StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
            if let Some(v) = answer
                .content_type
                .and_then(|c| HeaderValue::from_str(&c).ok())
            {
                r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
            }
            Some(r)
        }
        Err(e) => {
            tracing::warn!(call = id, owner = %owner, "fleet: forwarding to the call's node failed: {e}");
            Some(error(
                StatusCode::BAD_GATEWAY,
                "server_error",
                "owner_unreachable",
                &format!(
                    "call {id:?} lives on node {} ({owner}), which did not answer: {e}",
                    tag.node
                ),
            ))
        }
    }
}

async fn hangup(id: &str, state: SharedShard) -> Response<Body> {
    let Ok(tag) = SessionId::parse_call_id(id) else {
        return error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "call_not_found",
            &format!("no call {id:?}"),
        );
    };
    let (tx, rx) = futures_channel::oneshot::channel();
    state.borrow_mut().hangup(tag, 0, tx);
    let now = Instant::now();
    state.borrow_mut().finish_step(now);
    match rx.await {
        Ok(true) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "call_not_found",
            &format!("no call {id:?}"),
        ),
    }
}

async fn metrics(state: SharedShard, ctx: &HttpContext) -> Response<Body> {
    let (mine, mesh, me) = {
        let s = state.borrow();
        (s.snapshot(), s.mesh.clone(), s.core.id)
    };
    let mut waits = Vec::new();
    for other in 0..mesh.len() as u16 {
        if other == me {
            continue;
        }
        let (tx, rx) = futures_channel::oneshot::channel();
        if mesh.send(other, ShardMsg::Snapshot { reply: tx }).is_ok() {
            waits.push(rx);
        }
    }
    let mut snaps = vec![mine];
    for rx in waits {
        if let Ok(s) = rx.await {
            snaps.push(s);
        }
    }
    snaps.sort_by_key(|s| s.shard);
    let mut body = render(&snaps, ctx.admission.admitted(), ctx.admission.max());
    if let Some(r) = &ctx.recorder {
        r.render(&mut body);
    }
    if let Some((f, _)) = &ctx.fleet {
        f.render(&mut body);
    }
    text(StatusCode::OK, "text/plain; version=0.0.4", body)
}

/// Adapts glommio's futures-io stream to hyper's IO traits.
struct HyperIo(glommio::net::TcpStream);

impl hyper::rt::Read for HyperIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // SAFETY: the slice is initialised (zeroed) before it is exposed as &mut [u8], and
        // `advance` is called with the number of bytes the read wrote.
        let n = unsafe {
            let dst = buf.as_mut();
            for b in dst.iter_mut() {
                b.write(0);
            }
            let slice = &mut *(dst as *mut [MaybeUninit<u8>] as *mut [u8]);
            match Pin::new(&mut self.0).poll_read(cx, slice) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        };
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(()))
    }
}

impl hyper::rt::Write for HyperIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}
