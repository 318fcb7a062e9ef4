//! Behaviour of the shell backend, run against the real `sh`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::temp_dir::TempDir;
use super::ShellBackend;
use crate::{Backend, CommandResult, Outcome};
use cheops_model::{Command, Status};

fn command(script: &str) -> Command {
    Command::shell(script)
}

fn with_files(script: &str, files: &[(&str, &[u8])]) -> Command {
    Command {
        command: script.to_owned(),
        files: files
            .iter()
            .map(|(name, content)| (name.to_string(), content.to_vec()))
            .collect(),
        ..Command::default()
    }
}

fn ok(output: &str) -> CommandResult {
    CommandResult {
        outcome: Outcome::Ok,
        output: output.to_owned(),
    }
}

/// A private temporary root, so that a test sees exactly what the backend
/// left in it.
fn scratch() -> TempDir {
    TempDir::create_in(&std::env::temp_dir()).unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Waits for `condition`, failing the test after a generous deadline.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A process is dead once gone from /proc, or a zombie nobody reaped yet.
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn output_is_stdout_and_stderr_in_the_order_written() {
    let results = ShellBackend::new()
        .run(&[command(
            "echo one; echo two >&2; echo three; printf four >&2",
        )])
        .await;
    assert_eq!(results, vec![ok("one\ntwo\nthree\nfour")]);
}

#[tokio::test]
async fn output_that_is_not_utf8_is_read_lossily() {
    let results = ShellBackend::new()
        .run(&[command(r"printf 'a\377b'")])
        .await;
    assert_eq!(results, vec![ok("a\u{FFFD}b")]);
}

#[tokio::test]
async fn attached_files_are_written_and_their_names_replaced_by_their_paths() {
    let root = scratch();
    let backend = ShellBackend::new().with_temp_root(root.path());
    let results = backend
        .run(&[with_files(
            "cat {a.txt}; echo; echo {a.txt}; cat {b}",
            &[("a.txt", b"hello"), ("b", b"bye\n")],
        )])
        .await;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].outcome, Outcome::Ok, "{}", results[0].output);
    let lines: Vec<&str> = results[0].output.lines().collect();
    assert_eq!(lines[0], "hello");
    let path = Path::new(lines[1]);
    assert!(path.starts_with(root.path()), "{}", lines[1]);
    assert!(path.ends_with("a.txt"), "{}", lines[1]);
    assert_eq!(lines[2], "bye");
}

#[tokio::test]
async fn braces_naming_no_attached_file_are_left_untouched() {
    let results = ShellBackend::new()
        .run(&[with_files(
            "printf '%s\\n' '{x}' '{a.txt' 'a.txt}' '{}'; X=1; echo ${X}",
            &[("a.txt", b"")],
        )])
        .await;
    assert_eq!(results, vec![ok("{x}\n{a.txt\na.txt}\n{}\n1\n")]);
}

#[tokio::test]
async fn nested_file_names_create_directories_named_by_their_prefix() {
    let results = ShellBackend::new()
        .run(&[with_files(
            "cat {mydir/sub/file.txt}; cd {mydir} && ls -R . && cat sub/file.txt top.txt",
            &[
                ("mydir/sub/file.txt", b"deep\n"),
                ("mydir/top.txt", b"top\n"),
            ],
        )])
        .await;
    assert_eq!(
        results,
        vec![ok(
            "deep\n.:\nsub\ntop.txt\n\n./sub:\nfile.txt\ndeep\ntop\n"
        )]
    );
}

#[tokio::test]
async fn each_command_runs_in_a_fresh_directory() {
    let results = ShellBackend::new()
        .run(&[command("touch leftover; ls; pwd"), command("ls; pwd")])
        .await;
    let first: Vec<&str> = results[0].output.lines().collect();
    let second: Vec<&str> = results[1].output.lines().collect();
    assert_eq!(first[0], "leftover");
    assert_eq!(second.len(), 1, "{:?}", results[1].output);
    assert_ne!(first[1], second[0]);
}

#[tokio::test]
async fn a_failing_command_stops_the_batch() {
    let scratch = scratch();
    let marker = scratch.path().join("marker");
    let results = ShellBackend::new()
        .run(&[
            command("echo first"),
            command("echo oops >&2; exit 3"),
            command(&format!("touch {}", marker.display())),
            command("echo never"),
        ])
        .await;
    assert_eq!(
        results,
        vec![
            ok("first\n"),
            CommandResult {
                outcome: Outcome::Failed,
                output: "oops\n".into(),
            },
            CommandResult::skipped(),
            CommandResult::skipped(),
        ]
    );
    assert!(results[2].output.contains("skipped"));
    let statuses: Vec<Status> = results.iter().map(CommandResult::status).collect();
    assert_eq!(statuses, [Status::Ok, Status::Ko, Status::Ko, Status::Ko]);
    assert!(!marker.exists());
}

