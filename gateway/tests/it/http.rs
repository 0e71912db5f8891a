//! The HTTP API without a socket (`Router::oneshot`), with a real rules
//! engine answering the commands the way the pipeline's rules stage does.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt as _;
use wardgate::config::Config;
use wardgate::http::{Grant, HttpState, Role, View, router};
use wardgate::secret::SecretSource;
use wardgate_model::{DeviceId, DeviceKind, DeviceRef, Event, Metric, Reading, TimeSource};
use wardgate_rules::Engine;

/// `station-1`, a nurse's token.
const TOKEN: &str = "t0ken-for-tests";
/// `corridor`, a viewer's token.
const VIEWER: &str = "v1ewer-token";
/// `charge-nurse`, an admin's token.
const ADMIN: &str = "adm1n-token";

const CONFIG: &str = r#"
[gateway]
site = "s"
ward = "w"
id = "gw"

[[subjects]]
id = "bed-1"
kind = "bed"
name = "Bed 1"
devices = ["bed-1-wearable"]

[[devices]]
id = "bed-1-wearable"
type = "synthetic"
signals = [{ metric = "heart_rate", base = 70 }]

[[sinks]]
type = "jsonl"
path = "-"

[[staff]]
id = "ada"
name = "Nurse Ada"
role = "nurse"
subjects = ["bed-1"]

[[staff]]
id = "grace"
name = "Charge nurse Grace"
role = "charge_nurse"
"#;

struct Fixture {
    state: HttpState,
    engine: Arc<Mutex<Engine>>,
    _dir: tempfile::TempDir,
}

/// A state with three tokens (`station-1` a nurse's, `corridor` a viewer's,
/// `charge-nurse` an admin's), the view of [`CONFIG`], and a task that
/// applies commands to a real engine and feeds its events back.
fn fixture() -> Fixture {
    let config: Config =
        wardgate::config::parse(std::path::Path::new("test.toml"), CONFIG).expect("valid config");
    let dir = tempfile::tempdir().unwrap();
    let grant = |name: &str, token: &str, role: Role| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{token}\n")).unwrap();
        // Secret files must be private to the gateway's user.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        Grant {
            name: name.to_owned(),
            secret: SecretSource::File(path).resolve().unwrap(),
            role,
        }
    };
    let grants = vec![
        grant("station-1", TOKEN, Role::Nurse),
        grant("corridor", VIEWER, Role::Viewer),
        grant("charge-nurse", ADMIN, Role::Admin),
    ];
    let view = View::new(&config.subjects, &config.devices);
    let (state, mut commands) = HttpState::new(view, grants, None);
    let state = state.with_staff(config.staff.clone());
    let mut roster = wardgate::roster::Roster::new(
        config.staff.clone(),
        config.subjects.iter().map(|s| s.id.clone()).collect(),
    );
    let engine = Arc::new(Mutex::new(
        config.rules.engine(config.rule_set.clone()).unwrap(),
    ));
    let (e, s) = (Arc::clone(&engine), state.clone());
    tokio::spawn(async move {
        use wardgate::commands::{AlertCommand, CommandRejected};
        while let Some(cmd) = commands.recv().await {
            let now = chrono::Utc::now();
            let mut engine = e.lock().unwrap();
            match cmd {
                AlertCommand::Acknowledge { alert, who, reply } => {
                    let r = engine.acknowledge(now, &alert, who);
                    if let Ok(events) = &r {
                        s.apply(events);
                    }
                    let _ = reply.send(r.map(|_| ()).map_err(CommandRejected::from));
                }
                AlertCommand::Silence {
                    target,
                    until,
                    who,
                    reply,
                } => {
                    let r = engine.silence(now, target, until, who);
                    if let Ok(record) = &r {
                        s.apply(std::slice::from_ref(record));
                    }
                    let _ = reply.send(r.map(|_| ()).map_err(CommandRejected::from));
                }
                AlertCommand::Assign {
                    staff,
                    subjects,
                    reply,
                    ..
                } => {
                    let r = roster.assign(&staff, subjects);
                    let _ = reply.send(r.map_err(CommandRejected::from));
                }
            }
        }
    });
    Fixture {
        state,
        engine,
        _dir: dir,
    }
}

