//! The sink and its writer against a scripted HTTP server on loopback: what
//! is retried, what is quarantined, what the request looks like, and that the
//! spool cursor moves only after a 2xx or a synced quarantine entry.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::sinks::delivery::{Delivery, WriteError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wardgate_model::{DeviceKind, DeviceRef, Event, Metric, Reading, TimeSource};

use super::*;
use crate::secret::SecretSource;
use crate::sinks::test_context;
use crate::spool::{Lane, Spool, SpoolLimits, SpoolReader};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    /// The body as text, ungzipped when it was sent compressed.
    fn text(&self) -> String {
        let mut text = String::new();
        if self.header("content-encoding") == Some("gzip") {
            flate2::read::GzDecoder::new(self.body.as_slice())
                .read_to_string(&mut text)
                .unwrap();
        } else {
            text = String::from_utf8_lossy(&self.body).into_owned();
        }
        text
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Answers each connection with the next scripted response (the last one
/// repeats) and records the requests.
async fn server(script: Vec<&'static str>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let mut n = 0;
    serve(move |_| {
        let r = script[n.min(script.len() - 1)];
        n += 1;
        r
    })
    .await
}

/// Answers each write request with what `respond` says for its body
/// (ungzipped), as InfluxDB judges a body by its content, and records the
/// requests.
async fn serve(
    mut respond: impl FnMut(&str) -> &'static str + Send + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                let k = s.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..k]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let mut lines = head.split("\r\n");
            let target = lines.next().unwrap().split(' ').nth(1).unwrap().to_owned();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(": "))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map_or(0, |(_, v)| v.parse().unwrap());
            while buf.len() < head_end + len {
                let k = s.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..k]);
            }
            let req = Seen {
                target: target.clone(),
                headers,
                body: buf[head_end..head_end + len].to_vec(),
            };
            let response = if target.starts_with("/api/v2/write") {
                respond(&req.text())
            } else {
                // The start-up readiness probe (GET /ready).
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            };
            {
                let mut seen = log.lock().unwrap();
                seen.push(req);
                // Only write requests are asserted on.
                seen.retain(|r| r.target.starts_with("/api/v2/write"));
            }
            let _ = s.write_all(response.as_bytes()).await;
            let _ = s.shutdown().await;
        }
    });
    (url, seen)
}

const STORED: &str = "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
const BUSY: &str = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const TOO_MANY: &str = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const BAD: &str = "HTTP/1.1 400 Bad Request\r\nContent-Length: 24\r\nConnection: close\r\n\r\nunable to parse 'x y z'\n";

fn config(url: &str, dir: &std::path::Path) -> InfluxDbConfig {
    let token = dir.join("token");
    std::fs::write(&token, "t0k\n").unwrap();
    // Secret files must be private to the gateway's user.
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut c: InfluxDbConfig =
        toml::from_str(&format!("url = \"{url}\"\norg = \"o\"\nbucket = \"b\"")).unwrap();
    c.token = Some(SecretSource::File(token));
    c.flush_interval = Duration::from_millis(10);
    c
}

fn identity() -> Identity {
    Identity {
        site: "s".into(),
        ward: "w".into(),
        gateway: "g".into(),
    }
}

fn readings(n: usize) -> Vec<Event> {
    let at: wardgate_model::Timestamp = "2026-11-27T10:00:00Z".parse().unwrap();
    (0..n)
        .map(|i| {
            Event::Reading(
                Reading::new(
                    at + chrono::Duration::seconds(i as i64),
                    TimeSource::Device,
                    "bed-1".into(),
                    Some(DeviceRef::new("ox-1".into(), DeviceKind::Ble)),
                    Metric::Spo2,
                    95.0,
                )
                .unwrap(),
            )
        })
        .collect()
}

fn spool(dir: &std::path::Path, events: &[Event]) -> Arc<Spool> {
    let limits = SpoolLimits {
        max_bytes: 1 << 20,
        max_age: Duration::from_secs(3600),
    };
    let spool = Arc::new(Spool::open(&dir.join("spool.redb"), limits, &["influx".into()]).unwrap());
    spool.append(chrono::Utc::now(), events).unwrap();
    spool
}

#[tokio::test]
async fn retries_503_and_429_then_stores_a_gzip_body_with_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (url, seen) = server(vec![BUSY, TOO_MANY, STORED]).await;
    let writer = InfluxWriter::new("influx", &config(&url, dir.path())).unwrap();
    let metrics = DeliveryMetrics::new();
    let text = "spo2,subject=bed-1 value=95.0 1795773600000000000\n";
    let outcome = writer
        .write_until_done(text, 1, &metrics, &CancellationToken::new())
        .await;
    assert!(matches!(outcome, Delivery::Stored), "{outcome:?}");
    let s = metrics.snapshot(chrono::Utc::now());
    assert_eq!((s.sent, s.retried), (3, 2));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    for req in seen.iter() {
        assert_eq!(req.target, "/api/v2/write?org=o&bucket=b&precision=ns");
        assert_eq!(req.header("authorization"), Some("Token t0k"));
        assert_eq!(req.header("content-encoding"), Some("gzip"));
        let mut body = String::new();
        flate2::read::GzDecoder::new(req.body.as_slice())
            .read_to_string(&mut body)
            .unwrap();
        assert_eq!(body, text);
    }
}

