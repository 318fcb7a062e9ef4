//! README's Performance table, made from a result file (`--out`) so that
//! nobody copies figures by hand: `cheops-bench --render FILE` prints it,
//! `--into README.md` replaces the table between [`BEGIN`] and [`END`].

use serde_json::Value;

use super::Failure;

/// The line before the table in README.md.
pub const BEGIN: &str = "<!-- cheops-bench --render: begin -->";
/// The line after it.
pub const END: &str = "<!-- cheops-bench --render: end -->";

/// The Markdown table of a run's figures, with a line naming the run: the
/// figures a run did not measure are left out.
pub fn table(run: &Value, name: &str) -> String {
    let m = &run["machine"];
    let p = &run["parameters"];
    let mut out = format!(
        "From `{name}`: commit {}, {} CPUs ({}), {} GiB, Linux {}, Node.js {}; \
         load average {} at the start, {} at the end.\n\n",
        text(&m["commit"]),
        m["cpus"],
        text(&m["cpu_model"]),
        m["memory_gib"],
        text(&m["kernel"]),
        text(&m["node"]),
        text(&m["load_average"]),
        text(&m["load_average_end"]),
    );
    out += "| figure | value | ÷ floor |\n|---|---|---|\n";
    let mut row = |figure: String, value: Option<String>, ratio: Option<f64>| {
        if let Some(value) = value {
            let ratio = ratio.map(|r| format!("{r:.2}")).unwrap_or_default();
            out += &format!("| {figure} | {value} | {ratio} |\n");
        }
    };
    let floor = &run["floor"];
    row(
        "floor round trip p50 / p95 / p99".into(),
        percentiles(floor),
        floor.is_object().then_some(1.0),
    );
    let exec = &run["exec_latency"];
    row(
        format!(
            "sequential exec (`true` on 3 sites), {} of them, p50 / p95 / p99",
            exec["count"]
        ),
        percentiles(exec),
        exec["ratio_to_floor"]["p50"].as_f64(),
    );
    traffic_rows(
        &mut row,
        "per sequential exec",
        &run["traffic_exec"],
        &run["traffic_floor"],
    );
    let load = &run["throughput"];
    row(
        format!(
            "throughput, {} clients over {} resources, {} s",
            p["clients"], p["resources"], p["duration_s"]
        ),
        load["ops_per_s"].as_f64().map(|ops| {
            let floor = run["throughput_floor"]["ops_per_s"].as_f64();
            let pairs = slice_pairs(&run["throughput_slices"])
                .map(|(low, high)| format!("; slice by slice {low:.2} to {high:.2} ×"));
            format!(
                "{ops} ops/s{}",
                with_floor(floor.map(|f| format!("{f} ops/s{}", pairs.unwrap_or_default())))
            )
        }),
        load["ratio_to_floor"].as_f64(),
    );
    let under_load = &run["load_latency"];
    row(
        "exec under that load p50 / p99 (÷ the sequential floor)".into(),
        p50_p99(under_load),
        under_load["ratio_to_floor"]["p50"].as_f64(),
    );
    row(
        "floor operation under that load p50 / p99".into(),
        p50_p99(&run["load_floor_latency"]),
        None,
    );
    traffic_rows(
        &mut row,
        "per operation under load",
        &run["traffic_load"],
        &run["traffic_load_floor"],
    );
    let converged = &run["convergence"];
    row(
        format!(
            "heal to converged, {} operations per site",
            converged["ops_per_site"]
        ),
        seconds(&converged["converged_s"]),
        None,
    );
    let history = &run["history"];
    row(
        format!(
            "{} sequential operations with a 32 KiB file: exec p50, first / last tenth",
            history["operations"]
        ),
        history["first_tenth"]["p50_ms"].as_f64().map(|first| {
            format!(
                "{first:.0} / {:.0} ms (× {})",
                history["last_tenth"]["p50_ms"].as_f64().unwrap_or_default(),
                history["p50_ratio_last_to_first"]
            )
        }),
        None,
    );
    row(
        "that resource's document at the end".into(),
        history["document_bytes"]
            .as_f64()
            .map(|b| format!("{:.1} KiB", b / 1024.0)),
        None,
    );
    growth_rows(&mut row, &run["growth"]);
    let stored = &run["stored"];
    let n = &stored["resources"];
    row(
        format!("{n} resources run by 2 sites"),
        seconds(&stored["ran_s"]),
        None,
    );
    row(
        format!("a restarted daemon catching up on {n} resources"),
        seconds(&stored["catch_up_s"]),
        None,
    );
    row(
        "… until its replies are back on site1".into(),
        seconds(&stored["settled_s"])
            .map(|s| format!("{s}{}", with_floor(seconds(&stored["catch_up_floor_s"])))),
        stored["settled_ratio_to_floor"].as_f64(),
    );
    traffic_rows(
        &mut row,
        "per resource caught up",
        &run["traffic_catch_up"],
        &run["traffic_catch_up_floor"],
    );
    row(
        "daemon RSS peak idle / under load / resources stored".into(),
        ["footprint_idle", "footprint_load", "footprint_stored"]
            .iter()
            .map(|phase| peak_rss(&run[*phase], "daemon"))
            .collect::<Option<Vec<_>>>()
            .map(|mib| format!("{} MiB", mib.join(" / "))),
        None,
    );
    for role in ["daemon", "commands", "sidecar"] {
        row(
            format!("{role} CPU per operation under load, per site"),
            cpu_per_operation(&run["footprint_load"], role),
            None,
        );
    }
    out
}