#[tokio::test]
async fn a_command_whose_process_cannot_start_is_not_started_and_stops_the_batch() {
    let results = ShellBackend::new()
        .with_shell("/nonexistent/cheops-shell")
        .run(&[command("echo hi"), command("echo again")])
        .await;
    assert_eq!(results[0].outcome, Outcome::NotStarted);
    assert!(
        results[0]
            .output
            .contains("could not start /nonexistent/cheops-shell"),
        "{}",
        results[0].output
    );
    assert_eq!(results[1], CommandResult::stopped());
}

#[tokio::test]
async fn commands_see_only_the_configured_variables() {
    // Cargo runs this test with CARGO_* variables (and whatever the
    // caller's environment holds): none may reach the command.
    assert!(std::env::vars().any(|(name, _)| name.starts_with("CARGO")));
    let results = ShellBackend::new()
        .with_env("CHEOPS_TEST_VAR", "a value")
        .run(&[command("env")])
        .await;
    assert_eq!(results[0].outcome, Outcome::Ok, "{}", results[0].output);
    let names: Vec<&str> = results[0]
        .output
        .lines()
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .collect();
    assert!(results[0].output.contains("CHEOPS_TEST_VAR=a value\n"));
    // What the shell sets for itself, and nothing else.
    for name in names {
        assert!(
            ["CHEOPS_TEST_VAR", "PWD", "OLDPWD", "SHLVL", "_"].contains(&name),
            "{name} reached the command:\n{}",
            results[0].output
        );
    }
}

#[test]
fn the_daemons_variables_pass_only_when_allowed() {
    let vars = [
        ("PATH", "/usr/bin"),
        ("LC_ALL", "C.UTF-8"),
        ("CHEOPS_COUCHDB_URL", "http://admin:secret@db:5984/cheops"),
        ("CHEOPS_TOKEN", "secret"),
        ("NODE_DIR", "/srv/app"),
        ("NODE_DIRECTORY", "/elsewhere"),
        ("APP_ONE", "1"),
    ]
    .map(|(name, value)| (name.into(), value.into()));
    let extra = ["NODE_DIR".to_owned(), "APP_*".to_owned()];
    let passed = super::command_env(&extra, vars);
    let names: Vec<&str> = passed.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["PATH", "LC_ALL", "NODE_DIR", "APP_ONE"]);
}

#[test]
fn no_variable_that_may_hold_a_credential_passes_whatever_is_allowed() {
    let vars = [
        ("APP_NAME", "shop"),
        ("APP_TOKEN", "t"),
        ("APP_DB_PASSWORD", "p"),
        ("APP_SECRET_KEY", "s"),
        ("APP_AWS_ACCESS_KEY_ID", "k"),
        ("APP_DATABASE_URL", "postgres://app:pw@db:5432/app"),
        ("APP_PUBLIC_URL", "https://shop.example/app"),
        ("APP_MIRROR", "http://user@mirror/"),
        ("CHEOPS_SITE", "site1"),
        ("APP_SSH_AUTH_SOCK", "/run/agent"),
    ]
    .map(|(name, value)| (name.into(), value.into()));
    let extra = ["APP_*".to_owned(), "CHEOPS_SITE".to_owned()];
    let passed = super::command_env(&extra, vars);
    let names: Vec<&str> = passed.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["APP_NAME", "APP_PUBLIC_URL", "APP_MIRROR"]);
}

#[tokio::test]
async fn output_past_the_limit_is_dropped_and_counted() {
    // 3 MB of output: the default limit keeps 1 MiB.
    let results = ShellBackend::new()
        .run(&[command("yes | head -c 3000000")])
        .await;
    let limit = super::DEFAULT_OUTPUT_LIMIT;
    assert_eq!(results[0].outcome, Outcome::Ok);
    let (kept, marker) = results[0].output.split_at(limit);
    assert!(kept.chars().all(|c| c == 'y' || c == '\n'));
    assert_eq!(
        marker,
        format!(
            "[cheops: output truncated: {} more bytes dropped after the first {limit} \
             (--command-output-limit)]\n",
            3_000_000 - limit
        )
    );
}

