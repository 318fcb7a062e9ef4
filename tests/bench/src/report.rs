//! What a run found: a table for people and one JSON object with every
//! figure, the parameters and the machine.

use std::fmt::Write;

use serde_json::{json, Map, Value};

use super::convergence::Converged;
use super::growth::{Grown, Stage};
use super::history::Growth;
use super::machine;
use super::stats::{round, Latencies};
use super::stored::Stored;
use super::throughput::Load;
use super::traffic::Counts;
use super::usage::Window;
use super::Params;

const MIB: f64 = 1024.0 * 1024.0;

/// One slice of the throughput part, floor's or Cheops'.
pub struct Slice {
    floor: bool,
    ops_per_s: f64,
    completed: usize,
    /// Averaged over the sites.
    sidecar_ms_per_op: f64,
    daemon_ms_per_op: f64,
    commands_ms_per_op: f64,
}

impl Slice {
    pub fn new(floor: bool, load: &Load, usage: &Window) -> Slice {
        let per_op = |role: &str| {
            let used = usage.of(role);
            let cpu: f64 = used.iter().map(|u| u.cpu_seconds).sum();
            cpu * 1000.0 / (used.len().max(1) * load.completed.max(1)) as f64
        };
        Slice {
            floor,
            ops_per_s: load.per_second(),
            completed: load.completed,
            sidecar_ms_per_op: per_op("sidecar"),
            daemon_ms_per_op: per_op("daemon"),
            commands_ms_per_op: per_op("commands"),
        }
    }
}

/// The processes of a site, as [`Window`] names them, and what a row calls
/// them.
const PROCESSES: [(&str, &str); 2] = [("daemon", "daemons'"), ("sidecar", "sidecars'")];
/// What spends CPU at a site: its processes and the commands its daemon ran.
const SPENDERS: [(&str, &str); 3] = [
    ("daemon", "daemons'"),
    ("commands", "commands'"),
    ("sidecar", "sidecars'"),
];

/// One line of the table: a figure, or one figure per site.
#[derive(Debug, Clone)]
struct Row {
    part: &'static str,
    figure: String,
    values: Vec<f64>,
    unit: &'static str,
    /// The figure divided by the floor's (latencies, throughput, catch-up).
    ratio: Option<f64>,
}

/// The figures of a run, in the order they were measured.
#[derive(Debug, Clone)]
pub struct Report {
    rows: Vec<Row>,
    json: Map<String, Value>,
}

impl Report {
    pub fn new(params: &Params) -> Report {
        let mut json = Map::new();
        json.insert(
            "parameters".into(),
            json!({
                "samples": params.samples,
                "clients": params.clients,
                "resources": params.resources,
                "duration_s": params.duration.as_secs_f64(),
                "ops": params.ops,
                "history": params.history,
                "growth": params.growth,
                "stored": params.stored,
                "idle_s": params.idle.as_secs_f64(),
                "parts": params.parts.iter().map(|p| p.name()).collect::<Vec<_>>(),
            }),
        );
        json.insert("machine".into(), machine::describe());
        Report {
            rows: Vec::new(),
            json,
        }
    }

    fn row(
        &mut self,
        part: &'static str,
        figure: impl Into<String>,
        values: Vec<f64>,
        unit: &'static str,
    ) {
        self.rows.push(Row {
            part,
            figure: figure.into(),
            values,
            unit,
            ratio: None,
        });
    }

    pub fn floor(&mut self, floor: &Latencies) {
        for (name, ms) in floor.named() {
            self.row("floor", format!("round trip {name}"), vec![ms], "ms");
        }
        self.json.insert("floor".into(), floor.to_json());
    }

    /// Latency percentiles, each with its ratio to the floor's.
    pub fn latency(
        &mut self,
        part: &'static str,
        label: &str,
        latencies: &Latencies,
        floor: Option<&Latencies>,
    ) {
        let mut value = latencies.to_json();
        let mut ratios = Map::new();
        for (n, (name, ms)) in latencies.named().into_iter().enumerate() {
            self.row(part, format!("{label} {name}"), vec![ms], "ms");
            if let Some(floor) = floor {
                let ratio = ms / floor.named()[n].1.max(f64::EPSILON);
                ratios.insert(name.into(), json!(round(ratio, 2)));
                if let Some(row) = self.rows.last_mut() {
                    row.ratio = Some(ratio);
                }
            }
        }
        if floor.is_some() {
            value["ratio_to_floor"] = Value::Object(ratios);
        }
        self.json
            .insert(format!("{}_latency", part.replace('-', "_")), value);
    }

