use std::path::PathBuf;

use super::*;
use crate::db::couch::CouchClient;
use crate::hooks::config::parse;
use crate::metrics::Metrics;
use crate::node::feed::Feed;
use crate::node::journal::Journal;

/// Events appended: more than the feed holds in memory, so that reading
/// from the first ones goes to its file.
const EVENTS: usize = 1_500;

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cheops-hooks-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Deliveries of one hook that wants `reply` events only, over a feed of
/// `EVENTS` operations kept in `dir`; none of them is delivered, so that
/// reading the feed is all a step does.
async fn deliveries(dir: &std::path::Path) -> Deliveries {
    let feed = Feed::open(dir, "site1").unwrap();
    for i in 0..EVENTS {
        let event = Event::new(EventType::Operation, "a", &format!("r{i}"), &[]);
        feed.append(event).unwrap();
    }
    feed.sync().await.unwrap();
    let couch = CouchClient::new("http://127.0.0.1:9/cheops").unwrap();
    let journal = Journal::open(dir, "site1").unwrap();
    let ctx = Context::new("site1".into(), couch, Metrics::default(), journal, feed);
    let hooks = parse(
        r#"[{"name": "replies", "events": ["reply"], "url": "http://127.0.0.1:9/",
             "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}]"#,
    )
    .unwrap();
    let (_, hooks) = watch::channel(Arc::new(hooks));
    Deliveries::new(
        ctx,
        reqwest::Client::new(),
        hooks,
        Positions::open(dir, "site1"),
        Board::default(),
        Duration::from_secs(1),
    )
}

/// A feed file that cannot be read holds events all the same: the hook
/// reads it again a second later from where it stood, never taking the
/// events for lost (which would move it past them).
#[tokio::test]
async fn a_feed_file_that_cannot_be_read_is_read_again_not_taken_for_lost() {
    let dir = dir("unreadable");
    let deliveries = deliveries(&dir).await;
    let durable = deliveries.ctx.feed.durable();
    assert_eq!(durable, EVENTS as u64);
    let mut lane = Lane {
        hook: Arc::clone(&deliveries.lanes[0].hook),
        kind: Kind::Now,
        done: 1,
        attempts: 0,
        not_before: None,
    };

    let file = dir.join("changes-site1.jsonl");
    let aside = dir.join("aside");
    std::fs::rename(&file, &aside).unwrap();
    let asked = Instant::now();
    match deliveries.step(&mut lane, durable).await {
        Step::Until(at) => assert!(at >= asked + FEED_RETRY, "read again after {FEED_RETRY:?}"),
        _ => panic!("a feed that cannot be read is waited for"),
    }
    assert_eq!(lane.done, 1, "no event passed by");
    // Within the wait, nothing is read.
    assert!(matches!(
        deliveries.step(&mut lane, durable).await,
        Step::Until(_)
    ));

    std::fs::rename(&aside, &file).unwrap();
    lane.not_before = None;
    assert!(matches!(
        deliveries.step(&mut lane, durable).await,
        Step::Moved
    ));
    assert_eq!(
        lane.done,
        1 + PAGE as u64,
        "the hook went on from where it stood"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