#[tokio::test]
async fn a_command_past_its_timeout_is_killed_with_its_processes_and_fails() {
    let scratch = scratch();
    let pid_file = scratch.path().join("sleep.pid");
    let script = format!(
        "sleep 30 & echo $! > {pids}; echo started; wait",
        pids = pid_file.display()
    );
    let results = ShellBackend::new()
        .with_timeout(Duration::from_millis(500))
        .run(&[command(&script), command("echo never")])
        .await;
    assert_eq!(results[0].outcome, Outcome::Failed);
    assert_eq!(
        results[0].output,
        "started\n[cheops: timed out after 0.5 s (--command-timeout): the command and every \
         process it started were killed]\n"
    );
    assert_eq!(results[1], CommandResult::skipped());
    let sleep: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eventually("the background sleep to die", || is_dead(sleep)).await;
}

#[tokio::test]
async fn endless_output_is_bounded_by_the_limit_and_the_timeout() {
    let results = ShellBackend::new()
        .with_output_limit(1000)
        .with_timeout(Duration::from_millis(500))
        .run(&[command("yes")])
        .await;
    assert_eq!(results[0].outcome, Outcome::Failed);
    let output = &results[0].output;
    assert_eq!(&output[..1000], "y\n".repeat(500));
    let markers: Vec<&str> = output[1000..].lines().collect();
    assert_eq!(markers.len(), 2, "{markers:?}");
    assert!(
        markers[0].starts_with("[cheops: output truncated: "),
        "{output}"
    );
    assert!(
        markers[1].starts_with("[cheops: timed out after 0.5 s"),
        "{output}"
    );
}

#[tokio::test]
async fn the_temporary_directory_is_gone_afterwards() {
    let root = scratch();
    let backend = ShellBackend::new().with_temp_root(root.path());
    let results = backend
        .run(&[
            with_files("mkdir -p made/deeper; pwd", &[("d/f", b"x")]),
            command("pwd; exit 1"),
        ])
        .await;
    for result in &results {
        let dir = Path::new(result.output.trim_end());
        assert!(dir.starts_with(root.path()), "{}", result.output);
    }
    assert_eq!(entries(root.path()), Vec::<String>::new());
}

#[tokio::test]
async fn file_names_that_could_escape_are_refused_and_nothing_is_written() {
    let outer = scratch();
    let root = outer.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let backend = ShellBackend::new().with_temp_root(&root);
    for name in ["../x", "/tmp/cheops-escape", "a/../../x", "a//b", ""] {
        let results = backend
            .run(&[
                with_files("echo ran > ran", &[("fine", b""), (name, b"escaped")]),
                command("echo next"),
            ])
            .await;
        let expected = format!("refused file name {name:?}: ");
        assert_eq!(results[0].outcome, Outcome::Failed, "{name:?}");
        assert!(
            results[0].output.starts_with(&expected),
            "{}",
            results[0].output
        );
        assert_eq!(results[1], CommandResult::skipped());
    }
    assert_eq!(entries(outer.path()), ["root"]);
    assert_eq!(entries(&root), Vec::<String>::new());
    assert!(!Path::new("/tmp/cheops-escape").exists());
}

#[tokio::test]
async fn colliding_file_names_fail_the_command_and_leave_nothing() {
    let root = scratch();
    let results = ShellBackend::new()
        .with_temp_root(root.path())
        .run(&[with_files(
            "echo ran",
            &[("a", b"file"), ("a/b", b"under a file")],
        )])
        .await;
    assert_eq!(results[0].outcome, Outcome::Failed);
    assert!(
        results[0]
            .output
            .starts_with("attached files \"a\" and \"a/b\" collide"),
        "{}",
        results[0].output
    );
    assert_eq!(entries(root.path()), Vec::<String>::new());
}

#[tokio::test]
async fn a_script_longer_than_a_pipe_buffer_is_fed_whole() {
    let filler = "# filler line to outgrow the pipe buffer\n".repeat(10_000);
    let script = format!("{filler}echo done\n");
    let results = ShellBackend::new().run(&[command(&script)]).await;
    assert_eq!(results, vec![ok("done\n")]);
}