/// Every line refused: the batch is split down to single lines, each
/// refused on its own, so each is quarantined with the server's answer.
#[tokio::test]
async fn a_400_on_every_line_quarantines_each_and_moves_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let (url, seen) = server(vec![BAD]).await;
    let spool = spool(dir.path(), &readings(3));
    let exported = crate::sinks::metrics::SinkMetrics::default();
    let reader = SpoolReader::new(Arc::clone(&spool), "influx")
        .unwrap()
        .with_metrics(exported.clone());
    let quarantine = dir.path().join("q.jsonl");
    let sink = InfluxDbSink::new(
        "influx",
        config(&url, dir.path()),
        identity(),
        quarantine.clone(),
    )
    .unwrap()
    .with_metrics(exported.clone());
    let metrics = sink.metrics();
    // Drain from the start: deliver what is spooled, then stop.
    let drain = CancellationToken::new();
    drain.cancel();
    let acked = sink.run(test_context(reader, drain)).await.unwrap();
    assert_eq!(acked, 0);
    // 0..3 refused, split: 0..1 refused, 1..3 refused, split: 1..2, 2..3
    // refused. A request refused is never sent again as it was.
    let sizes: Vec<usize> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.text().lines().count())
        .collect();
    assert_eq!(sizes, [3, 1, 2, 1, 1]);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&quarantine)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for (l, e) in lines.iter().zip(readings(3)) {
        assert_eq!(l["status"], 400);
        assert_eq!(l["reason"], "unable to parse 'x y z'\n");
        assert_eq!(l["by"], "influx");
        assert_eq!(l["event"], serde_json::to_value(&e).unwrap());
    }
    // The device_status-free spool holds readings 1..=3 in the telemetry lane.
    assert_eq!(spool.cursor("influx", Lane::Telemetry).unwrap(), 3);
    assert_eq!(metrics.snapshot(chrono::Utc::now()).quarantined, 3);
    // On /metrics: sent once, quarantined, and acknowledged in the spool
    // (kept in the quarantine file), each with its delivery latency.
    let e = &exported;
    assert_eq!(
        (
            e.sent.get(),
            e.acknowledged.get(),
            e.quarantined.get(),
            e.retried.get(),
            e.dropped.get()
        ),
        (3, 3, 3, 0, 0)
    );
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register("latency", "h", e.latency.clone());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains("\nlatency_count 3\n"), "{text}");
}

#[tokio::test]
async fn stopping_while_the_server_is_down_keeps_everything_in_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on any more.
    let url = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let spool = spool(dir.path(), &readings(2));
    let reader = SpoolReader::new(Arc::clone(&spool), "influx").unwrap();
    let quarantine = dir.path().join("q.jsonl");
    let sink = InfluxDbSink::new(
        "influx",
        config(&url, dir.path()),
        identity(),
        quarantine.clone(),
    )
    .unwrap();
    let metrics = sink.metrics();
    let drain = CancellationToken::new();
    drain.cancel();
    sink.run(test_context(reader, drain)).await.unwrap();
    assert_eq!(spool.cursor("influx", Lane::Telemetry).unwrap(), 0);
    assert!(!quarantine.exists());
    let s = metrics.snapshot(chrono::Utc::now());
    // Already stopping: the first failure ends it, nothing is acknowledged.
    assert_eq!((s.acknowledged, s.retried, s.queued), (0, 1, 2));
}

#[tokio::test]
async fn a_full_batch_is_stored_and_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (url, seen) = server(vec![STORED]).await;
    let spool = spool(dir.path(), &readings(5));
    let reader = SpoolReader::new(Arc::clone(&spool), "influx").unwrap();
    let mut c = config(&url, dir.path());
    c.batch_max = 2;
    c.gzip = false;
    let sink = InfluxDbSink::new("influx", c, identity(), dir.path().join("q.jsonl")).unwrap();
    let drain = CancellationToken::new();
    drain.cancel();
    let acked = sink.run(test_context(reader, drain)).await.unwrap();
    assert_eq!(acked, 5);
    let seen = seen.lock().unwrap();
    // 5 records in batches of at most 2: 2 + 2 + 1 lines.
    let sizes: Vec<usize> = seen
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).lines().count())
        .collect();
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(seen[0].header("content-encoding"), None);
    assert_eq!(spool.cursor("influx", Lane::Telemetry).unwrap(), 5);
}

