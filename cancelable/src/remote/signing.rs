//! Optional authentication of cluster messages: HMAC-SHA256 with a key
//! shared by the nodes of a cluster
//! ([`signing_key`](super::RemoteRegistryBuilder::signing_key)).
//!
//! A signed payload is `s:` + the MAC in 64 lowercase hex digits + `:` +
//! the JSON. The MAC covers a label of the payload's kind (`request`,
//! `ack`, `tombstone`, `snapshot`) and the JSON, so one kind cannot be
//! replayed as another; an ack carries the id of its request (unique to
//! the requesting process), so it answers that request only. A node with
//! a key ignores, and counts, unsigned and badly signed payloads; a node
//! without one reads both (and checks nothing).

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a payload is: part of what its MAC covers.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Request,
    Ack,
    Tombstone,
    Snapshot,
}

impl Kind {
    fn label(self) -> &'static [u8] {
        match self {
            Kind::Request => b"cancelable/v2/request\n",
            Kind::Ack => b"cancelable/v2/ack\n",
            Kind::Tombstone => b"cancelable/v2/tombstone\n",
            Kind::Snapshot => b"cancelable/v2/snapshot\n",
        }
    }
}

/// Why a payload was refused by a node with a key.
#[derive(Debug)]
pub(crate) enum Refused {
    Unsigned,
    BadSignature,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refused::Unsigned => "unsigned, and this node requires signed messages",
            Refused::BadSignature => "its signature does not match this node's key",
        })
    }
}

/// The cluster key, if any. Its `Debug` never shows the key.
#[derive(Clone, Default)]
pub(crate) struct Signer {
    key: Option<Arc<[u8]>>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.key {
            Some(_) => "Signer(<key>)",
            None => "Signer(none)",
        })
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl Signer {
    pub(crate) fn new(key: &[u8]) -> Signer {
        Signer {
            key: Some(key.into()),
        }
    }

    /// Whether this node has a key (and so checks signatures and replays).
    pub(crate) fn is_keyed(&self) -> bool {
        self.key.is_some()
    }

    fn mac(key: &[u8], kind: Kind, json: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(kind.label());
        mac.update(json);
        mac
    }

    /// `json` as sent: signed if there is a key.
    pub(crate) fn seal(&self, kind: Kind, json: String) -> String {
        let Some(key) = &self.key else { return json };
        let tag = Signer::mac(key, kind, json.as_bytes())
            .finalize()
            .into_bytes();
        let mut sealed = String::with_capacity(json.len() + 67);
        sealed.push_str("s:");
        for byte in tag {
            sealed.push(HEX[usize::from(byte >> 4)] as char);
            sealed.push(HEX[usize::from(byte & 15)] as char);
        }
        sealed.push(':');
        sealed.push_str(&json);
        sealed
    }

    /// The JSON of a received payload; `Err` if this node has a key and
    /// the payload is not signed with it.
    pub(crate) fn open<'a>(&self, kind: Kind, payload: &'a [u8]) -> Result<&'a [u8], Refused> {
        let signed = payload
            .strip_prefix(b"s:")
            .filter(|rest| rest.len() > 64 && rest[64] == b':')
            .map(|rest| (&rest[..64], &rest[65..]));
        match (&self.key, signed) {
            (None, Some((_, json))) => Ok(json),
            (None, None) => Ok(payload),
            (Some(_), None) => Err(Refused::Unsigned),
            (Some(key), Some((hex, json))) => {
                let mut tag = [0u8; 32];
                for (i, pair) in hex.chunks_exact(2).enumerate() {
                    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
                    match (digit(pair[0]), digit(pair[1])) {
                        (Some(high), Some(low)) => tag[i] = high << 4 | low,
                        _ => return Err(Refused::BadSignature),
                    }
                }
                Signer::mac(key, kind, json)
                    .verify_slice(&tag)
                    .map(|()| json)
                    .map_err(|_| Refused::BadSignature)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_payloads_open_with_the_key_only_and_only_as_their_kind() {
        let signer = Signer::new(b"k");
        let sealed = signer.seal(Kind::Request, "{\"v\":1}".to_owned());
        assert_eq!(
            signer.open(Kind::Request, sealed.as_bytes()).unwrap(),
            b"{\"v\":1}"
        );
        assert!(signer.open(Kind::Ack, sealed.as_bytes()).is_err());
        assert!(Signer::new(b"other")
            .open(Kind::Request, sealed.as_bytes())
            .is_err());
        assert!(signer.open(Kind::Request, b"{\"v\":1}").is_err());
        let unkeyed = Signer::default();
        assert_eq!(
            unkeyed.open(Kind::Request, sealed.as_bytes()).unwrap(),
            b"{\"v\":1}"
        );
        assert_eq!(unkeyed.seal(Kind::Ack, "{}".to_owned()), "{}");
        let mut tampered = sealed.into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = b'2';
        assert!(signer.open(Kind::Request, &tampered).is_err());
    }
}