    pub fn convergence(&mut self, converged: &Converged) {
        self.row(
            "convergence",
            format!("heal to converged, {} ops per site", converged.ops_per_site),
            vec![converged.elapsed.as_secs_f64()],
            "s",
        );
        self.json.insert(
            "convergence".into(),
            json!({
                "ops_per_site": converged.ops_per_site,
                "converged_s": round(converged.elapsed.as_secs_f64(), 3),
                "merged_operations": converged.operations,
            }),
        );
    }

    /// Throughput of `part` (`load`, or its floor `load-floor`), with its
    /// ratio to the floor's when there is one.
    pub fn throughput(
        &mut self,
        part: &'static str,
        load: &Load,
        floor_load: Option<&Load>,
        floor: Option<&Latencies>,
    ) {
        self.row(
            part,
            "completed operations",
            vec![load.per_second()],
            "ops/s",
        );
        let ratio = floor_load.map(|f| load.per_second() / f.per_second().max(f64::EPSILON));
        if let Some(row) = self.rows.last_mut() {
            row.ratio = ratio;
        }
        self.row(
            part,
            "operations not replied by every site",
            vec![load.incomplete as f64],
            "ops",
        );
        let label = match floor_load {
            Some(_) => "exec under load",
            None => "floor operation under load",
        };
        self.latency(part, label, &load.latencies(), floor);
        let mut value = json!({
            "ops_per_s": round(load.per_second(), 2),
            "completed": load.completed,
            "incomplete": load.incomplete,
            "elapsed_s": round(load.elapsed.as_secs_f64(), 3),
        });
        if let Some(ratio) = ratio {
            value["ratio_to_floor"] = json!(round(ratio, 2));
        }
        let key = match floor_load {
            Some(_) => "throughput",
            None => "throughput_floor",
        };
        self.json.insert(key.into(), value);
    }

    /// Each throughput slice in the order it ran: what the part's two
    /// figures average, so that a run shows how far its slices spread.
    pub fn slices(&mut self, slices: &[Slice]) {
        let each: Vec<Value> = slices
            .iter()
            .map(|slice| {
                json!({
                    "side": if slice.floor { "floor" } else { "cheops" },
                    "ops_per_s": round(slice.ops_per_s, 2),
                    "completed": slice.completed,
                    "sidecar_cpu_ms_per_op": round(slice.sidecar_ms_per_op, 2),
                    "daemon_cpu_ms_per_op": round(slice.daemon_ms_per_op, 2),
                    "commands_cpu_ms_per_op": round(slice.commands_ms_per_op, 2),
                })
            })
            .collect();
        let order: Vec<&str> = slices
            .iter()
            .map(|slice| if slice.floor { "floor" } else { "cheops" })
            .collect();
        self.row(
            "load",
            format!("completed operations per slice ({})", order.join(", ")),
            slices.iter().map(|slice| slice.ops_per_s).collect(),
            "ops/s",
        );
        self.json
            .insert("throughput_slices".into(), Value::Array(each));
    }

    pub fn history(&mut self, growth: &Growth) {
        let n = growth.operations;
        let p50 = |l: &Latencies| l.named()[0].1;
        self.row(
            "history",
            format!("exec p50, first tenth of {n} ops with 32 KiB files"),
            vec![p50(&growth.first)],
            "ms",
        );
        self.row(
            "history",
            "exec p50, last tenth",
            vec![p50(&growth.last)],
            "ms",
        );
        self.row(
            "history",
            "last tenth / first tenth",
            vec![growth.ratio()],
            "x",
        );
        self.row(
            "history",
            "resource document at the end",
            vec![growth.document_bytes as f64 / 1024.0],
            "KiB",
        );
        self.json.insert(
            "history".into(),
            json!({
                "operations": n,
                "first_tenth": growth.first.to_json(),
                "last_tenth": growth.last.to_json(),
                "p50_ratio_last_to_first": round(growth.ratio(), 2),
                "document_bytes": growth.document_bytes,
            }),
        );
    }

