//! Signing as the Standard Webhooks specification says: the secret is
//! written `whsec_<base64>`, each delivery carries `webhook-id`,
//! `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">`, so that receivers verify with the
//! specification's libraries.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use blake2::digest::consts::U16;
use blake2::{Blake2b, Digest};
use ring::hmac;

use crate::node::feed::Event;

/// The prefix of a secret as the specification writes it.
const PREFIX: &str = "whsec_";

/// The shortest and longest secrets the specification allows, in bytes.
const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// A hook's signing key. Never shown: its `Debug` says only that it is one.
#[derive(Clone)]
pub struct Secret(hmac::Key);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// Reads a secret written `whsec_<base64 of 24 to 64 bytes>`.
    pub fn parse(text: &str) -> Result<Secret, String> {
        let encoded = text
            .strip_prefix(PREFIX)
            .ok_or_else(|| format!("a secret is written {PREFIX}<base64>"))?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|e| format!("the secret after {PREFIX} is not base64: {e}"))?;
        if !SECRET_BYTES.contains(&key.len()) {
            return Err(format!(
                "the secret is {} bytes; it must be {} to {}",
                key.len(),
                SECRET_BYTES.start(),
                SECRET_BYTES.end()
            ));
        }
        Ok(Secret(hmac::Key::new(hmac::HMAC_SHA256, &key)))
    }

    /// The `webhook-signature` header of a delivery.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(id.as_bytes());
        context.update(b".");
        context.update(timestamp.to_string().as_bytes());
        context.update(b".");
        context.update(body);
        format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
    }
}

/// The `webhook-id` of an event: a function of what it is about alone, so
/// that every node, every redelivery and every restart gives one event the
/// same id, and receivers that dedupe by id see it once.
pub fn message_id(event: &Event) -> String {
    let mut hasher = Blake2b::<U16>::new();
    hasher.update(event.key().as_bytes());
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::feed::EventType;

    /// Computed apart, with Python's `hmac` module:
    /// `base64.b64encode(hmac.new(base64.b64decode(key), b"msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{\"test\": 2432232314}", "sha256").digest())`.
    #[test]
    fn a_signature_is_the_specifications() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_bad_secret_is_refused_and_a_good_one_never_shown() {
        assert!(Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap_err()
            .contains("whsec_"));
        assert!(Secret::parse("whsec_not base64!")
            .unwrap_err()
            .contains("base64"));
        assert!(Secret::parse("whsec_c2hvcnQ=")
            .unwrap_err()
            .contains("5 bytes"));
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(format!("{secret:?}"), "Secret(…)");
    }

    #[test]
    fn one_event_has_one_id_wherever_it_is_derived() {
        let locations = ["site1".to_owned(), "site2".to_owned()];
        let here = Event::new(EventType::OperationComplete, "r", "q", &locations);
        let mut there = Event::new(EventType::OperationComplete, "r", "q", &[]);
        there.seq = 17;
        assert_eq!(message_id(&here), message_id(&there));
        let reply = Event::new(EventType::Reply, "r", "q", &locations);
        assert_ne!(message_id(&here), message_id(&reply));
        assert_eq!(message_id(&here).len(), 4 + 32);
    }
}
