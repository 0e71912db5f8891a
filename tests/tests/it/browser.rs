//! The nurse-station page in headless Chromium (driven over WebDriver by
//! chromedriver) against `wardgate demo`:
//!
//! - at a desk: an alert shows up, the nurse enters the station token, clicks
//!   Acknowledge and sees the alert acknowledged; writes without a token are
//!   refused (401). Screenshot: `target/browser-test/nurse-station.png`.
//! - on a phone (`browser/phone.rs`): alarm signals, the phone layout, the web app
//!   parts and the connection-lost banner.
//!
//! The two never run at once (one demo and one browser at a time).
//! Chromium is required, not optional: without it this test fails with a
//! message saying how to install it (`.ci/run` installs it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use nix::sys::signal::Signal;
use wardgate_e2e::{free_port, http, signal, wait_exit, wait_for, wait_port, wardgate_bin};

mod phone;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Held by each browser test for its whole run.
fn one_browser_at_a_time() -> MutexGuard<'static, ()> {
    static BROWSER: Mutex<()> = Mutex::new(());
    BROWSER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Kills a child process when the test ends, passing or not.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn require(path: &str, what: &str) {
    assert!(
        Path::new(path).exists(),
        "{what} not found at {path}: run `scripts/test`, which installs the test peers \
         (or `apt-get install chromium chromium-driver`)"
    );
}

fn artifact_dir() -> PathBuf {
    // target/<profile>/wardgate → target/browser-test
    let bin = wardgate_bin();
    let target = bin
        .parent()
        .and_then(Path::parent)
        .expect("the binary lives in target/<profile>");
    let dir = target.join("browser-test");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `wardgate demo` on `port`, its log in `log`; once it serves, with the
/// station token it printed.
fn start_demo(port: u16, log: &Path) -> (Guard, String) {
    let mut demo = Guard(
        Command::new(wardgate_bin())
            .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("start wardgate demo"),
    );
    // The demo prints the station token on standard output.
    let stdout = demo.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(token) = line.split("enter this token: ").nth(1) {
                let _ = tx.send(token.trim().to_owned());
            }
        }
    });
    let token = wait_for("the demo's token line", || rx.try_recv().ok());
    wait_port(port);
    (demo, token)
}

