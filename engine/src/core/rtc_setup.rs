//! Building server-side `Rtc`s cheaply and answering offers.
//!
//! str0m's aws-lc DTLS provider builds a fresh `dimpl::Config` per session, and building one runs
//! crypto self-tests (about 1 ms). `CachedDtlsProvider` builds the config once and shares it
//! (`Arc`), which makes a full server-side setup about 57x cheaper (field notes). The certificate is
//! generated once per process as well.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::crypto::dtls::DtlsVersion;
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, ProtocolVersion,
};
use str0m::crypto::{CryptoError, CryptoProvider};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, Pt};
use str0m::net::TcpType;
use str0m::{Candidate, IceCreds, Rtc, RtcConfig};

#[cfg(test)]
use super::session_id::SessionId;

/// How many `dimpl::Config`s this process built (one, normally).
static CONFIG_BUILDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// DTLS provider that reuses one `dimpl::Config` for every session.
///
/// str0m asks for a config with its MTU (`Some(1150)`) on every session; building one validates
/// the crypto provider with a key exchange round trip on every group (P-384 included), which was
/// about half of a handshake's CPU. The config for the first MTU asked for is kept; another MTU
/// (never seen from str0m 0.25) gets a fresh one.
#[derive(Debug)]
pub struct CachedDtlsProvider {
    config: OnceLock<(Option<usize>, Arc<dimpl::Config>)>,
}

impl CachedDtlsProvider {
    fn config(&self, mtu: Option<usize>) -> Result<Arc<dimpl::Config>, CryptoError> {
        let build = |mtu: Option<usize>| {
            CONFIG_BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // ICE verifies return routability before DTLS, so server cookies are redundant.
            let mut b = dimpl::Config::builder().use_server_cookie(false);
            if let Some(m) = mtu {
                b = b.mtu(m);
            }
            b.build()
                .map(Arc::new)
                .map_err(|e| CryptoError::Other(format!("dimpl config: {e}")))
        };
        if let Some((cached_mtu, c)) = self.config.get() {
            return if *cached_mtu == mtu {
                Ok(c.clone())
            } else {
                build(mtu)
            };
        }
        let c = build(mtu)?;
        let (cached_mtu, kept) = self.config.get_or_init(|| (mtu, c.clone()));
        Ok(if *cached_mtu == mtu { kept.clone() } else { c })
    }
}

impl DtlsProvider for CachedDtlsProvider {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        dimpl::certificate::generate_self_signed_certificate()
            .ok()
            .map(|c| DtlsCert {
                certificate: c.certificate,
                private_key: c.private_key,
            })
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let config = self.config(mtu)?;
        let cert = dimpl::DtlsCertificate {
            certificate: cert.certificate.clone(),
            private_key: cert.private_key.clone(),
        };
        let dtls = match version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            other => {
                return Err(CryptoError::Other(format!(
                    "unsupported DTLS version {other}"
                )))
            }
        };
        Ok(Box::new(CachedDtls(dtls)))
    }
}

struct CachedDtls(dimpl::Dtls);

impl std::fmt::Debug for CachedDtls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CachedDtls")
    }
}

impl DtlsInstance for CachedDtls {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active);
    }
    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }
    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.0.poll_output(buf)
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }
    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.0.send_application_data(data)
    }
    fn is_active(&self) -> bool {
        self.0.is_active()
    }
    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }
    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }
    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}

/// Process-wide crypto: the provider with the cached DTLS config, and one certificate.
#[derive(Debug, Clone)]
pub struct ServerCrypto {
    provider: Arc<CryptoProvider>,
    cert: DtlsCert,
}

static DTLS: CachedDtlsProvider = CachedDtlsProvider {
    config: OnceLock::new(),
};

impl ServerCrypto {
    pub fn new() -> Result<Self, CryptoError> {
        let mut provider = str0m::crypto::from_feature_flags();
        provider.dtls_provider = &DTLS;
        let cert = DTLS
            .generate_certificate()
            .ok_or_else(|| CryptoError::Other("cannot generate DTLS certificate".into()))?;
        let crypto = ServerCrypto {
            provider: Arc::new(provider),
            cert,
        };
        // Warm the cached config with the MTU str0m asks for, so no session pays for a build.
        let _ = crypto
            .server_config("warm".into(), "warmwarmwarmwarmwarmwarm".into(), false)
            .build(Instant::now());
        Ok(crypto)
    }