    /// The daemons' memory and each page's answer time, after N
    /// operations and after 10 N.
    pub fn growth(&mut self, grown: &Grown) {
        let (first, last) = (&grown.first, &grown.last);
        let daemons = |window: &Window, peak: bool| -> Vec<f64> {
            window
                .of("daemon")
                .iter()
                .map(|u| (if peak { u.peak_rss } else { u.end_rss }) as f64 / MIB)
                .collect()
        };
        for stage in [first, last] {
            self.row(
                "growth",
                format!("daemon RSS idle after {} operations", stage.operations),
                daemons(&stage.idle, false),
                "MiB",
            );
            self.row(
                "growth",
                format!("daemon RSS peak while writing up to {}", stage.operations),
                daemons(&stage.writing, true),
                "MiB",
            );
        }
        for ((page, before, _), (_, after, _)) in first.pages.iter().zip(&last.pages) {
            self.row(
                "growth",
                format!(
                    "Chephren /api/{page} p50 after {} / {}",
                    first.operations, last.operations
                ),
                vec![before.named()[0].1, after.named()[0].1],
                "ms",
            );
        }
        let stage_json = |stage: &Stage| {
            let mib =
                |values: Vec<f64>| values.into_iter().map(|m| round(m, 1)).collect::<Vec<_>>();
            json!({
                "operations": stage.operations,
                "documents": stage.documents,
                "daemon_rss_idle_mib": mib(daemons(&stage.idle, false)),
                "daemon_rss_peak_writing_mib": mib(daemons(&stage.writing, true)),
                "pages": stage.pages.iter().map(|(page, latencies, read)| json!({
                    "page": page,
                    "latency": latencies.to_json(),
                    "sidecar_bytes_read": read,
                })).collect::<Vec<_>>(),
            })
        };
        self.json.insert(
            "growth".into(),
            json!({ "first": stage_json(first), "last": stage_json(last) }),
        );
    }

    pub fn stored(&mut self, stored: &Stored) {
        let n = stored.count;
        let rate = |d: std::time::Duration| n as f64 / d.as_secs_f64().max(f64::EPSILON);
        self.row(
            "stored",
            format!("bulk write of {n} resources"),
            vec![stored.write.as_secs_f64()],
            "s",
        );
        self.row(
            "stored",
            format!("2 sites ran {n} resources"),
            vec![stored.ran.as_secs_f64()],
            "s",
        );
        self.row(
            "stored",
            "2 sites ran, rate",
            vec![rate(stored.ran)],
            "res/s",
        );
        self.row(
            "stored",
            format!("restarted daemon caught up on {n}"),
            vec![stored.catch_up.as_secs_f64()],
            "s",
        );
        self.row(
            "stored",
            "catch-up rate",
            vec![rate(stored.catch_up)],
            "res/s",
        );
        self.row(
            "stored",
            "its replies back on site1",
            vec![stored.settled.as_secs_f64()],
            "s",
        );
        let ratio = stored.settled.as_secs_f64() / stored.floor.as_secs_f64().max(f64::EPSILON);
        if let Some(row) = self.rows.last_mut() {
            row.ratio = Some(ratio);
        }
        self.row(
            "stored",
            format!("floor: {n} replies in bulk, on site1"),
            vec![stored.floor.as_secs_f64()],
            "s",
        );
        self.cpu_per_operation("stored-ran", &stored.ran_usage, n);
        self.rss_peak("stored-ran", &stored.ran_usage);
        self.cpu_per_operation("catch-up", &stored.catch_up_usage, n);
        self.rss_peak("catch-up", &stored.catch_up_usage);
        self.traffic("catch-up", &stored.catch_up_traffic, n);
        self.traffic("catch-up-floor", &stored.floor_traffic, n);
        self.json.insert(
            "stored".into(),
            json!({
                "resources": n,
                "write_s": round(stored.write.as_secs_f64(), 3),
                "ran_s": round(stored.ran.as_secs_f64(), 3),
                "catch_up_s": round(stored.catch_up.as_secs_f64(), 3),
                "settled_s": round(stored.settled.as_secs_f64(), 3),
                "catch_up_floor_s": round(stored.floor.as_secs_f64(), 3),
                "settled_ratio_to_floor": round(ratio, 2),
            }),
        );
    }