/// A wrong token or a missing bucket is the gateway's fault, not the
/// points': they are retried, never quarantined, and go through once fixed.
#[tokio::test]
async fn a_401_or_404_is_retried_never_quarantined() {
    const UNAUTHORIZED: &str = "HTTP/1.1 401 Unauthorized\r\nContent-Length: 13\r\nConnection: close\r\n\r\nunauthorized\n";
    const NO_BUCKET: &str = "HTTP/1.1 404 Not Found\r\nContent-Length: 19\r\nConnection: close\r\n\r\nbucket \"b\" not found";
    let dir = tempfile::tempdir().unwrap();
    let (url, seen) = server(vec![UNAUTHORIZED, NO_BUCKET, STORED]).await;
    let spool = spool(dir.path(), &readings(3));
    let reader = SpoolReader::new(Arc::clone(&spool), "influx").unwrap();
    let quarantine = dir.path().join("q.jsonl");
    let mut config = config(&url, dir.path());
    config.max_backoff = Duration::from_millis(100);
    let sink = InfluxDbSink::new("influx", config, identity(), quarantine.clone()).unwrap();
    let metrics = sink.metrics();
    let drain = CancellationToken::new();
    let run = tokio::spawn(sink.run(test_context(reader, drain.clone())));
    // Stored on the third answer: wait for the cursor, not for time.
    tokio::time::timeout(Duration::from_secs(30), async {
        while spool.cursor("influx", Lane::Telemetry).unwrap() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("stored once the server accepts");
    drain.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert!(!quarantine.exists(), "nothing is quarantined");
    let s = metrics.snapshot(chrono::Utc::now());
    assert_eq!((s.retried, s.quarantined), (2, 0));
}

/// An HTTPS server on loopback with a certificate from the test CA in
/// `gateway/testdata/tls/` (see `gen.sh` there): answers `/ready` with 200 and writes
/// with 204, and records each request's target and `Authorization`.
async fn tls_server() -> (String, Arc<Mutex<Vec<(String, Option<String>)>>>) {
    use tokio_rustls::rustls::{self, pki_types::pem::PemObject as _};
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(include_bytes!(
        "../../../../testdata/tls/server.pem"
    ))
    .collect::<Result<Vec<_>, _>>()
    .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(include_bytes!(
        "../../../../testdata/tls/server.key"
    ))
    .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            // A client that refuses the certificate ends the handshake.
            let Ok(mut s) = acceptor.accept(tcp).await else {
                continue;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let k = s.read(&mut chunk).await.unwrap();
                assert!(k > 0, "the request head ends early");
                buf.extend_from_slice(&chunk[..k]);
            }
            // Bodies are not read: the answer does not depend on them and
            // the connection is closed after it.
            let head = String::from_utf8_lossy(&buf).into_owned();
            let mut lines = head.split("\r\n");
            let target = lines.next().unwrap().split(' ').nth(1).unwrap().to_owned();
            let auth = lines
                .filter_map(|l| l.split_once(": "))
                .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v.to_owned());
            let response = if target == "/ready" {
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                STORED
            };
            log.lock().unwrap().push((target, auth));
            let _ = s.write_all(response.as_bytes()).await;
            let _ = s.shutdown().await;
        }
    });
    (url, seen)
}

#[tokio::test]
async fn https_trusts_the_configured_ca_and_nothing_else_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let (url, seen) = tls_server().await;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, include_bytes!("../../../../testdata/tls/ca.pem")).unwrap();
    let mut with_ca = config(&url, dir.path());
    with_ca.ca = Some(ca);
    with_ca.gzip = false;
    let writer = InfluxWriter::new("influx", &with_ca).unwrap();
    writer.ready().await.unwrap();
    writer.write("spo2 value=95.0 1\n").await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("/ready".to_owned(), Some("Token t0k".to_owned())),
            (
                "/api/v2/write?org=o&bucket=b&precision=ns".to_owned(),
                Some("Token t0k".to_owned())
            ),
        ]
    );

    // Without the CA only the public roots are trusted: the handshake fails
    // and nothing reaches the server.
    let writer = InfluxWriter::new("influx", &config(&url, dir.path())).unwrap();
    let err = writer.write("spo2 value=95.0 1\n").await.unwrap_err();
    assert!(matches!(err, WriteError::Network(_)), "{err:?}");
    assert!(matches!(writer.ready().await, Err(WriteError::Network(_))));
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn the_readiness_probe_wants_a_200_under_the_url_path() {
    // A path prefix (a reverse proxy) is kept, as for the write URL.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/influx/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let mut targets = Vec::new();
        for response in [
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 8\r\nConnection: close\r\n\r\nstarting",
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ] {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                let k = s.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..k]);
            }
            let head = String::from_utf8_lossy(&buf).into_owned();
            targets.push(head.split(' ').take(2).collect::<Vec<_>>().join(" "));
            s.write_all(response.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
        }
        targets
    });
    let dir = tempfile::tempdir().unwrap();
    let writer = InfluxWriter::new("influx", &config(&url, dir.path())).unwrap();
    let err = writer.ready().await.unwrap_err();
    assert!(
        matches!(&err, WriteError::Status { status: 503, body, .. } if body == "starting"),
        "{err:?}"
    );
    writer.ready().await.unwrap();
    assert_eq!(
        server.await.unwrap(),
        ["GET /influx/ready", "GET /influx/ready"]
    );
}

/// The spool order's timestamp (ns) of reading `i` of [`readings`]: how the
/// scripted servers below recognise a line.
mod refusals;