impl Fixture {
    /// One reading from bed 1's wearable through the engine into the view,
    /// as the pipeline commits it (the reading and what the engine derived).
    fn reading(&self, metric: Metric, value: f64) {
        let device = DeviceRef::new(DeviceId::from("bed-1-wearable"), DeviceKind::Synthetic);
        let now = chrono::Utc::now();
        let r = Reading::new(
            now,
            TimeSource::Gateway,
            "bed-1".into(),
            Some(device),
            metric,
            value,
        )
        .unwrap();
        let event = Event::Reading(r);
        let mut out = self.engine.lock().unwrap().handle_event(now, &event);
        out.push(event);
        self.state.apply(&out);
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let response = router(self.state.clone())
            .oneshot(req.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, json)
    }

    async fn alerts(&self) -> Vec<serde_json::Value> {
        let (status, v) = self.call("GET", "/api/alerts", None, "").await;
        assert_eq!(status, StatusCode::OK);
        v["alerts"].as_array().unwrap().clone()
    }
}

#[tokio::test]
async fn writes_need_a_valid_bearer_token() {
    let f = fixture();
    let silence = r#"{"subject":"bed-1","minutes":5}"#;
    for token in [None, Some("wrong"), Some("")] {
        let (status, _) = f.call("POST", "/api/alerts/x/ack", token, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "ack with {token:?}");
        let (status, _) = f.call("POST", "/api/silence", token, silence).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "silence with {token:?}");
    }
    // Reads need no token.
    let (status, _) = f.call("GET", "/api/alerts", None, "").await;
    assert_eq!(status, StatusCode::OK);
}

/// A viewer reads; a nurse also acknowledges and silences a subject; only an
/// admin silences a rule for the whole ward. The scheme is case-insensitive.
#[tokio::test]
async fn each_role_may_do_what_it_is_for_and_no_more() {
    let f = fixture();
    f.reading(Metric::BatteryLevel, 12.0);
    let id = f.alerts().await[0]["id"]
        .as_str()
        .unwrap()
        .replace('/', "%2F");
    let ack = format!("/api/alerts/{id}/ack");
    let subject = r#"{"subject":"bed-1","minutes":5}"#;
    let rule = r#"{"rule":"battery_low","minutes":5}"#;
    for (token, (uri, body), want) in [
        (VIEWER, (ack.as_str(), ""), StatusCode::FORBIDDEN),
        (VIEWER, ("/api/silence", subject), StatusCode::FORBIDDEN),
        (TOKEN, ("/api/silence", rule), StatusCode::FORBIDDEN),
        (TOKEN, ("/api/silence", subject), StatusCode::OK),
        (ADMIN, ("/api/silence", rule), StatusCode::OK),
        (TOKEN, (ack.as_str(), ""), StatusCode::OK),
    ] {
        let (status, answer) = f.call("POST", uri, Some(token), body).await;
        assert_eq!(status, want, "{token} {uri} {body}: {answer}");
        if want == StatusCode::FORBIDDEN {
            assert!(
                answer["error"].as_str().unwrap().starts_with("token `"),
                "{answer}"
            );
        }
    }
    let (_, metrics) = f.call("GET", "/metrics", None, "").await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("wardgate_http_unauthorized_total 3"),
        "{metrics}"
    );
    // `bearer`, `BEARER`: the scheme is case-insensitive (RFC 9110 11.1).
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let request = Request::builder()
            .method("POST")
            .uri("/api/silence")
            .header(header::AUTHORIZATION, format!("{scheme} {ADMIN}"))
            .body(Body::from(subject))
            .unwrap();
        let response = router(f.state.clone()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
    }
}

