//! The Grafana dashboard (`packaging/grafana/wardgate.json`). No Grafana is
//! installable from the registries this project uses (Debian has no
//! `grafana` package; PyPI's and npm's `grafana` packages are clients, not
//! the server), so the dashboard is not loaded into a real Grafana. What is
//! checked instead:
//! - its structure: the import inputs, unique panel ids, panels inside the
//!   24-column grid and not overlapping, every panel with queries whose data
//!   source is one of the two inputs, every `$variable` defined;
//! - every InfluxQL query against the schema the gateway writes, read from
//!   the encoder's own table (`wardgate::lineproto::shape`): the measurement
//!   exists, every quoted identifier is that measurement's tag or field,
//!   `GROUP BY`, regex matches and `$tag_x` aliases use tags only;
//! - every PromQL query against a real scrape of a running gateway's
//!   `/metrics`: each `wardgate_*` name is exposed, and each label used is
//!   one the series carry (or `instance`/`job`, added by the scraper).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use wardgate::lineproto::{Shape, shape};
use wardgate_e2e::{Gateway, free_port, http, wait_for, wait_port, workspace};
use wardgate_model::Metric;

const GRID_WIDTH: u64 = 24;
/// Variables Grafana defines itself.
const BUILT_IN: [&str; 4] = ["timeFilter", "__interval", "__rate_interval", "__range"];

fn dashboard() -> Value {
    let path = workspace().join("packaging/grafana/wardgate.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Every query of the dashboard: (where, data source uid, text, alias).
fn queries(d: &Value) -> Vec<(String, String, String, Option<String>)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            let text = t["query"]
                .as_str()
                .or(t["expr"].as_str())
                .unwrap_or_default();
            out.push((
                format!("panel {:?} {}", p["title"], t["refId"]),
                t["datasource"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                text.to_owned(),
                t["alias"]
                    .as_str()
                    .or(t["legendFormat"].as_str())
                    .map(str::to_owned),
            ));
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        let text = v["query"]
            .as_str()
            .or(v["query"]["query"].as_str())
            .unwrap_or_default();
        out.push((
            format!("variable {}", v["name"]),
            v["datasource"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            text.to_owned(),
            None,
        ));
    }
    out
}

#[test]
fn the_dashboard_is_importable_and_laid_out() {
    let dash = dashboard();
    assert!(dash["uid"].is_string() && dash["title"].is_string());
    assert!(dash["schemaVersion"].as_u64().unwrap() >= 36);
    let inputs: BTreeMap<String, String> = dash["__inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                format!("${{{}}}", i["name"].as_str().unwrap()),
                i["pluginId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        inputs.values().collect::<BTreeSet<_>>(),
        BTreeSet::from([&"influxdb".to_owned(), &"prometheus".to_owned()])
    );
    let panels = dash["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for p in panels {
        let title = &p["title"];
        assert!(ids.insert(p["id"].as_u64().unwrap()), "{title}: id reused");
        let grid = &p["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| grid[k].as_u64().unwrap());
        assert!(w > 0 && h > 0 && x + w <= GRID_WIDTH, "{title}: {grid}");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "{title} overlaps another panel");
            }
        }
        if p["type"] == "row" {
            continue;
        }
        let uid = p["datasource"]["uid"].as_str().unwrap();
        let kind = &inputs[uid];
        assert_eq!(p["datasource"]["type"].as_str(), Some(kind.as_str()));
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"].as_str(), Some(uid), "{title}");
        }
    }
    // Every variable a query uses is defined (or Grafana's own).
    let defined: BTreeSet<String> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .chain(BUILT_IN.map(str::to_owned))
        .collect();
    for (at, uid, text, _) in queries(&dash) {
        assert!(inputs.contains_key(&uid), "{at}: data source {uid}");
        for var in text.split('$').skip(1) {
            let name: String = var
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // A bare `$` ends a regex (`/^$bed$/`).
            assert!(
                name.is_empty() || defined.contains(&name),
                "{at}: ${name} is not defined"
            );
        }
    }
}

/// `text` without its single-quoted strings and `/regex/` literals.
fn without_literals(text: &str) -> String {
    let mut out = String::new();
    let mut in_lit = None;
    for c in text.chars() {
        match in_lit {
            Some(end) if c == end => in_lit = None,
            Some(_) => {}
            None if c == '\'' || c == '/' => in_lit = Some(c),
            None => out.push(c),
        }
    }
    out
}

/// The double-quoted identifiers of an InfluxQL text.
fn identifiers(text: &str) -> Vec<String> {
    without_literals(text)
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn is_metric(m: &str) -> bool {
    Metric::builtin(m).is_some()
}

/// The tags every measurement has.
fn common_tags() -> BTreeSet<&'static str> {
    ["device_status", "device_alarm", "alert", "silence", "spo2"]
        .iter()
        .map(|m| shape(m, is_metric).unwrap().tags.iter().copied().collect())
        .reduce(|a: BTreeSet<_>, b| a.intersection(&b).copied().collect())
        .unwrap()
}

