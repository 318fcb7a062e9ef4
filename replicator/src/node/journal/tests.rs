use super::*;
use crate::testing::Scratch;

fn reply(resource: &str, request: &str, nanos: u32) -> ReplyDocument {
    let time: Timestamp = format!("2026-01-01T00:00:00.{nanos:09}Z").parse().unwrap();
    ReplyDocument {
        id: Some(reply_id("site1", request, time)),
        site: "site1".into(),
        request_id: request.into(),
        resource_id: resource.into(),
        output: format!("output of {request}\n"),
        execution_time: time,
        ..ReplyDocument::default()
    }
}

fn requests(ran: Vec<Run>) -> Vec<String> {
    let mut requests: Vec<String> = ran.into_iter().map(|ran| ran.request).collect();
    requests.sort();
    requests
}

#[tokio::test]
async fn recorded_replies_survive_a_restart_until_stored() {
    let scratch = Scratch::new("journal-survive");
    let journal = Journal::open(&scratch.0, "site1").unwrap();
    let (a, b, c) = (
        reply("res", "a", 1),
        reply("res", "b", 2),
        reply("other", "c", 3),
    );
    for r in [&a, &b, &c] {
        journal.record(r).await.unwrap();
    }
    journal.stored(vec![a.id.clone().unwrap()]).await.unwrap();
    drop(journal);

    let reopened = Journal::open(&scratch.0, "site1").unwrap();
    assert_eq!(requests(reopened.ran("res")), ["b"]);
    let mode = std::fs::metadata(reopened.path()).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    assert_eq!(requests(reopened.ran("other")), ["c"]);
    assert_eq!(reopened.pending(), vec![b.clone(), c.clone()]);

    reopened
        .stored(vec![b.id.unwrap(), c.id.unwrap()])
        .await
        .unwrap();
    assert!(reopened.pending().is_empty());
    drop(reopened);
    assert!(Journal::open(&scratch.0, "site1")
        .unwrap()
        .pending()
        .is_empty());
}

#[tokio::test]
async fn a_journal_past_its_bound_is_emptied_once_everything_is_stored() {
    let scratch = Scratch::new("journal-empty");
    let journal = Journal::open(&scratch.0, "site1").unwrap();
    let mut ids = Vec::new();
    for n in 0..=EMPTY_AT / 10_000 {
        let mut big = reply("res", &format!("r{n}"), n as u32);
        big.output = "x".repeat(10_000);
        journal.record(&big).await.unwrap();
        ids.push(big.id.unwrap());
    }
    let last = ids.split_off(1);
    journal.stored(ids).await.unwrap();
    assert!(std::fs::metadata(journal.path()).unwrap().len() > EMPTY_AT);
    journal.stored(last).await.unwrap();
    assert_eq!(std::fs::metadata(journal.path()).unwrap().len(), 0);
}

#[tokio::test]
async fn replies_recorded_at_once_are_all_durable() {
    let scratch = Scratch::new("journal-group");
    let journal = Journal::open(&scratch.0, "site1").unwrap();
    let mut recording = tokio::task::JoinSet::new();
    for n in 0..32 {
        let journal = journal.clone();
        recording.spawn(async move {
            journal
                .record(&reply(&format!("res{n}"), &format!("r{n}"), n))
                .await
        });
    }
    while let Some(recorded) = recording.join_next().await {
        recorded.unwrap().unwrap();
    }
    assert_eq!(*journal.inner.synced.lock().unwrap(), 32);
    drop(journal);
    assert_eq!(
        Journal::open(&scratch.0, "site1").unwrap().pending().len(),
        32
    );
}

#[tokio::test]
async fn a_reply_that_stays_unstored_does_not_let_the_journal_grow() {
    let scratch = Scratch::new("journal-compact");
    let journal = Journal::open(&scratch.0, "site1").unwrap();
    let stuck = reply("res", "stuck", 0);
    journal.record(&stuck).await.unwrap();
    let output = "x".repeat(10_000);
    for n in 1..=400 {
        let mut passing = reply("res", &format!("r{n}"), n);
        passing.output = output.clone();
        journal.record(&passing).await.unwrap();
        journal.stored(vec![passing.id.unwrap()]).await.unwrap();
    }
    let size = std::fs::metadata(journal.path()).unwrap().len();
    assert!(
        size <= COMPACT_AT + 20_000,
        "{size} bytes for one unstored reply"
    );
    let mode = std::fs::metadata(journal.path()).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    drop(journal);
    let reopened = Journal::open(&scratch.0, "site1").unwrap();
    assert_eq!(reopened.pending(), vec![stuck]);
}

#[tokio::test]
async fn a_last_line_cut_short_by_a_crash_is_dropped() {
    let scratch = Scratch::new("journal-torn");
    let journal = Journal::open(&scratch.0, "site1").unwrap();
    journal.record(&reply("res", "a", 1)).await.unwrap();
    let path = journal.path().to_owned();
    drop(journal);
    let whole = std::fs::read(&path).unwrap();
    let mut line = serde_json::to_vec(&Line::Ran(Box::new(reply("res", "b", 2)))).unwrap();
    line.truncate(line.len() / 2);
    std::fs::write(&path, [whole.clone(), line].concat()).unwrap();

    let reopened = Journal::open(&scratch.0, "site1").unwrap();
    assert_eq!(requests(reopened.ran("res")), ["a"]);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        whole,
        "the cut line is gone from the file"
    );
    reopened.record(&reply("res", "c", 3)).await.unwrap();
    drop(reopened);
    assert_eq!(
        requests(Journal::open(&scratch.0, "site1").unwrap().ran("res")),
        ["a", "c"],
        "what follows the cut is read back whole"
    );
}