    /// The HTTP requests and bytes each sidecar served per operation over a
    /// window in which `ops` operations completed.
    pub fn traffic(&mut self, phase: &'static str, traffic: &[Counts], ops: usize) {
        let per_op = |n: u64| n as f64 / ops.max(1) as f64;
        self.row(
            phase,
            "sidecar requests per operation (per site)",
            traffic.iter().map(|c| per_op(c.total_requests())).collect(),
            "req",
        );
        self.row(
            phase,
            "sidecar bytes in+out per operation (per site)",
            traffic
                .iter()
                .map(|c| per_op(c.bytes_in + c.bytes_out) / 1024.0)
                .collect(),
            "KiB",
        );
        let sites: Vec<Value> = traffic
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let kinds: Map<String, Value> = c
                    .requests
                    .iter()
                    .map(|(kind, n)| (kind.clone(), json!(round(per_op(*n), 2))))
                    .collect();
                json!({
                    "site": format!("site{}", i + 1),
                    "requests_per_op": round(per_op(c.total_requests()), 2),
                    "bytes_in_per_op": round(per_op(c.bytes_in), 0),
                    "bytes_out_per_op": round(per_op(c.bytes_out), 0),
                    "requests_per_op_by_kind": kinds,
                })
            })
            .collect();
        self.json.insert(
            format!("traffic_{}", phase.replace('-', "_")),
            json!({ "operations": ops, "sites": sites }),
        );
    }

    /// Memory of every daemon and sidecar over a window, and the CPU each
    /// spent, the daemon's commands apart.
    pub fn footprint(&mut self, phase: &'static str, window: &Window) {
        self.rss_peak(phase, window);
        for (role, whose) in SPENDERS {
            self.row(
                phase,
                format!(
                    "{whose} CPU in {:.0} s ({})",
                    window.seconds,
                    window.sites(role)
                ),
                window.of(role).iter().map(|u| u.cpu_seconds).collect(),
                "CPU s",
            );
        }
        self.window(phase, window, None);
    }

    fn rss_peak(&mut self, phase: &'static str, window: &Window) {
        for (role, whose) in PROCESSES {
            self.row(
                phase,
                format!("{whose} RSS peak ({})", window.sites(role)),
                window
                    .of(role)
                    .iter()
                    .map(|u| u.peak_rss as f64 / MIB)
                    .collect(),
                "MiB",
            );
        }
    }

    /// The CPU every daemon, its commands and every sidecar spent per
    /// operation, over a window in which `ops` operations (or floor round
    /// trips) completed: where the work goes.
    pub fn cpu_per_operation(&mut self, phase: &'static str, window: &Window, ops: usize) {
        for (role, whose) in SPENDERS {
            self.row(
                phase,
                format!("{whose} CPU per operation ({})", window.sites(role)),
                window
                    .of(role)
                    .iter()
                    .map(|u| u.cpu_seconds * 1000.0 / ops.max(1) as f64)
                    .collect(),
                "ms",
            );
        }
        self.window(phase, window, Some(ops));
    }

    fn window(&mut self, phase: &'static str, window: &Window, ops: Option<usize>) {
        let processes: Vec<Value> = window
            .used
            .iter()
            .map(|u| {
                json!({
                    "role": u.process.role,
                    "site": u.process.site,
                    "cpu_s": round(u.cpu_seconds, 3),
                    "peak_rss_mib": round(u.peak_rss as f64 / MIB, 1),
                    "end_rss_mib": round(u.end_rss as f64 / MIB, 1),
                })
            })
            .collect();
        self.json.insert(
            format!("footprint_{}", phase.replace('-', "_")),
            json!({ "window_s": round(window.seconds, 3), "operations": ops, "processes": processes }),
        );
    }

    /// Every figure, the parameters and the machine (with its load
    /// average now, at the end of the run).
    pub fn to_json(&self) -> Value {
        let mut json = Value::Object(self.json.clone());
        json["machine"]["load_average_end"] = json!(machine::load_average());
        json
    }

    /// The table printed on standard output.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let machine = &self.json["machine"];
        let _ = writeln!(
            out,
            "machine: {} CPUs ({}), {} GiB, Linux {}, Node.js {}, commit {}",
            machine["cpus"],
            machine["cpu_model"].as_str().unwrap_or("?"),
            machine["memory_gib"],
            machine["kernel"].as_str().unwrap_or("?"),
            machine["node"].as_str().unwrap_or("?"),
            machine["commit"].as_str().unwrap_or("?"),
        );
        let figure_width = self
            .rows
            .iter()
            .map(|r| r.figure.len())
            .max()
            .unwrap_or(0)
            .max(6);
        let values: Vec<String> = self.rows.iter().map(|r| format_values(&r.values)).collect();
        let value_width = values.iter().map(String::len).max().unwrap_or(0).max(5);
        let _ = writeln!(
            out,
            "{:<12} {:<figure_width$} {:>value_width$} {:<6} {:>7}",
            "part", "figure", "value", "unit", "x floor"
        );
        for (row, value) in self.rows.iter().zip(values) {
            let ratio = row.ratio.map(|r| format!("{r:.2}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<12} {:<figure_width$} {:>value_width$} {:<6} {:>7}",
                row.part, row.figure, value, row.unit, ratio
            );
        }
        out
    }
}

/// One value, or several separated by slashes, with sensible precision.
fn format_values(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| {
            if v.abs() >= 100.0 {
                format!("{v:.0}")
            } else if v.abs() >= 10.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.2}")
            }
        })
        .collect::<Vec<_>>()
        .join(" / ")
}