#[tokio::test]
async fn a_cancelled_batch_kills_its_running_processes_and_removes_its_directory() {
    let scratch = scratch();
    let root = scratch.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let report = scratch.path().join("pids");
    let script = format!(
        "sleep 30 & echo \"$$ $! $PWD\" > {tmp} && mv {tmp} {report}; wait",
        tmp = scratch.path().join("pids.tmp").display(),
        report = report.display(),
    );
    let batch = [command(&script), command("echo never")];
    let backend = ShellBackend::new().with_temp_root(&root);
    let mut run = backend.run(&batch);

    let started = tokio::select! {
        results = &mut run => panic!("the batch ended: {results:?}"),
        () = eventually("the command to start", || report.exists()) => {
            std::fs::read_to_string(&report).unwrap()
        }
    };
    let fields: Vec<&str> = started.split_whitespace().collect();
    let shell: u32 = fields[0].parse().unwrap();
    let sleep: u32 = fields[1].parse().unwrap();
    let dir = Path::new(fields[2]).to_owned();
    assert!(dir.starts_with(&root), "{started}");
    assert!(!is_dead(sleep), "sleep should be running");

    drop(run);

    eventually("the shell to die", || is_dead(shell)).await;
    eventually("its sleep to die", || is_dead(sleep)).await;
    eventually("its directory to go", || !dir.exists()).await;
    assert_eq!(entries(&root), Vec::<String>::new());
}

#[tokio::test]
async fn the_backend_runs_behind_an_arc_dyn_on_another_task() {
    let backend: Arc<dyn Backend> = Arc::new(ShellBackend::new());
    let batch = vec![command("echo from a task")];
    let results = tokio::spawn(async move { backend.run(&batch).await })
        .await
        .unwrap();
    assert_eq!(results, vec![ok("from a task\n")]);
}

#[tokio::test]
async fn an_empty_batch_has_no_results() {
    assert_eq!(ShellBackend::new().run(&[]).await, Vec::new());
}

/// Records each result as it is reported, with what the application held
/// at that moment, and stops the batch after `stop_after` results.
struct Recorder {
    file: std::path::PathBuf,
    stop_after: usize,
    seen: std::sync::Mutex<Vec<(usize, String, String)>>,
}

impl crate::Progress for Recorder {
    fn finished<'a>(
        &'a self,
        index: usize,
        result: &'a CommandResult,
    ) -> crate::ProgressFuture<'a> {
        let held = std::fs::read_to_string(&self.file).unwrap_or_default();
        let mut seen = self.seen.lock().unwrap();
        seen.push((index, result.output.clone(), held));
        let next = if seen.len() >= self.stop_after {
            crate::Next::Stop
        } else {
            crate::Next::Continue
        };
        Box::pin(std::future::ready(next))
    }
}

#[tokio::test]
async fn each_result_is_reported_before_the_next_command_starts() {
    let scratch = scratch();
    let file = scratch.path().join("log");
    let append = |n: usize| command(&format!("echo {n} >> {}; echo ran {n}", file.display()));
    let batch = [append(1), append(2), append(3), append(4)];
    let recorder = Recorder {
        file: file.clone(),
        stop_after: 2,
        seen: Default::default(),
    };
    let results = ShellBackend::new().run_with(&batch, &recorder).await;

    let seen = recorder.seen.into_inner().unwrap();
    assert_eq!(
        seen,
        vec![
            (0, "ran 1\n".to_owned(), "1\n".to_owned()),
            (1, "ran 2\n".to_owned(), "1\n2\n".to_owned()),
        ],
        "each report comes before the next command wrote anything"
    );
    assert_eq!(results[..2], [ok("ran 1\n"), ok("ran 2\n")]);
    assert_eq!(
        results[2..],
        [CommandResult::stopped(), CommandResult::stopped()]
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "1\n2\n",
        "stopped: 3 and 4 never ran"
    );
}

#[tokio::test]
async fn a_command_the_node_cannot_start_gets_no_report_and_stops_the_batch() {
    let scratch = scratch();
    let file = scratch.path().join("log");
    // Its temporary directory cannot be made: nothing of it starts.
    let backend = ShellBackend::new().with_temp_root(scratch.path().join("missing/root"));
    let recorder = Recorder {
        file: file.clone(),
        stop_after: usize::MAX,
        seen: Default::default(),
    };
    let batch = [
        command(&format!("echo 1 >> {}", file.display())),
        command("true"),
    ];
    let results = backend.run_with(&batch, &recorder).await;
    assert_eq!(results[0].outcome, Outcome::NotStarted, "{results:?}");
    assert!(
        results[0].output.contains("temporary directory"),
        "{results:?}"
    );
    assert_eq!(results[1], CommandResult::stopped());
    assert!(recorder.seen.into_inner().unwrap().is_empty(), "no reply");
    assert!(!file.exists(), "nothing ran");
}