/// With `reads_need_token`, the API, the event stream and `/metrics` need a
/// token of any role; the page's own files and the probes stay open.
#[tokio::test]
async fn reads_can_be_made_to_need_a_token() {
    let mut f = fixture();
    f.state = f.state.clone().with_reads_need_token(true);
    for uri in [
        "/api/alerts",
        "/api/subjects",
        "/api/devices",
        "/api/silences",
        "/api/events",
        "/metrics",
    ] {
        let (status, _) = f.call("GET", uri, None, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} without a token");
        let (status, _) = f.call("GET", uri, Some("wrong"), "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri} with a wrong token");
        if uri != "/api/events" {
            let (status, _) = f.call("GET", uri, Some(VIEWER), "").await;
            assert_eq!(status, StatusCode::OK, "{uri} with a viewer's token");
        }
    }
    for uri in PAGE.iter().chain(&["/healthz", "/readyz"]) {
        let (status, _) = f.call("GET", uri, None, "").await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn acknowledge_records_the_token_name_and_by() {
    let f = fixture();
    // technical pack: battery_level < battery_low_pct (20) raises battery_low.
    f.reading(Metric::BatteryLevel, 12.0);
    let alerts = f.alerts().await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["rule"], "battery_low");
    assert_eq!(alerts[0]["state"], "active");
    let id = alerts[0]["id"].as_str().unwrap().to_owned();
    // Alert ids contain `/`: a client percent-encodes them in the path.
    let path = format!("/api/alerts/{}/ack", id.replace('/', "%2F"));

    let (status, body) = f
        .call("POST", &path, Some(TOKEN), r#"{"by":"nurse-a"}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["by"], "nurse-a@station-1");
    let alerts = f.alerts().await;
    assert_eq!(alerts[0]["state"], "acknowledged");
    assert_eq!(alerts[0]["acknowledged"]["by"], "nurse-a@station-1");
    assert_eq!(alerts[0]["acknowledged"]["via"], "http:station-1");

    let (status, _) = f.call("POST", &path, Some(TOKEN), "").await;
    assert_eq!(status, StatusCode::CONFLICT, "acknowledged twice");
    let (status, body) = f
        .call("POST", "/api/alerts/no-such-alert/ack", Some(TOKEN), "")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("no-such-alert"));
    let (status, _) = f.call("POST", &path, Some(TOKEN), "not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn silence_checks_its_target_and_duration() {
    let f = fixture();
    let cases = [
        (r#"{"subject":"bed-1","minutes":15}"#, StatusCode::OK),
        (r#"{"rule":"battery_low","minutes":15}"#, StatusCode::OK),
        (
            r#"{"subject":"bed-99","minutes":15}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            r#"{"rule":"no_such_rule","minutes":15}"#,
            StatusCode::NOT_FOUND,
        ),
        (
            r#"{"subject":"bed-1","minutes":0}"#,
            StatusCode::BAD_REQUEST,
        ),
        (
            r#"{"subject":"bed-1","rule":"battery_low","minutes":5}"#,
            StatusCode::BAD_REQUEST,
        ),
        (r#"{"minutes":5}"#, StatusCode::BAD_REQUEST),
    ];
    for (body, want) in cases {
        // An admin's token: silencing a rule for every subject needs one.
        let (status, answer) = f.call("POST", "/api/silence", Some(ADMIN), body).await;
        assert_eq!(status, want, "{body}: {answer}");
    }
    // While bed 1 is silenced, a low battery raises nothing.
    f.reading(Metric::BatteryLevel, 12.0);
    assert!(f.alerts().await.is_empty());
}

#[tokio::test]
async fn subjects_devices_and_metrics_show_the_latest_readings() {
    let f = fixture();
    f.reading(Metric::HeartRate, 72.0);
    f.reading(Metric::BatteryLevel, 15.0);
    let (status, v) = f.call("GET", "/api/subjects", None, "").await;
    assert_eq!(status, StatusCode::OK);
    let bed = &v["subjects"][0];
    assert_eq!(bed["id"], "bed-1");
    assert_eq!(bed["name"], "Bed 1");
    assert_eq!(bed["vitals"]["heart_rate"]["value"], 72.0);
    assert_eq!(bed["vitals"]["heart_rate"]["unit"], "/min");
    assert_eq!(bed["history"]["heart_rate"].as_array().unwrap().len(), 1);

    let (_, v) = f.call("GET", "/api/devices", None, "").await;
    let d = &v["devices"][0];
    assert_eq!(d["id"], "bed-1-wearable");
    assert_eq!(d["readings"], 2);
    assert_eq!(d["battery"], 15.0);
    assert_eq!(d["battery_low"], true);

    let (status, text) = f.call("GET", "/metrics", None, "").await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap();
    assert!(
        text.contains("wardgate_device_readings_total{device=\"bed-1-wearable\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("wardgate_events_total{type=\"reading\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("wardgate_alerts{state=\"active\"} 1\n"),
        "{text}"
    );

    let (status, text) = f.call("GET", "/healthz", None, "").await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, Some("ok\n")));
    let (status, text) = f.call("GET", "/readyz", None, "").await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, Some("ready\n")));
}

#[tokio::test]
async fn the_page_is_served_without_any_token_in_it() {
    let f = fixture();
    for &path in PAGE.iter().filter(|p| !p.starts_with("/icons/")) {
        let (status, body) = f.call("GET", path, None, "").await;
        let body = match body {
            serde_json::Value::String(_) => body,
            json => serde_json::Value::String(json.to_string()), // the manifest
        };
        assert_eq!(status, StatusCode::OK, "{path}");
        let body = body.as_str().unwrap();
        assert!(!body.contains(TOKEN), "{path}");
        assert!(
            !body.contains("http://") || path == "/app.js",
            "{path} links elsewhere"
        );
    }
}

/// The page's files: the shell the service worker keeps, and the worker.
const PAGE: &[&str] = &[
    "/",
    "/app.js",
    "/signals.js",
    "/alerting.js",
    "/sw.js",
    "/style.css",
    "/manifest.webmanifest",
    "/icons/icon-192.png",
    "/icons/icon-512.png",
];

/// The installable page: each file with its content type; the manifest's
/// icons are served PNGs of the sizes it says; the service worker keeps
/// exactly the page's files (and so never an API answer).
#[tokio::test]
async fn the_web_app_files_are_served_with_their_types() {
    let f = fixture();
    let mut bodies = std::collections::BTreeMap::new();
    for &uri in PAGE {
        let response = router(f.state.clone())
            .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        let kind = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let expected = match uri.rsplit_once('.').map_or("html", |(_, ext)| ext) {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "webmanifest" => "application/manifest+json",
            "png" => "image/png",
            _ => "text/html; charset=utf-8",
        };
        assert_eq!(kind, expected, "{uri}");
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        bodies.insert(uri, body);
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&bodies["/manifest.webmanifest"]).unwrap();
    assert_eq!(manifest["start_url"], "/");
    for icon in manifest["icons"].as_array().unwrap() {
        let png = &bodies[icon["src"].as_str().unwrap()];
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{icon}");
        let side = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
        // IHDR: width at 16, height at 20.
        assert_eq!(
            format!("{}x{}", side(16), side(20)),
            icon["sizes"].as_str().unwrap(),
            "{icon}"
        );
    }
    let worker = std::str::from_utf8(&bodies["/sw.js"]).unwrap();
    let kept: Vec<&str> = worker
        .split_once("const SHELL = [")
        .and_then(|(_, rest)| rest.split_once("];"))
        .expect("sw.js lists its SHELL")
        .0
        .split(',')
        .map(|p| p.trim().trim_matches('"'))
        .filter(|p| !p.is_empty())
        .collect();
    let mut page: Vec<&str> = PAGE.iter().copied().filter(|p| *p != "/sw.js").collect();
    page.sort_unstable();
    let mut kept_sorted = kept.clone();
    kept_sorted.sort_unstable();
    assert_eq!(
        kept_sorted, page,
        "the service worker keeps the page's files, no more"
    );
}

/// `/metrics` tells, per sink and lane, how much its peer has not confirmed
/// and for how long.
#[tokio::test]
async fn metrics_show_each_sinks_backlog_and_its_age() {
    use wardgate::http::SpoolProbe;
    use wardgate::spool::{Lane, Spool, SpoolLimits};

    let config: Config =
        wardgate::config::parse(std::path::Path::new("test.toml"), CONFIG).expect("valid config");
    let dir = tempfile::tempdir().unwrap();
    let limits = SpoolLimits {
        max_bytes: 1 << 30,
        max_age: std::time::Duration::from_secs(7 * 24 * 3600),
    };
    let spool =
        Arc::new(Spool::open(&dir.path().join("s.redb"), limits, &["mqtt".into()]).unwrap());
    let appended = chrono::Utc::now() - chrono::TimeDelta::seconds(90);
    let reading = |v: f64| {
        Event::Reading(
            Reading::new(
                appended,
                TimeSource::Gateway,
                "bed-1".into(),
                None,
                Metric::HeartRate,
                v,
            )
            .unwrap(),
        )
    };
    spool
        .append(appended, &[reading(70.0), reading(71.0), reading(72.0)])
        .unwrap();
    spool.ack("mqtt", Lane::Telemetry, 1).unwrap();
    let view = View::new(&config.subjects, &config.devices);
    let probe = SpoolProbe {
        spool,
        max_bytes: limits.max_bytes,
    };
    let (state, _commands) = HttpState::new(view, Vec::new(), Some(probe));
    let response = router(state)
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = String::from_utf8(
        axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("wardgate_sink_backlog_records{sink=\"mqtt\",lane=\"telemetry\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("wardgate_sink_backlog_records{sink=\"mqtt\",lane=\"alert\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("wardgate_sink_backlog_age_seconds{sink=\"mqtt\",lane=\"alert\"} 0.0\n"),
        "{text}"
    );
    let age: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("wardgate_sink_backlog_age_seconds{sink=\"mqtt\",lane=\"telemetry\"} ")
        })
        .expect("telemetry age line")
        .parse()
        .unwrap();
    // Appended 90 s ago; the test may take a while on a loaded machine.
    assert!((90.0..600.0).contains(&age), "age {age}");
}

/// The view follows a bounded broadcast of committed batches. When it falls
/// behind (here: more batches than the broadcast holds arrive before it
/// reads any), the batch that raised an alert is lost to it — and it must
/// not stay lost: the view resynchronises its open alerts from the spool.
#[tokio::test]
async fn a_view_that_fell_behind_gets_its_alerts_back_from_the_spool() {
    use wardgate::http::{SpoolProbe, follow};
    use wardgate::spool::{Spool, SpoolLimits};

    let mut f = fixture();
    let spool_dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(
        Spool::open(
            &spool_dir.path().join("spool.redb"),
            SpoolLimits {
                max_bytes: 1 << 30,
                max_age: std::time::Duration::from_secs(3600),
            },
            &["jsonl".to_owned()],
        )
        .unwrap(),
    );
    let config: Config =
        wardgate::config::parse(std::path::Path::new("test.toml"), CONFIG).expect("valid config");
    let (state, _commands) = HttpState::new(
        View::new(&config.subjects, &config.devices),
        Vec::new(),
        Some(SpoolProbe {
            spool: Arc::clone(&spool),
            max_bytes: 1 << 30,
        }),
    );
    f.state = state;
    // An alert, committed to the spool as the pipeline does.
    let now = chrono::Utc::now();
    let low = Event::Reading(
        Reading::new(
            now,
            TimeSource::Gateway,
            "bed-1".into(),
            None,
            Metric::Glucose,
            45.0,
        )
        .unwrap(),
    );
    let raised = f.engine.lock().unwrap().handle_event(now, &low);
    assert!(raised.iter().any(|e| matches!(e, Event::Alert(_))));
    spool.append(now, &raised).unwrap();

    let committed = f.state.committed();
    let rx = committed.subscribe();
    committed.send(raised.clone().into()).unwrap();
    // A burst the view cannot keep up with: the alert's batch is overwritten.
    let reading = Event::Reading(
        Reading::new(
            now,
            TimeSource::Gateway,
            "bed-1".into(),
            None,
            Metric::HeartRate,
            70.0,
        )
        .unwrap(),
    );
    for _ in 0..2000 {
        let _ = committed.send(vec![reading.clone()].into());
    }
    let follower = tokio::spawn(follow(f.state.clone(), rx));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let alerts = f.alerts().await;
        if alerts.iter().any(|a| a["rule"] == "hypoglycaemia") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the alert never came back: {alerts:?}"
        );
        tokio::task::yield_now().await;
    }
    // The loss is counted for operators.
    let (_, metrics) = f.call("GET", "/metrics", None, "").await;
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("wardgate_http_sse_lagged_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
    follower.abort();
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let f = fixture();
    for uri in ["/", "/app.js", "/sw.js", "/api/alerts", "/healthz"] {
        let response = router(f.state.clone())
            .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let h = response.headers();
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{uri}: {csp}"
        );
        // The page registers its service worker and reads its manifest.
        assert!(
            csp.contains("worker-src 'self'") && csp.contains("manifest-src 'self'"),
            "{uri}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY", "{uri}");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{uri}");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer", "{uri}");
    }
}

