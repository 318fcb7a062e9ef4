//! One delivery: an event POSTed to a hook, signed, and what the receiver
//! answered. Redirects are not followed (a signed payload goes where the
//! operator said, nowhere else), and what is said of a failure never holds
//! the URL, whose path may be a credential.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

use crate::hooks::config::Hook;
use crate::hooks::signature::message_id;
use crate::node::feed::Event;
use crate::{ClientOptions, ReplicatorError};

/// The longest a receiver may take to answer.
const TIMEOUT: Duration = Duration::from_secs(15);

/// The waits before each new attempt of a delivery that failed: about 16
/// hours in all, after which the event is given up for that hook.
pub const RETRIES: [Duration; 10] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(2 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(2 * 60 * 60),
    Duration::from_secs(4 * 60 * 60),
    Duration::from_secs(8 * 60 * 60),
];

/// The client deliveries go through.
pub fn client(options: &ClientOptions) -> Result<reqwest::Client, ReplicatorError> {
    options
        .builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("cheops/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(ReplicatorError::Unavailable)
}

/// The body of a delivery: `{"type", "timestamp", "data"}`, the data being
/// the event as the feed gives it, without this node's numbering.
pub fn payload(event: &Event) -> Value {
    let mut data = serde_json::to_value(event).unwrap_or_default();
    if let Value::Object(fields) = &mut data {
        for node_only in ["seq", "type", "time"] {
            fields.remove(node_only);
        }
    }
    json!({
        "type": event.kind.as_str(),
        "timestamp": event.time,
        "data": data,
    })
}

/// POSTs `event` to `hook`; the receiver's status when it is a success,
/// else what went wrong.
pub async fn deliver(http: &reqwest::Client, hook: &Hook, event: &Event) -> Result<u16, String> {
    let body = serde_json::to_vec(&payload(event)).map_err(|e| e.to_string())?;
    let id = message_id(event);
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let signature = hook.secret.sign(&id, timestamp, &body);
    let answer = http
        .post(hook.url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = answer.status();
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        Err(format!("answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;
    use crate::hooks::config::parse;
    use crate::node::feed::EventType;
    use crate::testing::FakeHttp;

    /// The hook POSTing `reply` events to `url`.
    fn hook(url: &str) -> Hook {
        let text = format!(
            r#"[{{"events": ["reply"], "url": "{url}", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}]"#
        );
        parse(&text).unwrap().remove(0)
    }

    fn reply() -> Event {
        Event::new(EventType::Reply, "r", "q", &["site1".to_owned()])
    }

    /// A server answering every request with `status` (and the headers
    /// after it) and no body.
    async fn answering(status: String) -> FakeHttp {
        FakeHttp::start(move |_| (status.clone(), String::new())).await
    }

    /// The path of a hook's URL may be a credential: what is said of a
    /// failed delivery (logged, listed in `/health`) never holds it.
    #[tokio::test]
    async fn a_failure_never_tells_the_urls_path() {
        // A port nothing listens on any more: the connection is refused.
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap().port()
        };
        let http = client(&ClientOptions::default()).unwrap();
        let refused = hook(&format!("http://127.0.0.1:{port}/secret-path"));
        let failure = deliver(&http, &refused, &reply()).await.unwrap_err();
        assert!(!failure.contains("secret-path"), "{failure}");
        assert!(!failure.starts_with("answered"), "not connected: {failure}");

        let failing = answering("500 Internal Server Error".into()).await;
        let failing = hook(&format!("{}/secret-path", failing.url));
        let failure = deliver(&http, &failing, &reply()).await.unwrap_err();
        assert!(failure.contains("500"), "{failure}");
        assert!(!failure.contains("secret-path"), "{failure}");
    }

    /// Redirects are not followed: a signed payload goes where the
    /// operator said, nowhere else, and a redirect is a failed delivery.
    #[tokio::test]
    async fn a_redirect_is_a_failure_and_is_not_followed() {
        let elsewhere = answering("200 OK".into()).await;
        let redirecting = answering(format!(
            "307 Temporary Redirect\r\nlocation: {}/hook",
            elsewhere.url
        ))
        .await;
        let http = client(&ClientOptions::default()).unwrap();
        let hook = hook(&format!("{}/hook", redirecting.url));
        let answer = deliver(&http, &hook, &reply()).await;
        assert!(
            matches!(answer, Err(ref failure) if failure.contains("307")),
            "{answer:?}"
        );
        assert_eq!(redirecting.received().len(), 1);
        assert!(elsewhere.received().is_empty(), "the redirect was followed");
    }

    #[test]
    fn a_payload_names_the_event_the_resource_and_the_request() {
        let mut event = Event::new(
            EventType::Reply,
            "r",
            "q",
            &["site1".to_owned(), "site2".to_owned()],
        );
        event.seq = 12;
        event.site = Some("site2".into());
        let payload = payload(&event);
        assert_eq!(payload["type"], "reply");
        assert_eq!(payload["data"]["resource"], "r");
        assert_eq!(payload["data"]["request"], "q");
        assert_eq!(payload["data"]["site"], "site2");
        assert!(payload["timestamp"].is_string());
        assert!(payload["data"].get("seq").is_none(), "{payload}");
    }
}
