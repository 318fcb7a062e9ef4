use super::*;

fn locations() -> Vec<String> {
    vec!["site1".into(), "site2".into()]
}

fn reply(resource: &str, request: &str, site: &str, ran_at: &str) -> Event {
    let mut event = Event::new(EventType::Reply, resource, request, &locations());
    event.site = Some(site.into());
    event.status = Some(Status::Ok);
    event.ran_at = Some(ran_at.parse().unwrap());
    event
}

fn operation(resource: &str, request: &str) -> Event {
    Event::new(EventType::Operation, resource, request, &locations())
}

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cheops-feed-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A page of `feed`, whose file must read.
fn read(feed: &Feed, since: Option<u64>, resource: Option<&str>, limit: usize) -> Option<Page> {
    feed.read(since, resource, limit)
        .expect("the feed's file reads")
}

fn seqs(page: &Page) -> Vec<u64> {
    page.events.iter().map(|e| e.seq).collect()
}

#[test]
fn events_are_numbered_in_order_and_added_once() {
    let feed = Feed::in_memory();
    assert_eq!(feed.append(operation("a", "r1")).unwrap(), 1);
    assert_eq!(
        feed.append(reply("a", "r1", "site1", "2026-01-01T00:00:01Z"))
            .unwrap(),
        1
    );
    // The same again: nothing added.
    assert_eq!(feed.append(operation("a", "r1")).unwrap(), 0);
    assert_eq!(
        feed.append(reply("a", "r1", "site1", "2026-01-01T00:00:01Z"))
            .unwrap(),
        0
    );
    // A site that ran it again replies again: another event.
    assert_eq!(
        feed.append(reply("a", "r1", "site1", "2026-01-01T00:00:09Z"))
            .unwrap(),
        1
    );
    assert_eq!(feed.append(operation("b", "r2")).unwrap(), 1);

    let all = read(&feed, None, None, 100).unwrap();
    assert_eq!((seqs(&all), all.last_seq), (vec![1, 2, 3, 4], 4));
    let after = read(&feed, Some(2), None, 100).unwrap();
    assert_eq!(seqs(&after), [3, 4]);
    let of_b = read(&feed, Some(0), Some("b"), 100).unwrap();
    assert_eq!((seqs(&of_b), of_b.last_seq), (vec![4], 4));
    // A page ends at its last event: the next one starts after it.
    let page = read(&feed, Some(0), Some("a"), 2).unwrap();
    assert_eq!((seqs(&page), page.last_seq), (vec![1, 2], 2));
    let none = read(&feed, Some(4), None, 100).unwrap();
    assert_eq!((none.events.len(), none.last_seq), (0, 4));
    // A token this feed never gave.
    assert_eq!(read(&feed, Some(5), None, 100), None);
}

/// The reply that completes the set of the resource's sites adds one
/// `operation-complete` after it; a later reply (a site running it again)
/// adds none.
#[test]
fn the_last_site_to_reply_completes_the_operation_once() {
    let feed = Feed::in_memory();
    feed.append(operation("a", "r1")).unwrap();
    assert_eq!(
        feed.append(reply("a", "r1", "site2", "2026-01-01T00:00:01Z"))
            .unwrap(),
        1
    );
    assert_eq!(
        feed.append(reply("a", "r1", "site1", "2026-01-01T00:00:02Z"))
            .unwrap(),
        2
    );
    assert_eq!(
        feed.append(reply("a", "r1", "site1", "2026-01-01T00:00:03Z"))
            .unwrap(),
        1
    );
    // A reply that names no site (a document written so by hand)
    // completes nothing.
    let mut bare = reply("b", "r9", "site1", "2026-01-01T00:00:04Z");
    bare.locations.clear();
    assert_eq!(feed.append(bare).unwrap(), 1);
    let kinds: Vec<EventType> = read(&feed, None, None, 100)
        .unwrap()
        .events
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EventType::Operation,
            EventType::Reply,
            EventType::Reply,
            EventType::OperationComplete,
            EventType::Reply,
            EventType::Reply
        ]
    );
    let complete = &read(&feed, Some(3), None, 1).unwrap().events[0];
    assert_eq!(
        complete.statuses,
        BTreeMap::from([("site1".into(), Status::Ok), ("site2".into(), Status::Ok)]),
        "what each site replied"
    );
}