/// DNS rebinding: a web page that points its own name at the gateway's
/// address reaches it with its own name in `Host`; only the gateway's own
/// names are served.
#[tokio::test]
async fn only_the_gateways_own_host_names_are_served() {
    let mut f = fixture();
    let http: wardgate::http::HttpConfig = toml::from_str("listen = \"127.0.0.1:8080\"").unwrap();
    f.state = f.state.clone().with_hosts(http.hosts());
    let get = |host: Option<&str>| {
        let mut req = Request::builder().uri("/api/alerts");
        if let Some(h) = host {
            req = req.header(header::HOST, h);
        }
        router(f.state.clone()).oneshot(req.body(Body::empty()).unwrap())
    };
    for good in [
        Some("127.0.0.1:8080"),
        Some("localhost:8080"),
        Some("LOCALHOST:8080"),
        None,
    ] {
        assert_eq!(
            get(good).await.unwrap().status(),
            StatusCode::OK,
            "{good:?}"
        );
    }
    for bad in [
        "attacker.example:8080",
        "attacker.example",
        "127.0.0.1:9999",
    ] {
        assert_eq!(
            get(Some(bad)).await.unwrap().status(),
            StatusCode::MISDIRECTED_REQUEST,
            "{bad}"
        );
    }
    // Listening on every address without a list: any host (the operator
    // names the box's names in `allowed_hosts`).
    let open: wardgate::http::HttpConfig = toml::from_str("listen = \"0.0.0.0:8080\"").unwrap();
    assert_eq!(open.hosts(), None);
    let named: wardgate::http::HttpConfig = toml::from_str(
        "listen = \"0.0.0.0:8080\"\nallowed_hosts = [\"gw-ward-7.hospital.example:8080\"]",
    )
    .unwrap();
    assert!(
        named
            .hosts()
            .unwrap()
            .contains(&"gw-ward-7.hospital.example:8080".to_owned())
    );
}

