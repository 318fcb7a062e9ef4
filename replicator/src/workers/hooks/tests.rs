use std::path::Path;

use serde_json::{json, Value};

use super::*;
use crate::db::couch::CouchClient;
use crate::hooks::config::parse;
use crate::hooks::delivery::client;
use crate::hooks::duty::duty;
use crate::metrics::{Metrics, Snapshot};
use crate::node::feed::{Feed, RETAIN};
use crate::node::journal::Journal;
use crate::testing::{FakeHttp, Scratch};
use crate::ClientOptions;

/// Events appended: more than the feed holds in memory, so that reading
/// from the first ones goes to its file.
const EVENTS: usize = 1_500;

/// The hooks' secret.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Where nothing listens: a CouchDB or a receiver never asked.
const NOWHERE: &str = "http://127.0.0.1:9/cheops";

/// The hook of these tests.
const HOOK: &str = "test";

/// A fresh directory, removed when the test ends (the hooks' other tests
/// have theirs).
fn dir(name: &str) -> Scratch {
    Scratch::new(&format!("hook-deliveries-{name}"))
}

/// A hooks file of one hook, [`HOOK`], wanting `events` (JSON strings,
/// comma-separated) POSTed to `url`.
fn hooks_file(events: &str, url: &str) -> String {
    format!(r#"[{{"name": "{HOOK}", "events": [{events}], "url": "{url}", "secret": "{SECRET}"}}]"#)
}

/// The `operation` event of `request`, accepted by site1: site1 delivers
/// it at once.
fn accepted(request: &str) -> Event {
    let locations = ["site1".to_owned(), "site2".to_owned()];
    Event::accepted("a", request, &locations, "t".into(), Some("site1".into()))
}

/// Deliveries by site1 of the hooks of `hooks` (a hooks file's text), over
/// a feed kept in `dir` holding `events`, made durable; receipts are read
/// and written in the CouchDB at `couch`. Deliveries go through the
/// client the daemon uses.
async fn deliveries_of(
    dir: &Path,
    hooks: &str,
    couch: &str,
    events: impl IntoIterator<Item = Event>,
) -> Deliveries {
    let feed = Feed::open(dir, "site1").unwrap();
    for event in events {
        feed.append(event).unwrap();
    }
    feed.sync().await.unwrap();
    let couch = CouchClient::new(couch).unwrap();
    let journal = Journal::open(dir, "site1").unwrap();
    let ctx = Context::new("site1".into(), couch, Metrics::default(), journal, feed);
    let (_, hooks) = watch::channel(Arc::new(parse(hooks).unwrap()));
    Deliveries::new(
        ctx,
        client(&ClientOptions::default()).unwrap(),
        hooks,
        Positions::open(dir, "site1"),
        Board::default(),
        Duration::from_secs(1),
    )
}

/// Deliveries of one hook that wants `reply` events only, over a feed of
/// `EVENTS` operations kept in `dir`; none of them is delivered, so that
/// reading the feed is all a step does.
async fn deliveries(dir: &Path) -> Deliveries {
    let events = (0..EVENTS).map(|i| Event::new(EventType::Operation, "a", &format!("r{i}"), &[]));
    deliveries_of(
        dir,
        &hooks_file(r#""reply""#, "http://127.0.0.1:9/"),
        NOWHERE,
        events,
    )
    .await
}

/// A lane of `kind` of the (first) hook of `deliveries`, done with `done`.
fn lane(deliveries: &Deliveries, kind: Kind, done: u64) -> Lane {
    Lane {
        hook: Arc::clone(&deliveries.lanes[0].hook),
        kind,
        done,
        attempts: 0,
        not_before: None,
    }
}

/// How many deliveries of [`HOOK`] ended with `result`, as `/metrics` says.
fn counted(deliveries: &Deliveries, result: &str) -> Option<f64> {
    let text = deliveries.ctx.metrics.render(Snapshot::default());
    let series = format!(r#"cheops_hook_deliveries_total{{hook="{HOOK}",result="{result}"}} "#);
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map(|value| value.parse().unwrap())
}

/// A receiver answering every delivery with `status`.
async fn receiver(status: &'static str) -> FakeHttp {
    FakeHttp::start(move |_| (status.to_owned(), String::new())).await
}

/// A CouchDB holding no receipt (and writing those it is given), or, when
/// `receipt`, holding one for every completion.
async fn couch(receipt: bool) -> FakeHttp {
    FakeHttp::start(move |request| match request.method.as_str() {
        "GET" if receipt => {
            let id = request.path.trim_start_matches("/cheops/");
            let doc = json!({"_id": id, "_rev": "1-a", "Type": "HOOK_RECEIPT", "Hook": HOOK, "Site": "site2"});
            ("200 OK".to_owned(), doc.to_string())
        }
        "GET" => (
            "404 Not Found".to_owned(),
            json!({"error": "not_found", "reason": "missing"}).to_string(),
        ),
        _ => (
            "201 Created".to_owned(),
            json!({"ok": true, "id": "x", "rev": "1-a"}).to_string(),
        ),
    })
    .await
}

/// The completion of a request of resource `a` of `sites` (site1 first)
/// that site1 owes in turn `turn`: another site delivers it first.
fn completion(sites: usize, turn: u32) -> Event {
    let locations: Vec<String> = (1..=sites).map(|i| format!("site{i}")).collect();
    (0..)
        .map(|i| {
            Event::new(
                EventType::OperationComplete,
                "a",
                &format!("q{i}"),
                &locations,
            )
        })
        .find(|event| duty(event, "site1") == Duty::StandBy(turn))
        .unwrap()
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
    let mut lane = lane(&deliveries, Kind::Now, 1);

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
}

/// A site standing by for a completion waits `--hook-standby` per turn
/// before it even asks for a receipt: the earlier sites deliver it first,
/// and the receiver hears of it once when the sites are connected.
#[tokio::test]
async fn a_site_standing_by_waits_its_turn_before_asking_for_a_receipt() {
    let dir = dir("turn");
    let (couch, receiver) = (couch(false).await, receiver("200 OK").await);
    let hooks = hooks_file(r#""operation-complete""#, &receiver.url);
    let url = format!("{}/cheops", couch.url);
    // Third in turn: two grace periods (of 1 s) after its completion.
    let deliveries = deliveries_of(&dir, &hooks, &url, [completion(3, 2)]).await;
    let mut lane = lane(&deliveries, Kind::StandBy, 0);

    let step = deliveries.step(&mut lane, 1).await;
    let asked = Instant::now();
    match step {
        Step::Until(at) => assert!(
            at > asked + deliveries.grace && at <= asked + 2 * deliveries.grace,
            "two turns of 1 s from the completion, {:?} from now",
            at - asked
        ),
        _ => panic!("the completion is waited for"),
    }
    assert!(matches!(
        deliveries.step(&mut lane, 1).await,
        Step::Until(_)
    ));
    assert_eq!(lane.done, 0, "the completion is still owed");
    assert!(couch.received().is_empty(), "no receipt asked for yet");
    assert!(receiver.received().is_empty(), "nothing delivered yet");
}

/// A completion the first site owes is still delivered when that site is
/// down for good: when the turn of this site comes and no receipt reached
/// it, it delivers the completion, once, and writes the receipt that tells
/// the sites after it. A receipt found means another site delivered it:
/// nothing is sent, and the lane goes on.
#[tokio::test]
async fn a_completion_is_delivered_by_the_site_standing_by_when_no_receipt_came() {
    let dir = dir("standby");
    let (couch, receiver) = (couch(false).await, receiver("200 OK").await);
    let hooks = hooks_file(r#""operation-complete""#, &receiver.url);
    let url = format!("{}/cheops", couch.url);
    let mut complete = completion(2, 1);
    // Its turn has come: older than the grace period.
    complete.time = "2020-01-01T00:00:00Z".parse().unwrap();
    let deliveries = deliveries_of(&dir, &hooks, &url, [accepted("r0"), complete.clone()]).await;

    // The lane delivering at once leaves it to the first site.
    let mut now = lane(&deliveries, Kind::Now, 0);
    assert!(matches!(deliveries.step(&mut now, 2).await, Step::Idle));
    assert_eq!(now.done, 2);
    assert!(receiver.received().is_empty());

    let mut standby = lane(&deliveries, Kind::StandBy, 0);
    assert!(matches!(
        deliveries.step(&mut standby, 2).await,
        Step::Ended
    ));
    assert_eq!(standby.done, 2, "the completion is done with");
    let posted = receiver.posted();
    assert_eq!(posted.len(), 1, "delivered once: {posted:?}");
    assert_eq!(posted[0]["type"], "operation-complete");
    assert_eq!(posted[0]["data"]["request"], complete.request.as_str());
    let asked: Vec<(String, String)> = couch
        .received()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    let receipt = format!("/cheops/receipt:a:{}:{HOOK}", complete.request);
    assert_eq!(
        asked,
        [
            ("GET".to_owned(), receipt.clone()),
            ("PUT".to_owned(), receipt)
        ],
        "the receipt read, then written"
    );
    assert_eq!(couch.received()[1].json()["Site"], "site1");
    assert!(matches!(deliveries.step(&mut standby, 2).await, Step::Idle));
    assert_eq!(receiver.received().len(), 1, "delivered once only");
    assert_eq!(counted(&deliveries, "delivered"), Some(1.0));

    // Another site delivered it: its receipt says so.
    let dir2 = self::dir("standby-receipt");
    let (couch, receiver) = (self::couch(true).await, self::receiver("200 OK").await);
    let hooks = hooks_file(r#""operation-complete""#, &receiver.url);
    let url = format!("{}/cheops", couch.url);
    let deliveries = deliveries_of(&dir2, &hooks, &url, [complete]).await;
    let mut standby = lane(&deliveries, Kind::StandBy, 0);
    // As if delivering it had failed twice before the receipt came: the
    // next event starts with no attempt of its own.
    standby.attempts = 2;
    assert!(matches!(deliveries.step(&mut standby, 1).await, Step::Idle));
    assert_eq!(standby.done, 1, "the lane moved past it");
    assert_eq!(
        standby.attempts, 0,
        "no attempt carried over to the next event"
    );
    assert!(receiver.received().is_empty(), "nothing delivered");
    let methods: Vec<String> = couch.received().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["GET"], "no receipt written");
    assert_eq!(deliveries.board.snapshot()[0].delivered_elsewhere, 1);
    assert_eq!(counted(&deliveries, "delivered-elsewhere"), Some(1.0));
}

/// Only events made durable in the feed are delivered: one that a crash
/// could lose may come back under another number, and a receiver would
/// have heard of an event the feed then numbers otherwise.
#[tokio::test]
async fn only_events_made_durable_in_the_feed_are_delivered() {
    let dir = dir("durable");
    let receiver = receiver("200 OK").await;
    let hooks = hooks_file(r#""operation""#, &receiver.url);
    let events = (1..=3).map(|i| accepted(&format!("r{i}")));
    let deliveries = deliveries_of(&dir, &hooks, NOWHERE, events).await;
    let feed = &deliveries.ctx.feed;
    for i in 4..=5 {
        feed.append(accepted(&format!("r{i}"))).unwrap();
    }
    let durable = feed.durable();
    assert_eq!(durable, 3, "the last two are not synced");

    let mut lane = lane(&deliveries, Kind::Now, 0);
    for seq in 1..=3 {
        assert!(matches!(
            deliveries.step(&mut lane, durable).await,
            Step::Ended
        ));
        assert_eq!(lane.done, seq);
    }
    assert!(matches!(
        deliveries.step(&mut lane, durable).await,
        Step::Idle
    ));
    assert_eq!(lane.done, 3, "not past the durable events");
    let requests: Vec<Value> = receiver
        .posted()
        .iter()
        .map(|p| p["data"]["request"].clone())
        .collect();
    assert_eq!(requests, ["r1", "r2", "r3"]);
}

/// A failing delivery is retried after 1 s, 5 s, … 8 h, holding back the
/// events after it (each hook gets its events in the feed's order), then
/// given up: counted abandoned and listed, and the hook goes on.
#[tokio::test]
async fn a_failing_delivery_holds_the_lane_in_order_then_is_given_up() {
    let secs = |s: u64| Duration::from_secs(s);
    assert_eq!(
        RETRIES,
        [1, 5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800].map(secs),
        "the waits README.md states"
    );
    let dir = dir("failing");
    let receiver = receiver("500 Internal Server Error").await;
    let hooks = hooks_file(r#""operation""#, &receiver.url);
    let events = [accepted("r1"), accepted("r2")];
    let deliveries = deliveries_of(&dir, &hooks, NOWHERE, events).await;
    let mut lane = lane(&deliveries, Kind::Now, 0);

    let before = Instant::now();
    let step = deliveries.step(&mut lane, 2).await;
    let after = Instant::now();
    match step {
        Step::Until(at) => assert!(
            at >= before + RETRIES[0] && at <= after + RETRIES[0],
            "retried after {:?}",
            RETRIES[0]
        ),
        _ => panic!("a failed delivery is retried"),
    }
    assert_eq!((lane.done, lane.attempts), (0, 1), "the lane is held");
    // Within the wait, nothing is sent.
    assert!(matches!(
        deliveries.step(&mut lane, 2).await,
        Step::Until(_)
    ));
    assert_eq!(receiver.received().len(), 1);

    // The last retry comes 8 h after the attempt before it…
    lane.not_before = None;
    lane.attempts = RETRIES.len() as u32 - 1;
    let before = Instant::now();
    let step = deliveries.step(&mut lane, 2).await;
    let after = Instant::now();
    let last = RETRIES[RETRIES.len() - 1];
    match step {
        Step::Until(at) => assert!(at >= before + last && at <= after + last),
        _ => panic!("a failed delivery is retried"),
    }
    assert_eq!(lane.done, 0, "the lane is held");
    // … and when it fails, the event is given up.
    lane.not_before = None;
    assert!(matches!(deliveries.step(&mut lane, 2).await, Step::Ended));
    assert_eq!((lane.done, lane.attempts), (1, 0), "the hook goes on");
    let requests: Vec<Value> = receiver
        .posted()
        .iter()
        .map(|p| p["data"]["request"].clone())
        .collect();
    assert_eq!(requests, ["r1", "r1", "r1"], "r2 held back");
    let status = &deliveries.board.snapshot()[0];
    assert_eq!((status.abandoned, status.failed_attempts), (1, 3));
    assert!(!status.last[0].delivered);
    assert_eq!(status.last[0].request, "r1");
    assert!(
        status.last[0].result.contains("500"),
        "{:?}",
        status.last[0]
    );
    assert_eq!(counted(&deliveries, "abandoned"), Some(1.0));
    assert_eq!(counted(&deliveries, "failed"), Some(3.0));
    // The next event's turn, at once.
    assert!(matches!(
        deliveries.step(&mut lane, 2).await,
        Step::Until(_)
    ));
    assert_eq!(receiver.posted()[3]["data"]["request"], "r2");
}

/// A hook more than the feed's retention behind loses the oldest events,
/// counted once as lost, and goes on from the oldest kept: it neither
/// waits forever for events the feed no longer has nor skips more than
/// those.
#[tokio::test]
async fn a_hook_more_than_the_retention_behind_loses_the_oldest() {
    let dir = dir("lost");
    // The feed keeps the last RETAIN of them, once it holds twice as many.
    let count = 2 * RETAIN as u64 + 1;
    let events = (0..count).map(|i| Event::new(EventType::Operation, "a", &format!("r{i}"), &[]));
    let hooks = hooks_file(r#""reply""#, "http://127.0.0.1:9/");
    let deliveries = deliveries_of(&dir, &hooks, NOWHERE, events).await;
    let durable = deliveries.ctx.feed.durable();
    assert_eq!(durable, count);
    let oldest = count - RETAIN as u64 + 1;

    // RETAIN events behind: none lost.
    let mut kept = lane(&deliveries, Kind::Now, oldest - 1);
    assert!(matches!(
        deliveries.step(&mut kept, durable).await,
        Step::Moved
    ));
    assert_eq!(kept.done, oldest - 1 + PAGE as u64);
    assert_eq!(counted(&deliveries, "lost"), None);

    let mut lane = lane(&deliveries, Kind::Now, 1);
    // As if the event it stood at had failed twice: the oldest kept is
    // another event, tried afresh.
    lane.attempts = 2;
    assert!(matches!(
        deliveries.step(&mut lane, durable).await,
        Step::Moved
    ));
    assert_eq!(lane.done, oldest - 1, "resumes at the oldest kept");
    assert_eq!(
        lane.attempts, 0,
        "no attempt of the event lost carried over"
    );
    assert_eq!(counted(&deliveries, "lost"), Some(1.0));
    assert!(matches!(
        deliveries.step(&mut lane, durable).await,
        Step::Moved
    ));
    assert_eq!(lane.done, oldest - 1 + PAGE as u64);
    assert_eq!(counted(&deliveries, "lost"), Some(1.0), "lost once");
}

/// Reading the hooks file again keeps a failing delivery's attempts and
/// wait when the hook still goes to the same place: the retries keep
/// README's schedule. A hook sent elsewhere starts afresh: the operator
/// may have fixed its receiver.
#[tokio::test]
async fn reading_the_hooks_again_keeps_a_failing_deliverys_schedule() {
    let dir = dir("reload");
    let receiver = receiver("500 Internal Server Error").await;
    let hooks = hooks_file(r#""operation""#, &receiver.url);
    let mut deliveries = deliveries_of(&dir, &hooks, NOWHERE, [accepted("r1")]).await;
    let mut lanes = std::mem::take(&mut deliveries.lanes);
    lanes[0].done = 0;
    let Step::Until(at) = deliveries.step(&mut lanes[0], 1).await else {
        panic!("a failed delivery is retried");
    };
    deliveries.lanes = lanes;
    let standby = deliveries.lanes[1].done;
    deliveries.positions.set(HOOK, Position { now: 0, standby });

    deliveries.reload();
    let now = &deliveries.lanes[0];
    assert_eq!((now.done, now.attempts, now.not_before), (0, 1, Some(at)));

    let elsewhere = hooks_file(r#""operation""#, "http://127.0.0.1:9/fixed");
    let (_, hooks) = watch::channel(Arc::new(parse(&elsewhere).unwrap()));
    deliveries.hooks = hooks;
    deliveries.reload();
    let now = &deliveries.lanes[0];
    assert_eq!((now.done, now.attempts, now.not_before), (0, 0, None));
}
