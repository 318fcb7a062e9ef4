//! Chephren's web UI in a real browser, as an operator uses it: Debian's
//! Chromium, headless, driven by playwright-core (`tests/browser/`) against
//! three real nodes. The script watches the cluster come online, sends
//! operations through the API and sees them appear with their replies
//! without reloading, then asks this test to stop a node and sees it turn
//! OFFLINE. Screenshots of each view are left in `target/browser-artifacts/`.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use cheops_testkit::Cluster;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// Debian's Chromium; playwright-core never downloads a browser.
const CHROMIUM: &str = "/usr/bin/chromium";

/// The whole script; each of its waits has its own, shorter deadline.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

const SCREENSHOTS: [&str; 5] = [
    "1-cluster",
    "2-resources",
    "3-resource",
    "4-cluster-offline",
    "5-resource-pending",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// `tests/browser/`, its npm packages installed from the lock file unless
/// the installed tree already matches it.
fn browser_scripts() -> PathBuf {
    let dir = workspace().join("tests/browser");
    let lock =
        std::fs::read(dir.join("package-lock.json")).expect("tests/browser/package-lock.json");
    let stamp = dir.join("node_modules/.cheops-browser-lock");
    if std::fs::read(&stamp).ok().as_ref() != Some(&lock) {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("cannot run npm (Node.js with npm is needed)");
        assert!(status.success(), "npm ci in tests/browser failed");
        std::fs::write(&stamp, &lock).expect("cannot write the install stamp");
    }
    dir
}

/// `target/browser-artifacts/`, emptied of an earlier run's screenshots.
fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let dir = target.join("browser-artifacts");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("cannot create target/browser-artifacts");
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_watches_the_cluster_live_in_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the browser test needs Debian's chromium \
         (apt-get install chromium; .ci/run installs it)"
    );
    let scripts = browser_scripts();
    let artifacts = artifacts();
    let mut cluster = Cluster::start(3).await;
    let sites: Vec<String> = (0..cluster.len())
        .map(|i| cluster.node(i).site.clone())
        .collect();

    let mut script = Command::new("node")
        .arg("chephren.mjs")
        .current_dir(&scripts)
        .env("CHEPHREN_URL", cluster.node(0).chephren_url())
        .env("PEER_CHEPHREN_URL", cluster.node(1).chephren_url())
        .env("API_URL", cluster.node(0).api_url())
        .env("TOKEN", cluster.token())
        .env("READ_TOKEN", cluster.read_token())
        .env("SITES", sites.join("&"))
        .env("ARTIFACTS", &artifacts)
        .env("CHROMIUM", CHROMIUM)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot run node tests/browser/chephren.mjs");
    let mut requests = script.stdin.take().expect("the script's stdin");
    let mut lines = BufReader::new(script.stdout.take().expect("the script's stdout")).lines();

    let run = async {
        let mut passed = false;
        while let Some(line) = lines.next_line().await.expect("reading the script") {
            println!("{line}");
            if let Some(site) = line.strip_prefix("STOP ") {
                let i = sites
                    .iter()
                    .position(|s| s == site)
                    .unwrap_or_else(|| panic!("the script asked to stop unknown site {site:?}"));
                cluster.stop_daemon(i);
                requests
                    .write_all(b"stopped\n")
                    .await
                    .expect("answering the script");
            }
            passed |= line == "PASS";
        }
        let status: ExitStatus = script.wait().await.expect("waiting for the script");
        (status, passed)
    };
    let (status, passed) = tokio::time::timeout(SCRIPT_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("the browser script ran longer than {SCRIPT_TIMEOUT:?}"));
    assert!(
        status.success() && passed,
        "the browser script failed ({status}); its output is above, screenshots so far in {}",
        artifacts.display()
    );
    for name in SCREENSHOTS {
        let file = artifacts.join(format!("{name}.png"));
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{} is missing or blank", file.display());
    }
}