#[tokio::test]
async fn a_name_that_could_pass_for_another_station_is_refused() {
    let f = fixture();
    for by in ["nurse@station-2", "nurse\u{202e}2-noitats", "a\u{0007}b"] {
        let body = serde_json::json!({ "by": by }).to_string();
        let (status, v) = f
            .call("POST", "/api/alerts/x/ack", Some(TOKEN), &body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{by:?}: {v}");
    }
}

/// A body far larger than any acknowledgement is refused before it is read.
#[tokio::test]
async fn an_oversized_body_is_refused_unread() {
    let f = fixture();
    let by = "a".repeat(64 * 1024);
    let body = serde_json::json!({ "by": by }).to_string();
    let (status, v) = f
        .call("POST", "/api/alerts/x/ack", Some(TOKEN), &body)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
}

/// Open event streams are bounded; a client beyond the bound is told when to
/// retry, and a stream that closes frees its place.
#[tokio::test]
async fn event_streams_are_bounded_and_freed_when_closed() {
    let f = fixture();
    let open = || {
        router(f.state.clone()).oneshot(
            Request::builder()
                .uri("/api/events")
                .body(Body::empty())
                .unwrap(),
        )
    };
    let mut streams = Vec::new();
    for _ in 0..wardgate::http::MAX_EVENT_STREAMS {
        let r = open().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
        streams.push(r);
    }
    let refused = open().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()[header::RETRY_AFTER], "5");
    let bytes = axum::body::to_bytes(refused.into_body(), 1 << 16)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("too many event streams"),
        "{v}"
    );
    streams.pop();
    assert_eq!(open().await.unwrap().status(), StatusCode::OK);
}