/// chromedriver on a free port, once it listens.
fn start_chromedriver() -> (Guard, u16) {
    let wd_port = free_port();
    let driver = Guard(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={wd_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    wait_port(wd_port);
    (driver, wd_port)
}

/// The screen the page is shown on.
#[derive(Debug, Clone, Copy)]
enum Screen {
    Desk,
    /// A phone's viewport (390×844 CSS pixels, touch), by Chromium's mobile
    /// emulation. Notifications are allowed, as a nurse who said yes would.
    Phone,
}

/// A WebDriver session in headless Chromium (no network beyond loopback).
async fn browser(wd_port: u16, profile: &Path, screen: Screen) -> Client {
    let size = match screen {
        Screen::Desk => "--window-size=1280,1500",
        Screen::Phone => "--window-size=390,844",
    };
    let mut options = serde_json::json!({
        "binary": CHROMIUM,
        "args": [
            "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", size,
            format!("--user-data-dir={}", profile.display()),
        ],
    });
    if let Screen::Phone = screen {
        options["mobileEmulation"] = serde_json::json!({
            "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 3.0, "touch": true },
        });
        options["prefs"] = serde_json::json!({
            "profile.default_content_setting_values.notifications": 1,
        });
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{wd_port}"))
        .await
        .expect("a WebDriver session in headless Chromium")
}

/// Clicks the element `css` finds, once there is one. The page rebuilds the
/// alert list when alerts change: an element found a moment ago may be gone;
/// find it again then.
async fn click(c: &Client, css: &str) -> Result<(), CmdError> {
    let mut attempts = 0;
    loop {
        let found = c
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await?;
        match found.click().await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_stale_element_reference() && attempts < 10 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// The successive texts of the element at `css` until it has held two
/// different non-empty ones (or 90 s passed): who had an alert, in order.
async fn recipients(c: &Client, css: &str) -> Result<Vec<String>, CmdError> {
    let mut seen: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while seen.len() < 2 && tokio::time::Instant::now() < deadline {
        let v = c
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                vec![serde_json::Value::String(css.to_owned())],
            )
            .await?;
        if let Some(t) = v.as_str().filter(|t| !t.is_empty())
            && seen.last().map(String::as_str) != Some(t)
        {
            seen.push(t.to_owned());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(seen)
}

#[test]
fn nurse_acknowledges_an_alert_in_the_browser() {
    let _one = one_browser_at_a_time();
    require(CHROMIUM, "chromium");
    require(CHROMEDRIVER, "chromedriver");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("demo.log");
    let (mut demo, token) = start_demo(port, &log);

    // Writes without a valid token are refused.
    for auth in [None, Some("not-the-token")] {
        let (status, _) = http(port, "POST", "/api/alerts/x/ack", auth, "{}");
        assert_eq!(status, 401, "acknowledge with {auth:?}");
        let (status, _) = http(
            port,
            "POST",
            "/api/silence",
            auth,
            r#"{"subject":"bed-1","minutes":5}"#,
        );
        assert_eq!(status, 401, "silence with {auth:?}");
    }

    // Bed 7's wearable reports 15 % battery: battery_low (threshold 20 %) is
    // raised and stays while the battery stays low.
    let alert_id: String = wait_for("bed 7's battery_low alert in /api/alerts", || {
        let (status, body) = http(port, "GET", "/api/alerts", None, "");
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["alerts"].as_array()?.iter().find_map(|a| {
            let id = a["id"].as_str()?;
            id.starts_with("bed-7/battery_low/").then(|| id.to_owned())
        })
    });

    let (_driver, wd_port) = start_chromedriver();
    let profile = dir.path().join("chromium-profile");
    let shot = artifact_dir().join("nurse-station.png");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let acknowledged_text = rt.block_on(async {
        let c = browser(wd_port, &profile, Screen::Desk).await;
        let result = async {
            c.goto(&format!("http://127.0.0.1:{port}/")).await?;
            // The page is live over SSE.
            c.wait()
                .at_most(Duration::from_secs(30))
                .for_element(Locator::XPath("//span[@id='live' and contains(., 'LIVE')]"))
                .await?;
            // Pump 2's occlusion (at 30 s) is with Nurse Ada, bed 2's nurse;
            // unacknowledged for the demo's 30 s, it is handed to the charge
            // nurse, and the page says so.
            let handed = recipients(
                &c,
                "li.alert[data-alert-id^=\"bed-2/pump_occlusion/\"] .recipient",
            )
            .await?;
            assert_eq!(
                handed,
                [" · with Nurse Ada", " · with the charge nurse: Grace"],
                "who had pump 2's occlusion, in order"
            );
            c.find(Locator::Id("token"))
                .await?
                .send_keys(&token)
                .await?;
            c.find(Locator::Id("save-token")).await?.click().await?;
            let button = format!(
                "li.alert.active[data-alert-id=\"{alert_id}\"] button.ack:not([disabled])"
            );
            click(&c, &button).await?;
            let state = format!("li.alert.acknowledged[data-alert-id=\"{alert_id}\"] .state");
            let mut text = String::new();
            for _ in 0..1500 {
                let v = c
                    .execute(
                        "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                        vec![serde_json::Value::String(state.clone())],
                    )
                    .await?;
                if let Some(t) = v.as_str() {
                    text = t.to_owned();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let png = c.screenshot().await?;
            std::fs::write(&shot, png).expect("write the screenshot");
            Ok::<_, CmdError>(text)
        }
        .await;
        let _ = c.close().await;
        result.expect("the acknowledge flow in the browser")
    });
    eprintln!("screenshot: {}", shot.display());

    // The page shows who acknowledged: the station token's name.
    assert_eq!(acknowledged_text, "ACKNOWLEDGED by demo-station");
    // And the API agrees.
    let (_, body) = http(port, "GET", "/api/alerts", None, "");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let alert = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == alert_id.as_str())
        .expect("the alert is still open (its battery is still low)");
    assert_eq!(alert["state"], "acknowledged");
    assert_eq!(alert["acknowledged"]["by"], "demo-station");
    // Acknowledging twice is a conflict, an unknown id is 404.
    let path = format!("/api/alerts/{}/ack", alert_id.replace('/', "%2F"));
    assert_eq!(http(port, "POST", &path, Some(&token), "{}").0, 409);
    assert_eq!(
        http(
            port,
            "POST",
            "/api/alerts/no-such-alert/ack",
            Some(&token),
            "{}"
        )
        .0,
        404
    );

    signal(&demo.0, Signal::SIGINT);
    let status = wait_exit(&mut demo.0);
    assert!(
        status.success(),
        "demo exit: {status}; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