    /// An `RtcConfig` for a voice server: ICE-lite, Opus only, our certificate, no audio reordering
    /// in str0m (size 0: packets are handed over as they arrive, out-of-order ones included; our
    /// `ReorderBuffer` and decoder handle reordering and loss), and the given local ICE credentials.
    ///
    /// `opus_dtx`: the answer asks the client for Opus DTX (`usedtx=1`): a browser then sends
    /// almost nothing while its user is silent (a packet every 400 ms instead of 50 a second),
    /// which the uplink turns into silence without decoding.
    pub fn server_config(&self, ufrag: String, pass: String, opus_dtx: bool) -> RtcConfig {
        let mut config = Rtc::builder()
            .set_crypto_provider(self.provider.clone())
            .set_dtls_cert(self.cert.clone())
            .set_ice_lite(true)
            .clear_codecs();
        // str0m's own Opus entry (payload type 111, minptime 10, in-band FEC), plus DTX.
        config.codec_config().add_config(
            Pt::new_with_value(111),
            None,
            Codec::Opus,
            Frequency::FORTY_EIGHT_KHZ,
            Some(2),
            FormatParams {
                min_p_time: Some(10),
                use_inband_fec: Some(true),
                use_dtx: opus_dtx.then_some(true),
                ..Default::default()
            },
        );
        config
            // G.711 for gateways and clients without Opus; a client that offers Opus sends it
            // first, and the session answers in whatever codec the client sends.
            .enable_pcmu(true, false)
            .enable_pcma(true, false)
            .set_reordering_size_audio(0)
            .set_stats_interval(None)
            .set_local_ice_credentials(IceCreds { ufrag, pass })
    }

    /// The same crypto for a client peer (tests and the load generator).
    pub fn client_config(&self) -> RtcConfig {
        Rtc::builder()
            .set_crypto_provider(self.provider.clone())
            .set_dtls_cert(self.cert.clone())
    }
}

/// Why an offer was refused; each maps to a 4xx with this text as the reason.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    #[error("body is not valid UTF-8")]
    NotUtf8,
    #[error("body is not an SDP offer: {0}")]
    NotSdp(#[from] SdpProblem),
    #[error("offer has no audio m-line")]
    NoAudio,
    #[error("offer was rejected: {0}")]
    Rejected(#[from] str0m::RtcError),
    #[error("this shard holds its maximum of sessions (--max-sessions-per-shard)")]
    ShardFull,
    #[error("session limit reached ({0} sessions, --max-sessions)")]
    NodeFull(usize),
}

/// What is wrong with an offer's SDP text.
#[derive(Debug, thiserror::Error)]
pub enum SdpProblem {
    #[error("it must start with \"v=\"")]
    NoVersion,
    #[error("it is truncated (the last line has no line end)")]
    Truncated,
    #[error("{0}")]
    Syntax(#[from] str0m::error::SdpError),
    #[error("a=setup:{0} is not allowed in an offer (use actpass or active)")]
    SetupRole(String),
    #[error("m-line {0:?} has no valid port")]
    BadPort(String),
    #[error("the audio m-line offers no codec Tern speaks (opus/48000/2, PCMU/8000 or PCMA/8000)")]
    NoCodec,
    #[error(
        "the offer has {0} m-lines but no a=group:BUNDLE; Tern runs one transport per call (set \
         the client's bundle policy to max-bundle)"
    )]
    NoBundle(usize),
}

/// Validates an offer's text before str0m sees it.
pub fn parse_offer(body: &[u8]) -> Result<SdpOffer, OfferError> {
    let text = std::str::from_utf8(body).map_err(|_| OfferError::NotUtf8)?;
    if !text.trim_start().starts_with("v=") {
        return Err(SdpProblem::NoVersion.into());
    }
    if !text.ends_with('\n') {
        return Err(SdpProblem::Truncated.into());
    }
    let offer = SdpOffer::from_sdp_string(text).map_err(SdpProblem::from)?;
    if !text.lines().any(|l| l.trim_start().starts_with("m=audio")) {
        return Err(OfferError::NoAudio);
    }
    check_offer_lines(text)?;
    Ok(offer)
}