/// One client address holds at most its share of event streams; another
/// client still gets one, and each refusal is counted.
#[tokio::test]
async fn one_client_cannot_take_every_event_stream() {
    let f = fixture();
    let open = |ip: [u8; 4]| {
        let mut request = Request::builder()
            .uri("/api/events")
            .body(Body::empty())
            .unwrap();
        request
            .extensions_mut()
            .insert(wardgate::http::ClientAddr((ip, 40000).into()));
        router(f.state.clone()).oneshot(request)
    };
    let greedy = [10, 0, 0, 7];
    let mut streams = Vec::new();
    for _ in 0..wardgate::http::MAX_EVENT_STREAMS_PER_CLIENT {
        let r = open(greedy).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        streams.push(r);
    }
    let refused = open(greedy).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let bytes = axum::body::to_bytes(refused.into_body(), 1 << 16)
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&bytes).contains("this client has 8 event streams open"),
        "{bytes:?}"
    );
    assert_eq!(open([10, 0, 0, 8]).await.unwrap().status(), StatusCode::OK);
    // A stream closed gives the client its place back.
    streams.pop();
    assert_eq!(open(greedy).await.unwrap().status(), StatusCode::OK);
    let (_, metrics) = f.call("GET", "/metrics", None, "").await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("wardgate_http_streams_refused_total 1\n"),
        "{metrics}"
    );
}