/// The growth part: memory and each page's p50 after N and after 10 N
/// operations.
fn growth_rows(row: &mut impl FnMut(String, Option<String>, Option<f64>), growth: &Value) {
    let (first, last) = (&growth["first"], &growth["last"]);
    let Some((n, ten_n)) = first["operations"]
        .as_u64()
        .zip(last["operations"].as_u64())
    else {
        return;
    };
    row(
        format!("database grown from {n} to {ten_n} operations (32 KiB file and output each): site1's documents"),
        Some(format!("{} → {}", first["documents"], last["documents"])),
        None,
    );
    let most = |stage: &Value, key: &str| -> f64 {
        stage[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .fold(0.0, f64::max)
    };
    row(
        format!(
            "daemon RSS idle after {n} / {ten_n} operations (peak while writing), most of 3 sites"
        ),
        Some(format!(
            "{:.1} / {:.1} MiB ({:.1} / {:.1})",
            most(first, "daemon_rss_idle_mib"),
            most(last, "daemon_rss_idle_mib"),
            most(first, "daemon_rss_peak_writing_mib"),
            most(last, "daemon_rss_peak_writing_mib"),
        )),
        None,
    );
    let pages = |stage: &Value| stage["pages"].as_array().cloned().unwrap_or_default();
    for (before, after) in pages(first).iter().zip(&pages(last)) {
        let p50 = |page: &Value| page["latency"]["p50_ms"].as_f64().unwrap_or_default();
        row(
            format!(
                "Chephren `/api/{}` p50 after {n} / {ten_n} operations",
                text(&before["page"])
            ),
            Some(format!(
                "{:.1} / {:.1} ms (× {:.2})",
                p50(before),
                p50(after),
                p50(after) / p50(before).max(f64::EPSILON)
            )),
            None,
        );
    }
}

/// `text` with the table between [`BEGIN`] and [`END`] replaced by `table`.
pub fn replace(text: &str, table: &str) -> Result<String, Failure> {
    let (before, rest) = text
        .split_once(BEGIN)
        .ok_or_else(|| format!("no line {BEGIN}"))?;
    let (_, after) = rest
        .split_once(END)
        .ok_or_else(|| format!("no line {END}"))?;
    Ok(format!("{before}{BEGIN}\n{table}{END}{after}"))
}

/// The sidecars' requests and bytes per operation, by site, with the
/// floor's.
fn traffic_rows(
    row: &mut impl FnMut(String, Option<String>, Option<f64>),
    per: &str,
    cheops: &Value,
    floor: &Value,
) {
    let sum = |t: &Value, f: &dyn Fn(&Value) -> f64| -> Option<f64> {
        t["sites"].as_array().map(|sites| sites.iter().map(f).sum())
    };
    let requests = |site: &Value| site["requests_per_op"].as_f64().unwrap_or_default();
    let kib = |site: &Value| {
        (site["bytes_in_per_op"].as_f64().unwrap_or_default()
            + site["bytes_out_per_op"].as_f64().unwrap_or_default())
            / 1024.0
    };
    let ratio =
        |f: &dyn Fn(&Value) -> f64| Some(sum(cheops, f)? / sum(floor, f)?.max(f64::EPSILON));
    row(
        format!("sidecar HTTP requests {per}, per site"),
        by_site(cheops, &requests, "")
            .map(|c| format!("{c}{}", with_floor(by_site(floor, &requests, "")))),
        ratio(&requests),
    );
    row(
        format!("sidecar KiB in+out {per}, per site"),
        by_site(cheops, &kib, "").map(|c| format!("{c}{}", with_floor(by_site(floor, &kib, "")))),
        ratio(&kib),
    );
}

fn by_site(traffic: &Value, f: &dyn Fn(&Value) -> f64, unit: &str) -> Option<String> {
    let sites = traffic["sites"].as_array()?;
    let values: Vec<String> = sites.iter().map(|s| format!("{:.1}", f(s))).collect();
    Some(format!("{}{unit}", values.join(" / ")))
}

fn with_floor(floor: Option<String>) -> String {
    floor.map(|f| format!(" (floor {f})")).unwrap_or_default()
}

fn percentiles(latency: &Value) -> Option<String> {
    let ms = |p: &str| latency[format!("{p}_ms")].as_f64();
    Some(format!(
        "{:.0} / {:.0} / {:.0} ms",
        ms("p50")?,
        ms("p95")?,
        ms("p99")?
    ))
}

fn p50_p99(latency: &Value) -> Option<String> {
    let ms = |p: &str| latency[format!("{p}_ms")].as_f64();
    Some(format!("{:.0} / {:.0} ms", ms("p50")?, ms("p99")?))
}

fn seconds(value: &Value) -> Option<String> {
    value.as_f64().map(|s| format!("{s:.1} s"))
}

/// The highest peak resident memory of `role`'s processes in a window.
fn peak_rss(footprint: &Value, role: &str) -> Option<String> {
    let peak = processes(footprint, role)?
        .filter_map(|p| p["peak_rss_mib"].as_f64())
        .fold(None, |max: Option<f64>, v| {
            Some(max.map_or(v, |m| m.max(v)))
        })?;
    Some(format!("{peak:.1}"))
}

fn cpu_per_operation(footprint: &Value, role: &str) -> Option<String> {
    let ops = footprint["operations"].as_f64()?.max(1.0);
    let values: Vec<String> = processes(footprint, role)?
        .map(|p| {
            format!(
                "{:.1}",
                p["cpu_s"].as_f64().unwrap_or_default() * 1000.0 / ops
            )
        })
        .collect();
    // Runs recorded before the commands were counted apart have none.
    (!values.is_empty()).then(|| format!("{} ms", values.join(" / ")))
}

fn processes<'a>(footprint: &'a Value, role: &'a str) -> Option<impl Iterator<Item = &'a Value>> {
    Some(
        footprint["processes"]
            .as_array()?
            .iter()
            .filter(move |p| p["role"] == role),
    )
}

/// The lowest and highest ratio of a Cheops slice's throughput to the
/// floor's slice of the same rank (the first of each, the second…): how far
/// one comparison moves within a run.
fn slice_pairs(slices: &Value) -> Option<(f64, f64)> {
    let side = |name: &str| -> Vec<f64> {
        slices
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["side"] == name)
            .filter_map(|s| s["ops_per_s"].as_f64())
            .collect()
    };
    let ratios: Vec<f64> = side("cheops")
        .iter()
        .zip(side("floor"))
        .filter(|(_, floor)| *floor > 0.0)
        .map(|(cheops, floor)| cheops / floor)
        .collect();
    let low = ratios.iter().copied().reduce(f64::min)?;
    let high = ratios.iter().copied().reduce(f64::max)?;
    Some((low, high))
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_shows_a_runs_figures_and_their_floors() {
        let run = json!({
            "machine": {"commit": "abc1234", "cpus": 2, "cpu_model": "CPU", "memory_gib": 8.0,
                        "kernel": "6.1", "node": "v20", "load_average": "1.00 1.00 1.00",
                        "load_average_end": "2.00 1.50 1.00"},
            "parameters": {"clients": 16, "resources": 64, "duration_s": 10.0},
            "floor": {"count": 30, "p50_ms": 200.0, "p95_ms": 250.0, "p99_ms": 300.0},
            "throughput": {"ops_per_s": 12.5, "ratio_to_floor": 0.5},
            "throughput_floor": {"ops_per_s": 25.0},
            "throughput_slices": [
                {"side": "floor", "ops_per_s": 20.0}, {"side": "cheops", "ops_per_s": 11.0},
                {"side": "cheops", "ops_per_s": 14.0}, {"side": "floor", "ops_per_s": 28.0},
            ],
            "traffic_load": {"sites": [{"requests_per_op": 10.0, "bytes_in_per_op": 1024.0, "bytes_out_per_op": 1024.0}]},
            "traffic_load_floor": {"sites": [{"requests_per_op": 5.0, "bytes_in_per_op": 512.0, "bytes_out_per_op": 512.0}]},
        });
        let table = table(&run, "run.json");
        assert!(
            table.starts_with("From `run.json`: commit abc1234, 2 CPUs"),
            "{table}"
        );
        assert!(
            table.contains("| floor round trip p50 / p95 / p99 | 200 / 250 / 300 ms | 1.00 |"),
            "{table}"
        );
        assert!(
            table.contains("| 12.5 ops/s (floor 25 ops/s; slice by slice 0.50 to 0.55 ×) | 0.50 |"),
            "{table}"
        );
        assert!(table.contains("| sidecar HTTP requests per operation under load, per site | 10.0 (floor 5.0) | 2.00 |"), "{table}");
        assert!(table.contains("| sidecar KiB in+out per operation under load, per site | 2.0 (floor 1.0) | 2.00 |"), "{table}");
        assert!(
            !table.contains("sequential exec"),
            "unmeasured figures are left out: {table}"
        );
    }

    #[test]
    fn the_readme_table_is_replaced_between_its_markers() {
        let readme = format!("intro\n{BEGIN}\nold\n{END}\nrest\n");
        assert_eq!(
            replace(&readme, "new\n").unwrap(),
            format!("intro\n{BEGIN}\nnew\n{END}\nrest\n")
        );
        assert!(replace("no markers", "new\n").is_err());
    }
}