#[test]
fn an_unreadable_line_before_the_last_stops_the_node() {
    let scratch = Scratch::new("journal-corrupt");
    std::fs::create_dir_all(&scratch.0).unwrap();
    let good = serde_json::to_string(&Line::Ran(Box::new(reply("res", "a", 1)))).unwrap();
    std::fs::write(
        scratch.0.join("journal-site1.jsonl"),
        format!("{good}\nnot json\n{good}\n"),
    )
    .unwrap();
    match Journal::open(&scratch.0, "site1") {
        Err(ReplicatorError::JournalCorrupt { line, .. }) => assert_eq!(line, 2),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a corrupt journal was accepted"),
    }
}

/// One step of a journal's life: a reply to request `rN` recorded, or
/// the replies to some requests noted as stored.
#[derive(Debug, Clone)]
enum Step {
    Record(u8),
    Stored(Vec<u8>),
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        (0u8..20).prop_map(Step::Record),
        proptest::collection::vec(0u8..20, 1..4).prop_map(Step::Stored),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever was recorded and noted, a reopened journal holds what
    /// was recorded and not stored; cut anywhere inside its last line by
    /// a crash, it loses at most that line.
    #[test]
    fn a_reopened_journal_holds_what_was_not_stored(
        steps in proptest::collection::vec(step(), 1..30),
        cut in 1usize..10_000,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let scratch = Scratch::new("journal-property");
        let mut model: BTreeMap<String, ReplyDocument> = BTreeMap::new();
        let mut nanos = 0;
        let journal = Journal::open(&scratch.0, "site1").unwrap();
        for step in &steps {
            match step {
                Step::Record(n) => {
                    nanos += 1;
                    let reply = reply("res", &format!("r{n}"), nanos);
                    runtime.block_on(journal.record(&reply)).unwrap();
                    model.insert(reply.id.clone().unwrap(), reply);
                }
                Step::Stored(ns) => {
                    let ids: Vec<String> = model
                        .keys()
                        .filter(|id| ns.iter().any(|n| id.contains(&format!("-r{n}-"))))
                        .cloned()
                        .collect();
                    for id in &ids {
                        model.remove(id);
                    }
                    runtime.block_on(journal.stored(ids)).unwrap();
                }
            }
        }
        let path = journal.path().to_owned();
        drop(journal);
        let ids = |journal: &Journal| -> Vec<String> {
            journal.pending().into_iter().filter_map(|r| r.id).collect()
        };
        let reopened = Journal::open(&scratch.0, "site1").unwrap();
        let whole: Vec<String> = model.keys().cloned().collect();
        let mut held = ids(&reopened);
        held.sort();
        proptest::prop_assert_eq!(&held, &whole);
        drop(reopened);

        let text = std::fs::read(&path).unwrap();
        if text.is_empty() {
            return Ok(());
        }
        let last_start = text[..text.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |at| at + 1);
        let at = last_start + cut % (text.len() - last_start);
        std::fs::write(&path, &text[..at]).unwrap();
        let last: Line = serde_json::from_slice(&text[last_start..text.len() - 1]).unwrap();
        let mut expected = model.clone();
        match last {
            Line::Ran(reply) => {
                expected.remove(reply.id.as_deref().unwrap());
            }
            Line::Stored(id) => {
                // Its note is lost: the reply is written again, harmlessly.
                let text = String::from_utf8_lossy(&text[..last_start]).into_owned();
                let replayed = replay(text.as_bytes()).unwrap().0;
                if let Some(reply) = replayed.get(&id) {
                    expected.insert(id, reply.clone());
                }
            }
        }
        let after_crash = Journal::open(&scratch.0, "site1").unwrap();
        let mut held = ids(&after_crash);
        held.sort();
        let expected: Vec<String> = expected.keys().cloned().collect();
        proptest::prop_assert_eq!(held, expected);
    }
}

/// A journal file whose writes fail once `budget` bytes are written (the
/// bytes before the limit reach the file, as a full disk does), and whose
/// truncations fail while `truncations_fail` says so.
struct Failing {
    file: File,
    budget: usize,
    truncations_fail: bool,
}

impl Write for Failing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.budget == 0 {
            return Err(std::io::Error::other("no space left"));
        }
        let written = self.file.write(&buf[..buf.len().min(self.budget)])?;
        self.budget -= written;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Truncate for Failing {
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        if self.truncations_fail {
            return Err(std::io::Error::other("cannot truncate"));
        }
        self.file.set_len(len)
    }
}

#[tokio::test]
async fn a_write_that_fails_midway_leaves_no_torn_line_behind() {
    for truncations_fail in [false, true] {
        let scratch = Scratch::new(&format!("torn-{truncations_fail}"));
        let journal = Journal::open(&scratch.0, "site1").unwrap();
        journal.record(&reply("res", "a", 1)).await.unwrap();
        let path = journal.path().to_path_buf();
        drop(journal);

        let file = OpenOptions::new().append(true).open(&path).unwrap();
        let good = file.metadata().unwrap().len();
        let mut lines = Lines {
            file: Failing {
                file,
                budget: 20,
                truncations_fail,
            },
            good,
            torn: false,
        };
        let cut = Line::Ran(Box::new(reply("res", "b", 2)));
        assert!(lines.append(&cut).is_err(), "the write fails midway");
        assert_eq!(lines.torn, truncations_fail);
        lines.file.budget = usize::MAX;
        lines.file.truncations_fail = false;
        lines
            .append(&Line::Ran(Box::new(reply("res", "c", 3))))
            .unwrap();
        drop(lines);

        let reopened = Journal::open(&scratch.0, "site1")
            .unwrap_or_else(|e| panic!("truncations fail: {truncations_fail}: {e}"));
        assert_eq!(requests(reopened.ran("res")), ["a", "c"]);
    }
}