/// A connection from `ip` (any 127.0.0.0/8 address reaches loopback on
/// Linux, so tests can play several client machines).
async fn connect_from(ip: [u8; 4], to: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((ip, 0).into()).unwrap();
    socket.connect(to).await.unwrap()
}

/// One client address holds at most its share of the connections: its next
/// one is closed at once, unanswered, while other clients are served; a
/// connection it closes gives it its place back.
#[tokio::test]
async fn one_client_cannot_take_every_connection() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let f = fixture();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(wardgate::http::serve(
        listener,
        router(f.state.clone()),
        None,
    ));
    let greedy = [127, 0, 0, 2];
    let mut held = Vec::new();
    for _ in 0..wardgate::http::MAX_CONNECTIONS_PER_CLIENT {
        held.push(connect_from(greedy, addr).await);
    }
    let healthz = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    // Well within the header timeout: closed at once, not timed out.
    let soon = wardgate::http::HEADER_READ_TIMEOUT / 2;
    let mut extra = connect_from(greedy, addr).await;
    let _ = extra.write_all(healthz).await;
    let mut answer = Vec::new();
    // End of stream, or a reset if the close beat our request.
    let _ended = tokio::time::timeout(soon, extra.read_to_end(&mut answer))
        .await
        .expect("the extra connection is closed at once");
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    let get = |from: [u8; 4]| async move {
        let mut c = connect_from(from, addr).await;
        c.write_all(healthz).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(soon, c.read_to_string(&mut answer))
            .await
            .expect("answered")
            .map(|_| answer)
    };
    let other = get([127, 0, 0, 3]).await.unwrap();
    assert!(other.starts_with("HTTP/1.1 200"), "{other}");
    // The greedy client closes one: once the server has seen it go, the
    // client is served again.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + soon;
    loop {
        if let Ok(a) = get(greedy).await
            && a.starts_with("HTTP/1.1 200")
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never served again");
        tokio::task::yield_now().await;
    }
    server.abort();
}

/// Idle or slow clients cannot hold the server: a connection that never
/// finishes its request head is closed after the header timeout, and a
/// client waiting behind a full set of such connections is then served.
#[tokio::test]
async fn idle_connections_are_closed_and_cannot_starve_others() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    let f = fixture();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(wardgate::http::serve(
        listener,
        router(f.state.clone()),
        None,
    ));
    // Every slot taken: half by clients that send nothing, half by clients
    // that stop in the middle of their headers.
    // From several client addresses, none over its own share.
    let mut idle = Vec::new();
    for i in 0..wardgate::http::MAX_CONNECTIONS {
        let from = [127, 0, 0, 10 + (i / 16) as u8];
        let mut c = connect_from(from, addr).await;
        if i % 2 == 0 {
            c.write_all(b"GET /api/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .await
                .unwrap();
        }
        idle.push(c);
    }
    let mut late = TcpStream::connect(addr).await.unwrap();
    late.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let limit = wardgate::http::HEADER_READ_TIMEOUT * 3;
    let mut answer = String::new();
    tokio::time::timeout(limit, late.read_to_string(&mut answer))
        .await
        .expect("the late client is served once the idle ones are closed")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");
    for (i, mut c) in idle.into_iter().enumerate() {
        let mut rest = Vec::new();
        // Closed by the server: end of stream (possibly after a 408).
        let read = tokio::time::timeout(limit, c.read_to_end(&mut rest))
            .await
            .unwrap_or_else(|_| panic!("idle connection {i} is still open"));
        assert!(read.is_ok() || rest.is_empty(), "{read:?}");
    }
    server.abort();
}