/// What str0m tolerates but a server must not answer: a DTLS role that would make Tern the
/// client, malformed m-lines, several m-lines without BUNDLE, and audio in no codec Tern speaks
/// (Opus, PCMU, PCMA).
fn check_offer_lines(text: &str) -> Result<(), SdpProblem> {
    let mut codec = false;
    let mut m_lines = 0;
    let mut bundle = false;
    for line in text.lines().map(str::trim) {
        if let Some(role) = line.strip_prefix("a=setup:") {
            if role != "actpass" && role != "active" {
                return Err(SdpProblem::SetupRole(role.to_string()));
            }
        } else if line.starts_with("a=group:BUNDLE") {
            bundle = true;
        } else if let Some(rest) = line.strip_prefix("m=") {
            m_lines += 1;
            let mut f = rest.split_whitespace();
            let (_kind, port) = (f.next(), f.next());
            if port
                .and_then(|p| p.split('/').next()?.parse::<u16>().ok())
                .is_none()
            {
                return Err(SdpProblem::BadPort(line.to_string()));
            }
        } else if let Some(map) = line.strip_prefix("a=rtpmap:") {
            let map = map.to_ascii_lowercase();
            codec |= [" opus/48000", " pcmu/8000", " pcma/8000"]
                .iter()
                .any(|c| map.contains(c));
        }
    }
    if !codec {
        return Err(SdpProblem::NoCodec);
    }
    if m_lines > 1 && !bundle {
        return Err(SdpProblem::NoBundle(m_lines));
    }
    Ok(())
}

/// Builds a server `Rtc` with our ICE credentials `ice` (the ufrag is the session id's), answers
/// `offer`; returns the Rtc and the answer SDP.
pub fn answer_offer(
    crypto: &ServerCrypto,
    now: Instant,
    ice: IceCreds,
    public: SocketAddr,
    public_tcp: Option<SocketAddr>,
    offer: SdpOffer,
    opus_dtx: bool,
) -> Result<(Rtc, String), OfferError> {
    let mut rtc = crypto
        .server_config(ice.ufrag, ice.pass, opus_dtx)
        .build(now);
    let cand = Candidate::host(public, "udp").map_err(str0m::RtcError::from)?;
    rtc.add_local_candidate(cand);
    if let Some(addr) = public_tcp {
        // A passive ICE-TCP candidate: clients behind UDP-blocking networks connect to it.
        let tcp = Candidate::builder()
            .tcp()
            .host(addr)
            .tcptype(TcpType::Passive)
            .build()
            .map_err(str0m::RtcError::from)?;
        rtc.add_local_candidate(tcp);
    }
    let answer = rtc.sdp_api().accept_offer(offer)?;
    Ok((rtc, answer.to_sdp_string()))
}

/// A 32-character ICE password (RFC 8839 asks for at least 128 bits; this is 190) from `rng`.
pub fn ice_password(rng: &mut impl rand::Rng) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..32)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(tag: SessionId) -> IceCreds {
        IceCreds {
            ufrag: tag.ufrag(),
            pass: "p".repeat(32),
        }
    }

    #[test]
    fn sessions_reuse_one_dtls_config() {
        let crypto = ServerCrypto::new().unwrap();
        let builds = CONFIG_BUILDS.load(std::sync::atomic::Ordering::Relaxed);
        assert!(builds >= 1, "warmed at start");
        for i in 0..3 {
            let _rtc = crypto
                .server_config(format!("u{i}"), "p".repeat(24), true)
                .build(Instant::now());
        }
        assert_eq!(
            CONFIG_BUILDS.load(std::sync::atomic::Ordering::Relaxed),
            builds,
            "no session builds (and so validates) a config of its own"
        );
    }

    fn answer(opus_dtx: bool) -> String {
        let crypto = ServerCrypto::new().unwrap();
        let now = Instant::now();
        let (_client, offer) =
            tern_testkit::peer::Client::new(now, "10.0.0.2:5000".parse().unwrap(), Vec::new());
        let tag = SessionId {
            node: 0,
            shard: 0,
            slot: 1,
            generation: 1,
            secret: 9,
        };
        let public = "10.0.0.1:3478".parse().unwrap();
        let offer = parse_offer(offer.as_bytes()).unwrap();
        answer_offer(&crypto, now, creds(tag), public, None, offer, opus_dtx)
            .unwrap()
            .1
    }

    #[test]
    fn the_answer_asks_for_opus_dtx_unless_told_not_to() {
        let fmtp = |sdp: &str| {
            sdp.lines()
                .find(|l| l.starts_with("a=fmtp:111"))
                .map(str::to_string)
        };
        let with = answer(true);
        let line = fmtp(&with).unwrap_or_else(|| panic!("no Opus fmtp in {with}"));
        assert!(line.contains("usedtx=1"), "{line}");
        assert!(line.contains("useinbandfec=1"), "{line}");
        let without = answer(false);
        assert!(!fmtp(&without).unwrap().contains("usedtx"), "{without}");
    }
}
