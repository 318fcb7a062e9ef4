//! The deployment files: the Grid'5000 scripts (`deploy/g5k`: the dry run
//! and the scenario runner), the systemd settings template and the compose
//! files. Nothing here reaches Grid'5000 or needs Docker.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cheops_testkit::python::python_bin;
use cheops_testkit::{cheops_binary, Cluster};
use serde_json::{json, Value};

const PASSWORD: &str = "s3cret-Pass";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
        .to_path_buf()
}

/// A fresh directory of this test's own.
fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cheops-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("cannot create a temporary directory");
    dir
}

/// A folder holding an `enoslib` that cannot be imported: on the Python path,
/// it proves a script does without enoslib.
fn without_enoslib(dir: &Path) -> PathBuf {
    let package = dir.join("poisoned/enoslib");
    std::fs::create_dir_all(&package).expect("cannot create the fake enoslib");
    std::fs::write(
        package.join("__init__.py"),
        "raise ImportError('enoslib is not installed here')\n",
    )
    .expect("cannot write the fake enoslib");
    dir.join("poisoned")
}

fn deploy_py(args: &[&str], pythonpath: &Path) -> Output {
    Command::new("python3")
        .arg(repo().join("deploy/g5k/deploy.py"))
        .args(args)
        .env("PYTHONPATH", pythonpath)
        .env_remove("CHEOPS_G5K_COUCHDB_PASSWORD")
        .current_dir(repo())
        .output()
        .expect("cannot run python3")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_dry_run_prints_every_action_without_enoslib_or_grid5000() {
    let dir = tempdir("g5k-dry-run");
    let output = deploy_py(
        &[
            "--dry-run",
            "--g5k-site",
            "nantes",
            "--cluster",
            "econome",
            "--nodes",
            "3",
            "--binary",
            "/build/cheops",
            "--couchdb-password",
            PASSWORD,
        ],
        &without_enoslib(&dir),
    );
    let out = text(&output.stdout);
    assert!(output.status.success(), "{out}{}", text(&output.stderr));

    // The reservation.
    assert!(
        out.contains(
            "job 'cheops' on nantes: 3 nodes of cluster econome, walltime 02:00:00, \
             job types [], network prod"
        ),
        "{out}"
    );
    // CouchDB 3 from Apache's Debian repository, preseeded as a standalone
    // node on all interfaces with an admin account.
    for line in [
        "curl -fsSL https://couchdb.apache.org/repo/keys.asc | gpg --dearmor",
        "https://apache.jfrog.io/artifactory/couchdb-deb/ $VERSION_CODENAME main",
        "| couchdb couchdb/mode select standalone",
        "| couchdb couchdb/bindaddress string 0.0.0.0",
        "| couchdb couchdb/adminpass password ********",
        "| couchdb couchdb/cookie string ********",
        "debconf-set-selections /root/couchdb.debconf",
        "DEBIAN_FRONTEND=noninteractive apt-get install -y couchdb",
        "write /opt/couchdb/etc/local.d/50-cheops.ini",
        "| single_node = true",
        "| max_document_size = 8000000",
        "| n = 1",
        "| socket_options = [{keepalive, true}, {nodelay, true}]",
        "| secret = ********",
        "| bind_address = 0.0.0.0",
        "| admin = ********",
        "systemctl enable couchdb && systemctl restart couchdb",
        // The binary, its unit, and the daemon started.
        "copy /build/cheops to /usr/local/bin/cheops (mode 0755)",
        "write /etc/systemd/system/cheops.service (mode 0644, owner root:root)",
        "| deploy/systemd/cheops.service as it is",
        "systemctl daemon-reload && systemctl enable cheops && systemctl restart cheops",
        "http://127.0.0.1:8079/health",
        // The tokens, readable by the daemon only, never shown.
        "write /etc/cheops/token (mode 0640, owner root:cheops):\n    | ********\n",
        "write /etc/cheops/read-token (mode 0640, owner root:cheops):\n    | ********\n",
        "write /etc/cheops/node-token (mode 0640, owner root:cheops):\n    | ********\n",
        "\"token\": \"********\"",
        "\"read_token\": \"********\"",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(
        !out.contains(PASSWORD),
        "the dry run shows the password:\n{out}"
    );

    // Each node: its site name, its own CouchDB, and every other site as a
    // peer, by its host.
    let host = |i: usize| format!("econome-{i}.nantes.grid5000.fr");
    for i in 1..=3 {
        let heading = format!("== on {}: site site{i}\n", host(i));
        let start = out
            .find(&heading)
            .unwrap_or_else(|| panic!("no {heading:?}"));
        let section = &out[start + heading.len()..];
        let section = &section[..section.find("\n== ").unwrap_or(section.len())];
        for line in [
            "write /etc/cheops/cheops.env (mode 0640, owner root:cheops)".to_owned(),
            format!("|   MYFQDN=site{i}"),
            "|   CHEOPS_COUCHDB_URL=http://admin:********@127.0.0.1:5984/cheops".to_owned(),
            "|   CHEOPS_PEERS_FILE=/etc/cheops/peers.json".to_owned(),
            "|   CHEOPS_TOKEN_FILE=/etc/cheops/token".to_owned(),
            "|   CHEOPS_READ_TOKEN_FILE=/etc/cheops/read-token".to_owned(),
            "|   CHEOPS_NODE_TOKEN_FILE=/etc/cheops/node-token".to_owned(),
        ] {
            assert!(
                section.contains(&line),
                "site{i}: missing {line:?} in:\n{section}"
            );
        }
        for j in (1..=3).filter(|&j| j != i) {
            for line in [
                format!("|   \"site{j}\": {{"),
                format!(
                    "|     \"couchdb\": \"http://admin:********@{}:5984/cheops\"",
                    host(j)
                ),
                format!("|     \"api\": \"http://{}:8079\",", host(j)),
            ] {
                assert!(
                    section.contains(&line),
                    "site{i}: missing {line:?} in:\n{section}"
                );
            }
        }
        assert!(
            !section.contains(&format!("\"site{i}\"")),
            "site{i} is its own peer:\n{section}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_real_run_without_enoslib_says_how_to_install_it() {
    let dir = tempdir("g5k-no-enoslib");
    let output = deploy_py(&["--nodes", "2"], &without_enoslib(&dir));
    assert!(!output.status.success());
    let err = text(&output.stderr);
    assert!(
        err.contains("pip install --user -r deploy/g5k/requirements.txt"),
        "{err}"
    );
    assert!(output.stdout.is_empty(), "{}", text(&output.stdout));
    let _ = std::fs::remove_dir_all(&dir);
}

/// An `enoslib` that reserves three made-up hosts and records every call
/// (one JSON object per line, in `FAKE_ENOSLIB_LOG`) instead of reaching
/// Grid'5000.
const FAKE_ENOSLIB: &str = r#"
import json, os

def _record(entry):
    with open(os.environ["FAKE_ENOSLIB_LOG"], "a") as log:
        log.write(json.dumps(entry) + "\n")

def init_logging():
    pass

class G5kNetworkConf:
    def __init__(self, **settings):
        _record({"network": settings})

class G5kConf:
    @classmethod
    def from_settings(cls, **settings):
        _record({"job": settings})
        return cls()
    def add_network_conf(self, network):
        return self
    def add_machine(self, primary_network, **machine):
        _record({"machine": machine})
        self.machine = machine
        return self
    def finalize(self):
        return self

class Host:
    def __init__(self, address):
        self.address = address

class G5k:
    def __init__(self, conf):
        self.conf = conf
    def init(self):
        cluster = self.conf.machine["cluster"]
        # Not in name order, as a reservation may list them.
        hosts = [Host(f"{cluster}-{i}.test.grid5000.fr") for i in (2, 3, 1)]
        return {"cheops": hosts}, []
    def destroy(self):
        _record({"destroy": True})

class actions:
    def __init__(self, roles):
        self.hosts = [host.address for host in roles]
    def __enter__(self):
        return self
    def __exit__(self, *error):
        return False
    def shell(self, command, task_name):
        _record({"hosts": self.hosts, "shell": command, "why": task_name})
    def copy(self, task_name, **settings):
        _record({"hosts": self.hosts, "copy": settings, "why": task_name})
"#;

#[test]
fn a_real_run_applies_the_planned_steps_through_enoslib() {
    let dir = tempdir("g5k-fake-enoslib");
    let package = dir.join("fake/enoslib");
    std::fs::create_dir_all(&package).expect("cannot create the fake enoslib");
    std::fs::write(package.join("__init__.py"), FAKE_ENOSLIB).expect("cannot write it");
    let binary = dir.join("cheops");
    std::fs::write(&binary, "a binary").expect("cannot write a binary");
    let log = dir.join("enoslib.log");
    let inventory = dir.join("inventory.json");
    let run = |args: &[&str]| {
        Command::new("python3")
            .arg(repo().join("deploy/g5k/deploy.py"))
            .args(["--cluster", "grisou", "--nodes", "3"])
            .args(args)
            .env("PYTHONPATH", dir.join("fake"))
            .env("FAKE_ENOSLIB_LOG", &log)
            .current_dir(&dir)
            .output()
            .expect("cannot run python3")
    };
    let output = run(&[
        "--binary",
        "cheops",
        "--couchdb-password",
        PASSWORD,
        "--inventory",
        "inventory.json",
    ]);
    assert!(
        output.status.success(),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(!text(&output.stdout).contains(PASSWORD));
    let calls: Vec<Value> = std::fs::read_to_string(&log)
        .expect("enoslib was not called")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let host = |i: usize| format!("grisou-{i}.test.grid5000.fr");
    let all: Vec<String> = [2, 3, 1].into_iter().map(host).collect();

    assert_eq!(calls[0]["network"]["type"], "prod");
    assert_eq!(calls[1]["job"]["job_name"], "cheops");
    assert_eq!(calls[1]["job"]["walltime"], "02:00:00");
    assert_eq!(
        calls[2]["machine"],
        json!({"roles": ["cheops"], "cluster": "grisou", "nodes": 3})
    );
    let on = |hosts: &[String], what: &str| {
        calls.iter().any(|call| {
            call["hosts"] == json!(hosts)
                && (call["shell"].as_str().is_some_and(|c| c.contains(what))
                    || call["copy"].to_string().contains(what))
        })
    };
    assert!(on(&all, "apt-get install -y couchdb"));
    assert!(on(&all, "single_node = true"));
    assert!(on(&all, "systemctl enable couchdb"));
    let uploaded = calls
        .iter()
        .find(|call| call["copy"]["dest"] == "/usr/local/bin/cheops")
        .expect("the binary is not installed");
    assert_eq!(uploaded["copy"]["src"], binary.display().to_string());
    assert_eq!(uploaded["hosts"], json!(all));
    // Sites are named in the order of the host names.
    for i in 1..=3 {
        assert!(on(&[host(i)], &format!("MYFQDN=site{i}")), "site{i}");
        assert!(on(&[host(i)], "systemctl enable cheops"), "site{i}");
    }

    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&inventory).expect("no inventory written"))
            .expect("the inventory is not JSON");
    let token = written["site1"]["token"].as_str().expect("a token");
    let read_token = written["site1"]["read_token"]
        .as_str()
        .expect("a read token");
    assert!(token.len() >= 32 && read_token.len() >= 32 && token != read_token);
    assert_eq!(
        written["site1"],
        json!({
            "host": host(1),
            "api": format!("http://{}:8079", host(1)),
            "couchdb": format!("http://admin:{PASSWORD}@{}:5984/cheops", host(1)),
            "token": token,
            "read_token": read_token,
        })
    );
    // Every node gets the same tokens, in files the daemon's settings name;
    // the run's output never shows them.
    assert!(on(&all, token));
    assert!(on(&all, read_token));
    for i in 1..=3 {
        assert!(
            on(&[host(i)], "CHEOPS_TOKEN_FILE=/etc/cheops/token"),
            "site{i}"
        );
    }
    assert!(!text(&output.stdout).contains(token));
    let mode = std::fs::metadata(&inventory)
        .expect("inventory")
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    let released = run(&["--release"]);
    assert!(released.status.success(), "{}", text(&released.stderr));
    assert!(std::fs::read_to_string(&log)
        .expect("the log")
        .ends_with("{\"destroy\": true}\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_password_unsafe_in_urls_and_shells_is_refused() {
    let dir = tempdir("g5k-bad-password");
    let output = deploy_py(
        &["--dry-run", "--couchdb-password", "p@ss word"],
        &without_enoslib(&dir),
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stdout));
    assert!(
        text(&output.stderr).contains("--couchdb-password must be"),
        "{}",
        text(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_scenarios_pass_against_three_local_sites() {
    let cluster = Cluster::start(3).await;
    let inventory: Value = (0..cluster.len())
        .map(|i| {
            let node = cluster.node(i);
            (
                node.site.clone(),
                json!({"host": "127.0.0.1", "api": node.api_url(), "couchdb": node.couch_url(),
                       "token": cluster.token()}),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    let file = cluster.root().join("inventory.json");
    std::fs::write(&file, inventory.to_string()).expect("cannot write the inventory");

    let output = tokio::process::Command::new("python3")
        .arg(repo().join("deploy/g5k/scenarios.py"))
        .arg("--inventory")
        .arg(&file)
        .output()
        .await
        .expect("cannot run python3");
    let out = text(&output.stdout);
    assert!(output.status.success(), "{out}{}", text(&output.stderr));
    for scenario in ["health", "exec", "show", "concurrent", "convergence"] {
        assert!(out.contains(&format!("ok   {scenario} ")), "{out}");
    }
    assert!(out.ends_with("5 passed, 0 failed\n"), "{out}");
}

#[test]
fn the_settings_template_documents_every_setting_of_cheops_serve() {
    let help = Command::new(cheops_binary())
        .args(["serve", "--help"])
        .output()
        .expect("cannot run cheops serve --help");
    let help = text(&help.stdout);
    let variables: BTreeSet<&str> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .collect();
    assert!(variables.contains("MYFQDN"), "{help}");
    let template = std::fs::read_to_string(repo().join("deploy/systemd/cheops.env"))
        .expect("cannot read deploy/systemd/cheops.env");
    let documented: BTreeSet<&str> = template
        .lines()
        .filter_map(|line| line.trim_start_matches('#').split_once('='))
        .map(|(name, _)| name)
        .collect();
    for variable in variables.iter().chain(&["RUST_LOG"]) {
        assert!(
            documented.contains(variable),
            "deploy/systemd/cheops.env does not document {variable}"
        );
    }
    assert!(help.contains("--peer <"), "{help}");
    assert!(template.contains("--peer NAME=COUCHDB_URL,API_URL"));
}

/// A compose file as JSON, read by PyYAML (what `docker compose` accepts is
/// a superset: merge keys and all).
fn compose(name: &str) -> Value {
    let output = Command::new(python_bin().join("python"))
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(repo().join("deploy/compose").join(name))
        .output()
        .expect("cannot run python");
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("not JSON")
}

#[test]
fn the_compose_files_give_each_site_its_own_couchdb_and_the_others_as_peers() {
    let single = compose("compose.yml");
    let couchdb = &single["services"]["couchdb"];
    assert_eq!(couchdb["image"], "couchdb:3");
    assert_eq!(couchdb["environment"]["COUCHDB_USER"], "admin");
    let cheops = &single["services"]["cheops"];
    assert_eq!(cheops["build"]["dockerfile"], "deploy/compose/Dockerfile");
    let context = repo().join("deploy/compose").join(
        cheops["build"]["context"]
            .as_str()
            .expect("a build context"),
    );
    assert!(context.join("deploy/compose/Dockerfile").is_file());
    assert_eq!(
        cheops["environment"]["CHEOPS_COUCHDB_URL"],
        "http://admin:${COUCHDB_PASSWORD}@couchdb:5984/cheops"
    );
    assert!(
        cheops["volumes"]
            .as_array()
            .expect("volumes")
            .contains(&json!("cheops-data:/var/lib/cheops")),
        "the journal of results outlives the container"
    );
    // The daemon listens on its container's every interface: a token is
    // required, and compose refuses to start without one.
    assert!(cheops["environment"]["CHEOPS_TOKEN"]
        .as_str()
        .is_some_and(|v| v.starts_with("${CHEOPS_TOKEN:?")));
    for volume in couchdb["volumes"].as_array().expect("volumes") {
        let source = volume.as_str().expect("a short volume").split(':').next();
        if let Some(file) = source.filter(|s| s.starts_with("./")) {
            assert!(repo().join("deploy/compose").join(file).is_file(), "{file}");
        }
    }

    let three = compose("three-sites.yml");
    let services = &three["services"];
    for i in 1..=3 {
        assert_eq!(services[format!("couchdb{i}")]["image"], "couchdb:3");
        let site = &services[format!("site{i}")];
        assert_eq!(site["image"], "cheops:local");
        assert_eq!(site["environment"]["MYFQDN"], format!("site{i}"));
        assert_eq!(
            site["environment"]["CHEOPS_COUCHDB_URL"],
            format!("http://admin:${{COUCHDB_PASSWORD}}@couchdb{i}:5984/cheops")
        );
        assert_eq!(site["depends_on"], json!([format!("couchdb{i}")]));
        assert_eq!(
            site["volumes"],
            json!([format!("site{i}-data:/var/lib/cheops")]),
            "the journal of results outlives the container"
        );
        assert!(site["environment"]["CHEOPS_TOKEN"]
            .as_str()
            .is_some_and(|v| v.starts_with("${CHEOPS_TOKEN:?")));
        let peers: Vec<&str> = site["command"]
            .as_array()
            .expect("a command")
            .iter()
            .filter_map(Value::as_str)
            .filter(|arg| arg.starts_with("--peer="))
            .collect();
        let wanted: Vec<String> = (1..=3)
            .filter(|&j| j != i)
            .map(|j| {
                format!(
                    "--peer=site{j}=http://admin:${{COUCHDB_PASSWORD}}@couchdb{j}:5984/cheops,\
                     http://site{j}:8079"
                )
            })
            .collect();
        assert_eq!(peers, wanted, "site{i}");
    }
}