/// With `[http] tls`, the page and API are served over HTTPS with the
/// configured certificate (a client trusting its CA gets answers; plain HTTP
/// on that port gets none); a key file others can read, or a certificate
/// file that is missing, stops the start with a message naming it.
#[tokio::test]
async fn https_serves_with_the_configured_certificate() {
    use std::os::unix::fs::PermissionsExt as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use wardgate::http::HttpsConfig;

    let tls = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/tls");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("https.key");
    std::fs::copy(tls.join("server.key"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = |cert: &std::path::Path| HttpsConfig {
        cert: cert.to_owned(),
        key: SecretSource::File(key.clone()),
    };
    let acceptor = wardgate::http::tls_acceptor(&config(&tls.join("server.pem"))).unwrap();

    let f = fixture();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(wardgate::http::serve(
        listener,
        router(f.state.clone()),
        Some(acceptor),
    ));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(tls.join("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls_stream = connector.connect(name, tcp).await.expect("TLS handshake");
    tls_stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // A peer may end TLS without close_notify; the answer is what counts.
    let _ = tls_stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");

    // Plain HTTP on the HTTPS port: no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        wardgate::http::HEADER_READ_TIMEOUT * 2,
        plain.read_to_end(&mut answer),
    )
    .await
    .expect("the plain connection is closed");
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"),
        "{answer:?}"
    );
    server.abort();

    // Start-up errors name the file and what to do.
    let missing = dir.path().join("missing.pem");
    let refused = |cert: &std::path::Path| match wardgate::http::tls_acceptor(&config(cert)) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    let e = refused(&missing);
    assert!(
        e.starts_with(&format!("[http] tls: certificate {}: ", missing.display())),
        "{e}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = refused(&tls.join("server.pem"));
    assert!(e.contains("chmod 600"), "{e}");
}

/// `GET /api/staff` shows who covers what; an admin changes it at shift
/// change (`PUT /api/staff/{id}/subjects`), a nurse may not; unknown staff
/// or subjects are refused and change nothing.
#[tokio::test]
async fn assignments_are_shown_and_changed_by_an_admin() {
    let f = fixture();
    let (status, body) = f.call("GET", "/api/staff", None, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["staff"],
        serde_json::json!([
            {"id": "ada", "name": "Nurse Ada", "role": "nurse", "subjects": ["bed-1"]},
            {"id": "grace", "name": "Charge nurse Grace", "role": "charge_nurse", "subjects": []},
        ])
    );
    let none = r#"{"subjects":[]}"#;
    let (status, _) = f
        .call("PUT", "/api/staff/ada/subjects", Some(TOKEN), none)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a nurse's token");
    let (status, _) = f.call("PUT", "/api/staff/ada/subjects", None, none).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = f
        .call("PUT", "/api/staff/zoe/subjects", Some(ADMIN), none)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = f
        .call(
            "PUT",
            "/api/staff/ada/subjects",
            Some(ADMIN),
            r#"{"subjects":["bed-9"]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = f
        .call("PUT", "/api/staff/ada/subjects", Some(ADMIN), none)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = f.call("GET", "/api/staff", None, "").await;
    assert_eq!(body["staff"][0]["subjects"], serde_json::json!([]));
}

/// `GET /api/page`: the layout, and each rule's description and plain-words
/// advice for a patient at home (the built-in packs carry it).
#[tokio::test]
async fn the_page_learns_its_layout_and_what_each_alert_asks_of_a_patient() {
    let mut f = fixture();
    let (status, body) = f.call("GET", "/api/page", None, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["layout"], "ward");
    let config: Config =
        wardgate::config::parse(std::path::Path::new("test.toml"), CONFIG).expect("valid config");
    f.state = f
        .state
        .clone()
        .with_page(wardgate::http::Layout::Home, &config.rule_set);
    let (_, body) = f.call("GET", "/api/page", None, "").await;
    assert_eq!(body["layout"], "home");
    let rules = body["rules"].as_array().unwrap();
    let advice = |id: &str| {
        rules
            .iter()
            .find(|r| r["id"] == id)
            .and_then(|r| r["advice"].as_str())
            .map(str::to_owned)
    };
    assert!(
        advice("hypoglycaemia")
            .unwrap()
            .starts_with("Your blood sugar is low. Eat or drink 15 to 20 grams of fast sugar"),
        "{body}"
    );
    // A ward-only rule has no advice for patients.
    assert_eq!(advice("news2"), None);
}