#[test]
fn a_reopened_feed_resumes_where_it_was_and_adds_nothing_twice() {
    let dir = dir("reopen");
    let feed = Feed::open(&dir, "site1").unwrap();
    feed.append(operation("a", "r1")).unwrap();
    feed.append(reply("a", "r1", "site2", "2026-01-01T00:00:01Z"))
        .unwrap();
    feed.sync_now().unwrap();
    drop(feed);

    let feed = Feed::open(&dir, "site1").unwrap();
    assert_eq!(seqs(&read(&feed, None, None, 100).unwrap()), [1, 2]);
    // Outputs are in it: the node's user alone reads it.
    let mode = std::fs::metadata(dir.join("changes-site1.jsonl"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    // The changes after the follower's checkpoint, read again.
    assert_eq!(feed.append(operation("a", "r1")).unwrap(), 0);
    assert_eq!(feed.append(operation("a", "r2")).unwrap(), 1);
    assert_eq!(seqs(&read(&feed, Some(2), None, 100).unwrap()), [3]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_line_cut_short_is_skipped() {
    let dir = dir("cut");
    let feed = Feed::open(&dir, "site1").unwrap();
    feed.append(operation("a", "r1")).unwrap();
    feed.append(operation("a", "r2")).unwrap();
    drop(feed);
    let path = dir.join("changes-site1.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &text[..text.len() - 10]).unwrap();

    let feed = Feed::open(&dir, "site1").unwrap();
    assert_eq!(seqs(&read(&feed, None, None, 100).unwrap()), [1]);
    // Derived again from the changes, under the same number.
    assert_eq!(feed.append(operation("a", "r2")).unwrap(), 1);
    drop(feed);
    let feed = Feed::open(&dir, "site1").unwrap();
    assert_eq!(seqs(&read(&feed, None, None, 100).unwrap()), [1, 2]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_token_older_than_what_is_kept_is_gone() {
    let feed = Feed::in_memory();
    for i in 0..=2 * RETAIN {
        feed.append(operation("a", &format!("r{i}"))).unwrap();
    }
    let kept = read(&feed, None, None, usize::MAX).unwrap();
    assert_eq!(kept.events.len(), RETAIN);
    let first = kept.events[0].seq;
    assert_eq!(read(&feed, Some(first - 2), None, 10), None);
    assert_eq!(
        seqs(&read(&feed, Some(first - 1), None, 1).unwrap()),
        [first]
    );
}

/// A file that cannot be read is an error, never a token gone: a hook or
/// a client told "gone" would skip the events the file still holds.
#[test]
fn an_unreadable_file_is_an_error_not_a_token_gone() {
    let dir = dir("unreadable");
    let feed = Feed::open(&dir, "site1").unwrap();
    let count = 2 * TAIL as u64;
    for i in 0..count {
        feed.append(operation("a", &format!("r{i}"))).unwrap();
    }
    assert_eq!(seqs(&read(&feed, Some(1), None, 1).unwrap()), [2]);
    for entry in std::fs::read_dir(&dir).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    assert!(feed.read(Some(1), None, 1).is_err());
    assert!(feed.read(None, None, 1).is_err());
    // What memory holds still reads.
    assert_eq!(
        seqs(&read(&feed, Some(count - 1), None, 10).unwrap()),
        [count]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn outputs_are_cut_on_a_character_boundary() {
    let long = "é".repeat(OUTPUT_CAP);
    let cut = cap_output(&long);
    assert!(cut.len() <= OUTPUT_CAP && cut.len() >= OUTPUT_CAP - 1);
    assert_eq!(cap_output("short"), "short");
}

/// An operation whose history document was taken back (its `/exec` was
/// refused) is followed by a refusal; one never announced is not.
#[test]
fn a_refused_operation_is_said_refused_once_announced() {
    let feed = Feed::in_memory();
    let refused = |request: &str| Event::new(EventType::OperationRefused, "a", request, &[]);
    assert_eq!(feed.append(refused("r0")).unwrap(), 0);
    let mut announced = operation("a", "r1");
    announced.site = Some("site2".into());
    feed.append(announced).unwrap();
    assert_eq!(feed.append(refused("r1")).unwrap(), 1);
    assert_eq!(feed.append(refused("r1")).unwrap(), 0);
    let last = read(&feed, Some(1), None, 1).unwrap().events.remove(0);
    assert_eq!(
        (last.kind, last.site.as_deref()),
        (EventType::OperationRefused, Some("site2")),
        "refused where it was accepted"
    );
}

/// A rerun is an event of its own beside the reply it comes with; merges
/// are told apart by the revision they wrote.
#[test]
fn reruns_and_merges_have_keys_of_their_own() {
    let feed = Feed::in_memory();
    let reply = reply("a", "r1", "site1", "2026-01-01T00:00:01Z");
    let mut rerun = reply.clone();
    rerun.kind = EventType::Rerun;
    assert_eq!(feed.append(rerun.clone()).unwrap(), 1);
    assert_eq!(feed.append(reply).unwrap(), 1);
    assert_eq!(feed.append(rerun).unwrap(), 0);
    let merge = |rev: &str| {
        let mut event = Event::new(EventType::Merge, "a", "", &locations());
        event.rev = Some(rev.into());
        event
    };
    assert_eq!(feed.append(merge("3-x")).unwrap(), 1);
    assert_eq!(feed.append(merge("3-x")).unwrap(), 0);
    assert_eq!(feed.append(merge("4-y")).unwrap(), 1);
}

#[test]
fn the_latest_events_come_newest_first() {
    let feed = Feed::in_memory();
    for request in ["r1", "r2", "r3"] {
        feed.append(operation("a", request)).unwrap();
    }
    feed.append(operation("b", "r4")).unwrap();
    let requests = |events: Vec<Event>| events.into_iter().map(|e| e.request).collect::<Vec<_>>();
    assert_eq!(requests(feed.latest(None, 2)), ["r4", "r3"]);
    assert_eq!(requests(feed.latest(Some("a"), 5)), ["r3", "r2", "r1"]);
}

/// A feed with a file holds its newest events in memory and reads older
/// ones back from the file: every page, every list of the latest and
/// every refusal's site is what a feed holding everything in memory
/// gives, before and after reopening. Seeded; a failure names its seed.
#[test]
fn a_feed_longer_than_its_memory_reads_alike_from_its_file() {
    for seed in 0..4u64 {
        let dir = dir(&format!("tail-{seed}"));
        let file = Feed::open(&dir, "site1").unwrap();
        let memory = Feed::in_memory();
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = |n: u64| {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let count = 3 * TAIL as u64 + next(500);
        for i in 0..count {
            let resource = ["a", "b", "c"][next(3) as usize];
            let request = format!("r{}", next(i + 1));
            let event = match next(4) {
                0 => {
                    let mut event = operation(resource, &format!("r{i}"));
                    event.site = Some(format!("site{}", 1 + next(2)));
                    event
                }
                1 => Event::new(EventType::OperationRefused, resource, &request, &[]),
                _ => {
                    let site = format!("site{}", 1 + next(2));
                    let at = format!(
                        "2026-01-01T{:02}:{:02}:{:02}Z",
                        i / 3600,
                        i / 60 % 60,
                        i % 60
                    );
                    reply(resource, &request, &site, &at)
                }
            };
            assert_eq!(
                file.append(event.clone()).unwrap(),
                memory.append(event).unwrap(),
                "seed {seed}: event {i}"
            );
        }
        assert!(file.state().events.len() <= TAIL, "seed {seed}");
        alike(&file, &memory, seed);
        file.sync_now().unwrap();
        drop(file);
        let file = Feed::open(&dir, "site1").unwrap();
        alike(&file, &memory, seed);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

fn alike(file: &Feed, memory: &Feed, seed: u64) {
    // An `operation-complete` is made when added: its time is each feed's.
    let timeless = |mut events: Vec<Event>| {
        for event in &mut events {
            event.time = Timestamp::zero();
        }
        events
    };
    let page = |feed: &Feed, since, resource, limit| {
        read(feed, Some(since), resource, limit).map(|page| (timeless(page.events), page.last_seq))
    };
    let last = read(memory, None, None, usize::MAX).unwrap().last_seq;
    for since in (0..=last)
        .step_by(89)
        .chain([last.saturating_sub(TAIL as u64)])
    {
        for resource in [None, Some("a")] {
            for limit in [1, 60, usize::MAX] {
                assert_eq!(
                    page(file, since, resource, limit),
                    page(memory, since, resource, limit),
                    "seed {seed}: since {since}, {resource:?}, limit {limit}"
                );
            }
        }
    }
    for resource in [None, Some("b")] {
        for limit in [10, TAIL + 500] {
            assert_eq!(
                timeless(file.latest(resource, limit)),
                timeless(memory.latest(resource, limit)),
                "seed {seed}: latest {limit} of {resource:?}"
            );
        }
    }
}

/// A token past the feed's last event is no token of it, however large.
#[test]
fn the_largest_token_is_refused_not_overflowed() {
    let feed = Feed::in_memory();
    feed.append(operation("a", "r1")).unwrap();
    assert_eq!(read(&feed, Some(u64::MAX), None, 10), None);
    assert_eq!(read(&feed, Some(u64::MAX), Some("a"), 10), None);
}
