//! RFC 7983 demultiplexing by the first byte, done before any parsing so that garbage is counted
//! and dropped cheaply, and so the router knows which key (ufrag or source address) applies.

/// What a datagram claims to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    Stun,
    Dtls,
    Rtp,
    Rtcp,
    Unknown,
}

/// Classifies by RFC 7983 (and RFC 5761 for RTP vs RTCP by payload type).
pub fn classify(buf: &[u8]) -> DatagramKind {
    let Some(&b0) = buf.first() else {
        return DatagramKind::Unknown;
    };
    match b0 {
        0..=3 if buf.len() >= 20 => DatagramKind::Stun,
        20..=63 if buf.len() >= 13 => DatagramKind::Dtls,
        128..=191 if buf.len() >= 12 => match buf[1] & 0x7f {
            64..=95 => DatagramKind::Rtcp,
            _ => DatagramKind::Rtp,
        },
        _ => DatagramKind::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges() {
        assert_eq!(classify(&[]), DatagramKind::Unknown);
        assert_eq!(classify(&[0u8; 20]), DatagramKind::Stun);
        assert_eq!(classify(&[0u8; 19]), DatagramKind::Unknown);
        let mut dtls = [0u8; 13];
        dtls[0] = 22;
        assert_eq!(classify(&dtls), DatagramKind::Dtls);
        let mut rtp = [0u8; 12];
        rtp[0] = 0x80;
        rtp[1] = 111;
        assert_eq!(classify(&rtp), DatagramKind::Rtp);
        rtp[1] = 200 & 0x7f | 0x80;
        assert_eq!(classify(&rtp), DatagramKind::Rtcp);
        assert_eq!(classify(&[255u8; 40]), DatagramKind::Unknown);
    }

    proptest! {
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = classify(&buf);
        }
    }
}