#[test]
fn every_influxql_query_uses_only_the_schema() {
    let d = dashboard();
    let mut checked = 0;
    for (at, uid, text, alias) in queries(&d) {
        if uid != "${DS_INFLUXDB}" {
            continue;
        }
        checked += 1;
        let stripped = without_literals(&text);
        let measurement = stripped
            .split_once(" FROM \"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(m, _)| m.to_owned());
        let (tags, fields): (BTreeSet<&str>, BTreeSet<&str>) = match &measurement {
            Some(m) => {
                let Shape { tags, fields } =
                    shape(m, is_metric).unwrap_or_else(|| panic!("{at}: no measurement {m:?}"));
                (
                    tags.iter().copied().collect(),
                    fields.iter().copied().collect(),
                )
            }
            None => (common_tags(), BTreeSet::new()),
        };
        for id in identifiers(&text) {
            assert!(
                Some(&id) == measurement.as_ref()
                    || tags.contains(id.as_str())
                    || fields.contains(id.as_str()),
                "{at}: {id:?} is not a tag or field of {measurement:?}: {text}"
            );
        }
        // Grouping, regex matches and `WITH KEY` need tags, not fields.
        let group_by = stripped.split_once("GROUP BY").map_or("", |(_, g)| g);
        let mut need_tags = identifiers(group_by);
        need_tags.extend(
            stripped
                .split("\" =~")
                .map(|before| before.rsplit('"').next().unwrap_or_default().to_owned())
                .take(stripped.matches("\" =~").count()),
        );
        if let Some((_, key)) = stripped.split_once("WITH KEY = \"") {
            need_tags.push(key.split('"').next().unwrap_or_default().to_owned());
        }
        for tag in &need_tags {
            assert!(
                tags.contains(tag.as_str()),
                "{at}: {tag:?} is not a tag: {text}"
            );
        }
        // `$tag_x` in an alias names a tag the query groups by.
        for part in alias.iter().flat_map(|a| a.split("$tag_").skip(1)) {
            let tag: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                identifiers(group_by).contains(&tag),
                "{at}: alias uses $tag_{tag}, not grouped by: {text}"
            );
        }
    }
    assert!(checked >= 10, "only {checked} InfluxQL queries found");
}

/// Metric names and their labels from a scrape (`name{a="1",b="2"} v`).
fn scrape_labels(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().unwrap_or_default();
            out.entry(name.to_owned()).or_default();
        } else if !line.starts_with('#') && !line.is_empty() {
            let (name, labels) = match line.split_once('{') {
                Some((n, rest)) => (n, rest.split_once('}').map_or("", |(l, _)| l)),
                None => (line.split_whitespace().next().unwrap_or_default(), ""),
            };
            let set = out.entry(name.to_owned()).or_default();
            for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                set.insert(pair.split('=').next().unwrap_or_default().to_owned());
            }
        }
    }
    out
}

/// A running gateway's `/metrics`, once a device has been read.
fn scrape() -> String {
    let port = free_port();
    let mut gw = Gateway::start(&format!(
        r#"
[gateway]
site = "e2e"
ward = "ward-1"
id = "gw-dashboard"

[http]
listen = "127.0.0.1:{port}"

[spool]
path = "{{dir}}/spool.redb"

[[subjects]]
id = "bed-1"
kind = "bed"
devices = ["hr-1"]

[[devices]]
id = "hr-1"
type = "synthetic"
interval = "100ms"
signals = [{{ metric = "heart_rate", base = 72 }}]

[[sinks]]
type = "jsonl"
path = "{{dir}}/events.jsonl"
"#
    ));
    wait_port(port);
    // Series with labels appear once there is something to count.
    let text = wait_for("readings and events counted on /metrics", || {
        let (_, body) = http(port, "GET", "/metrics", None, "");
        (body.contains("wardgate_device_readings_total{")
            && body.contains("wardgate_events_total{"))
        .then_some(body)
    });
    gw.stop();
    text
}

#[test]
fn every_promql_query_uses_what_metrics_exposes() {
    let d = dashboard();
    let exposed = scrape_labels(&scrape());
    let mut checked = 0;
    for (at, uid, text, legend) in queries(&d) {
        if uid != "${DS_PROMETHEUS}" {
            continue;
        }
        checked += 1;
        let mut labels: BTreeSet<String> = ["instance", "job"].map(str::to_owned).into();
        let mut names = Vec::new();
        for (i, _) in text.match_indices("wardgate_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let Some(have) = exposed.get(&name) else {
                panic!("{at}: {name} is not on /metrics: {text}");
            };
            labels.extend(have.iter().cloned());
            names.push(name);
        }
        assert!(!names.is_empty(), "{at}: no wardgate metric: {text}");
        // Labels in selectors, `by (...)` and the legend.
        let mut used: Vec<String> = Vec::new();
        for sel in text.split('{').skip(1) {
            let inner = sel.split('}').next().unwrap_or_default();
            used.extend(
                inner
                    .split(',')
                    .filter_map(|m| m.split(['=', '!', '~']).next())
                    .map(|l| l.trim().to_owned())
                    .filter(|l| !l.is_empty()),
            );
        }
        for by in text.split("by (").skip(1) {
            used.extend(
                by.split(')')
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(|l| l.trim().to_owned()),
            );
        }
        for l in legend.iter().flat_map(|l| l.split("{{").skip(1)) {
            used.push(l.split("}}").next().unwrap_or_default().trim().to_owned());
        }
        for label in used {
            assert!(
                labels.contains(&label),
                "{at}: label {label:?} is not on {names:?}: {text}"
            );
        }
    }
    assert!(checked >= 5, "only {checked} PromQL queries found");
}
