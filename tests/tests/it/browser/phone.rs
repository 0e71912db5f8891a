//! The page on a phone (Chromium's mobile emulation, 390×844) against
//! `wardgate demo`: the web app parts (manifest, service worker, icons), the
//! layout (no sideways scrolling, alerts in view, thumb-sized buttons), the
//! alarm signals (IEC 60601-1-8 rhythms, read from the page's test hook
//! `window.__wardgateAudio` rather than heard: the loudest calling alert
//! decides, a technical alarm sounds as its priority says, acknowledging
//! stops it), notifications per new alert, and the connection-lost banner
//! with its signal when the gateway dies, gone when a gateway is back.
//! Screenshots: `target/browser-test/phone.png`, `phone-link-lost.png`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fantoccini::Client;
use fantoccini::error::CmdError;
use serde_json::{Value, json};
use wardgate_e2e::{free_port, http};

use super::{CHROMEDRIVER, CHROMIUM, one_browser_at_a_time};
use super::{Screen, artifact_dir, browser, click, require, start_chromedriver, start_demo};

const RANK: [&str; 3] = ["low", "medium", "high"];

fn rank(priority: &str) -> usize {
    RANK.iter()
        .position(|p| *p == priority)
        .unwrap_or_else(|| panic!("unknown priority {priority}"))
}

/// Runs `script` every 50 ms until it returns something other than `null`
/// or `false`, for at most `within`.
async fn until(c: &Client, what: &str, within: Duration, script: &str, args: Vec<Value>) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let v = c
            .execute(script, args.clone())
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        if !v.is_null() && v != Value::Bool(false) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The open alerts that call (active or latched: not acknowledged), as the
/// gateway sees them. The demo silences nothing.
fn calling(port: u16) -> Vec<Value> {
    let (status, body) = http(port, "GET", "/api/alerts", None, "");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "active" || a["state"] == "latched")
        .cloned()
        .collect()
}

/// Checks a scheduled burst against IEC 60601-1-8:2006 Table 3 (burst) and
/// Table 4 (pulse), the figures docs/http.md gives. Times in ms.
fn check_burst(b: &Value) {
    let priority = b["priority"].as_str().unwrap();
    let f = |k: &str| b[k].as_f64().unwrap_or_else(|| panic!("{k} in {b}"));
    let (td, ramp, interburst) = (f("td"), f("ramp"), f("interburst"));
    let starts: Vec<f64> = b["starts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(b["pulses"].as_u64(), Some(starts.len() as u64), "{b}");
    // Spacing: from the end of one pulse to the start of the next.
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0] - td).collect();
    let within = |v: f64, lo: f64, hi: f64, what: &str| {
        assert!(
            (lo..=hi).contains(&v),
            "{priority}: {what} {v} ms outside {lo}–{hi} ms: {b}"
        );
    };
    // Rise time (10–90 % of a linear ramp) 10–20 % of td.
    within(0.8 * ramp / td * 100.0, 10.0, 20.0, "rise time in % of td");
    match priority {
        "high" => {
            assert_eq!(starts.len(), 10, "{b}");
            within(td, 75.0, 200.0, "pulse duration");
            let x = gaps[0];
            within(x, 50.0, 125.0, "pulse spacing x");
            for i in [1, 3, 5, 6, 8] {
                assert!((gaps[i] - x).abs() < 1e-6, "gap {i} is not x: {b}");
            }
            for i in [2, 7] {
                assert!(
                    (gaps[i] - (2.0 * x + td)).abs() < 1e-6,
                    "gap {i} not 2x+td: {b}"
                );
            }
            within(gaps[4], 350.0, 1300.0, "spacing between 5th and 6th pulse");
            within(interburst, 2500.0, 15000.0, "interburst interval");
        }
        "medium" => {
            assert_eq!(starts.len(), 3, "{b}");
            within(td, 125.0, 250.0, "pulse duration");
            for &g in &gaps {
                within(g, 125.0, 250.0, "pulse spacing y");
                assert!((g - gaps[0]).abs() < 1e-6, "uneven y: {b}");
            }
            within(interburst, 2500.0, 30000.0, "interburst interval");
        }
        "low" => {
            assert!((1..=2).contains(&starts.len()), "{b}");
            within(td, 125.0, 250.0, "pulse duration");
            for &g in &gaps {
                within(g, 125.0, 250.0, "pulse spacing y");
            }
            assert!(
                interburst > 15000.0,
                "low repeats every {interburst} ms: {b}"
            );
        }
        other => panic!("burst of priority {other}"),
    }
}

/// The bursts of the signal now sounding (its run, from its start to a
/// minute ahead), in order: it repeats at the burst's length plus its
/// interburst interval.
fn check_repeats(bursts: &[Value], priority: &str) {
    let run = &bursts.last().expect("bursts")["run"];
    let due: Vec<&Value> = bursts
        .iter()
        .filter(|b| b["run"] == *run)
        .inspect(|b| assert_eq!(b["priority"], priority, "{b}"))
        .collect();
    assert!(
        due.len() >= 2,
        "{priority}: one burst scheduled, no repeat: {due:?}"
    );
    for w in due.windows(2) {
        let td = w[0]["td"].as_f64().unwrap();
        let last = w[0]["starts"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .as_f64()
            .unwrap();
        let period = (last + td + w[0]["interburst"].as_f64().unwrap()) / 1000.0;
        let at = |b: &Value| b["at"].as_f64().unwrap();
        assert!(
            (at(w[1]) - at(w[0]) - period).abs() < 1e-3,
            "{priority}: bursts {} s apart, not {period} s",
            at(w[1]) - at(w[0])
        );
    }
}

/// The signal the page sounds now and every burst it has scheduled.
async fn audio(c: &Client) -> (Value, Vec<Value>) {
    let h = c
        .execute("return window.__wardgateAudio;", vec![])
        .await
        .expect("the audio test hook");
    (
        h["current"].clone(),
        h["bursts"].as_array().unwrap().clone(),
    )
}

/// Acknowledges `alert` with the page's button and waits until the page
/// shows it acknowledged (or gone).
async fn acknowledge(c: &Client, alert: &str) -> Result<(), CmdError> {
    click(
        c,
        &format!("li.alert[data-alert-id=\"{alert}\"] button.ack:not([disabled])"),
    )
    .await?;
    until(
        c,
        &format!("{alert} acknowledged on the page"),
        Duration::from_secs(20),
        "const e = document.querySelector(`li.alert[data-alert-id=\"${arguments[0]}\"]`);
         return !e || e.classList.contains('acknowledged');",
        vec![json!(alert)],
    )
    .await;
    Ok(())
}

/// Layout at the phone's width: nothing wider than the screen, the alerts
/// in view, buttons at least 44 px high (a thumb).
async fn check_phone_layout(c: &Client) {
    let v = c
        .execute(
            "const w = window.innerWidth;
             const alerts = [...document.querySelectorAll('#alerts li.alert')];
             const buttons = [...document.querySelectorAll('button')].filter((b) => b.offsetParent);
             return {
               width: w,
               scroll: document.documentElement.scrollWidth,
               alerts: alerts.length,
               outside: alerts.filter((a) => { const r = a.getBoundingClientRect(); return r.left < 0 || r.right > w || r.width === 0; }).length,
               small: buttons.filter((b) => b.getBoundingClientRect().height < 44).map((b) => b.id || b.textContent),
             };",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(v["width"], 390, "the phone's viewport: {v}");
    assert!(
        v["scroll"].as_u64() <= v["width"].as_u64(),
        "the page scrolls sideways on a phone: {v}"
    );
    assert!(v["alerts"].as_u64() > Some(0), "no alerts shown: {v}");
    assert_eq!(v["outside"], 0, "alerts not within the screen: {v}");
    assert_eq!(v["small"], json!([]), "buttons smaller than a thumb: {v}");
}

#[test]
fn phone_page_sounds_alarms_notifies_and_tells_when_the_link_is_lost() {
    let _one = one_browser_at_a_time();
    require(CHROMIUM, "chromium");
    require(CHROMEDRIVER, "chromedriver");
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut demo, token) = start_demo(port, &dir.path().join("demo.log"));
    let (_driver, wd_port) = start_chromedriver();
    let profile = dir.path().join("chromium-profile");
    let shots = artifact_dir();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = browser(wd_port, &profile, Screen::Phone).await;
        c.goto(&format!("http://127.0.0.1:{port}/")).await.unwrap();
        until(&c, "the page live", Duration::from_secs(30),
            "return document.getElementById('live').textContent.includes('LIVE');", vec![]).await;

        // The web app: its parts served with their types, the worker running.
        let served = c
            .execute(
                "return Promise.all(['/manifest.webmanifest', '/sw.js', '/icons/icon-192.png', '/icons/icon-512.png']
                   .map((p) => fetch(p).then((r) => [p, r.status, r.headers.get('content-type')])));",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            served,
            json!([
                ["/manifest.webmanifest", 200, "application/manifest+json"],
                ["/sw.js", 200, "text/javascript; charset=utf-8"],
                ["/icons/icon-192.png", 200, "image/png"],
                ["/icons/icon-512.png", 200, "image/png"],
            ])
        );
        let worker = c
            .execute(
                "return navigator.serviceWorker.ready.then((r) => r.active.scriptURL);",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(worker, json!(format!("http://127.0.0.1:{port}/sw.js")));

        // Sound starts off and is turned on by a tap (browsers start audio
        // on a gesture). Notifications are on where the browser already
        // allows them (this profile does); a tap turns them off, another on.
        let pressed = |id: &str, on: bool| {
            format!("return document.getElementById('{id}').getAttribute('aria-pressed') === '{on}';")
        };
        let wait_pressed = |id: &'static str, on: bool| {
            let script = pressed(id, on);
            let c = &c;
            async move {
                until(c, &format!("{id} {}", if on { "on" } else { "off" }), Duration::from_secs(10), &script, vec![]).await;
            }
        };
        wait_pressed("sound", false).await;
        click(&c, "#sound").await.unwrap();
        wait_pressed("sound", true).await;
        wait_pressed("notify", true).await;
        click(&c, "#notify").await.unwrap();
        wait_pressed("notify", false).await;
        click(&c, "#notify").await.unwrap();
        wait_pressed("notify", true).await;
        let notify_on = c.execute("return Date.now();", vec![]).await.unwrap();
        let text = c
            .execute("return document.getElementById('sound').textContent;", vec![])
            .await
            .unwrap();
        assert!(text.as_str().unwrap().contains("ON"), "{text}");
        until(&c, "the audio context running", Duration::from_secs(10),
            "return window.__wardgateAudio.contextState === 'running';", vec![]).await;
        c.find(fantoccini::Locator::Id("token")).await.unwrap().send_keys(&token).await.unwrap();
        click(&c, "#save-token").await.unwrap();

        // The demo raises alerts of every priority within its first half
        // minute, pump 2's occlusion (a technical alarm, high) at 30 s.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let open = calling(port);
            let has = |p: &str| open.iter().any(|a| a["priority"] == p);
            if has("low") && has("medium") && open.iter().any(|a| a["rule"] == "pump_occlusion") {
                break;
            }
            assert!(Instant::now() < deadline, "the demo's alerts: {open:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        until(&c, "the occlusion on the page", Duration::from_secs(10),
            "return document.querySelector('li.alert[data-alert-id^=\"bed-2/pump_occlusion/\"]');", vec![]).await;
        check_phone_layout(&c).await;
        std::fs::write(shots.join("phone.png"), c.screenshot().await.unwrap()).unwrap();

        // The loudest calling alert decides the signal. Acknowledge the
        // loudest priority, technical alarms last, until nothing calls.
        let mut heard: BTreeMap<String, Value> = BTreeMap::new();
        let mut technical_heard = None;
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            // The page follows the gateway within a moment; a new alert
            // meanwhile changes the answer, so both are asked again.
            let settled = Instant::now() + Duration::from_secs(10);
            let (open, current, bursts) = loop {
                let open = calling(port);
                let (current, bursts) = audio(&c).await;
                let top = open.iter().map(|a| rank(a["priority"].as_str().unwrap())).max();
                let sounds = current["priority"].as_str().map(rank);
                if top == sounds && (current.is_null() || current["reason"] == "alert") {
                    break (open, current, bursts);
                }
                assert!(Instant::now() < settled, "calling: {open:?}; the page sounds {current}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            if current.is_null() {
                break; // nothing calls, nothing sounds
            }
            assert!(Instant::now() < deadline, "alerts kept coming; heard {heard:?}");
            let top = current["priority"].as_str().unwrap().to_owned();
            let latest = bursts
                .iter()
                .rev()
                .find(|b| b["priority"] == top.as_str() && b["stopped"].is_null())
                .unwrap_or_else(|| panic!("no {top} burst scheduled: {bursts:?}"));
            check_burst(latest);
            check_repeats(&bursts, &top);
            heard.insert(top.clone(), latest.clone());
            let loudest: Vec<&Value> = open.iter().filter(|a| a["priority"] == top.as_str()).collect();
            let technical = |a: &&Value| a["kind"] == "technical";
            if loudest.iter().all(technical) {
                let sounding = current["alert"].as_str().unwrap();
                assert!(loudest.iter().any(|a| a["id"] == sounding), "{current} {loudest:?}");
                technical_heard.get_or_insert((top.clone(), sounding.to_owned()));
            }
            // Technical alarms of this priority stay, to be heard on their own.
            let mut ack: Vec<&Value> = loudest.iter().copied().filter(|a| !technical(a)).collect();
            if ack.is_empty() {
                ack = loudest;
            }
            for a in &ack {
                acknowledge(&c, a["id"].as_str().unwrap()).await.unwrap();
            }
            if !calling(port).iter().any(|a| a["priority"] == top.as_str()) {
                // The last of this priority acknowledged: its signal stops,
                // every burst of it still to come cancelled.
                let (current, _) = audio(&c).await;
                assert_ne!(current["priority"], top.as_str(), "{top} still sounds after acknowledging");
                let due = c
                    .execute(
                        "return window.__wardgateAudio.bursts.filter((b) => b.priority === arguments[0]
                           && b.stopped === null && b.wall > Date.now()).length;",
                        vec![json!(top)],
                    )
                    .await
                    .unwrap();
                assert_eq!(due, 0, "{top} bursts still due after its alerts were acknowledged");
            }
        }
        for p in RANK {
            assert!(heard.contains_key(p), "never heard {p}: {heard:?}");
        }
        let (priority, alert) = technical_heard.expect("a technical alarm sounding on its own");
        eprintln!("technical alarm {alert} sounded {priority}");

        // A notification per alert raised since they were turned on, tagged
        // by its id (so an escalation replaces it rather than stacking).
        let notes = c.execute("return window.__wardgateNotifications;", vec![]).await.unwrap();
        let notes = notes.as_array().unwrap();
        let (_, body) = http(port, "GET", "/api/alerts", None, "");
        let open: Value = serde_json::from_str(&body).unwrap();
        let since = notify_on.as_f64().unwrap() + 1000.0;
        let new: Vec<&str> = open["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| {
                chrono::DateTime::parse_from_rfc3339(a["raised_at"].as_str().unwrap())
                    .unwrap()
                    .timestamp_millis() as f64
                    > since
            })
            .map(|a| a["id"].as_str().unwrap())
            .collect();
        assert!(!new.is_empty(), "no alert raised after notifications were turned on");
        for id in &new {
            assert!(
                notes.iter().any(|n| n["tag"] == *id && n["transition"] == "raised"),
                "no notification for {id}: {notes:?}"
            );
        }
        let shown = c
            .execute(
                "return navigator.serviceWorker.ready.then((r) => r.getNotifications()).then((ns) => ns.map((n) => n.tag));",
                vec![],
            )
            .await
            .unwrap();
        let shown: Vec<&str> = shown.as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        let mut unique = shown.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), shown.len(), "notifications stacked: {shown:?}");

        // The gateway dies: after 5 s without it, the banner and the
        // connection-lost signal (the medium-priority one).
        let _ = demo.0.kill();
        let _ = demo.0.wait();
        let lost = Instant::now();
        until(&c, "the connection-lost banner", Duration::from_secs(20),
            "return !document.getElementById('link-lost').hidden;", vec![]).await;
        let after = lost.elapsed();
        assert!(after >= Duration::from_millis(4900), "banner after {after:?}, before 5 s");
        let current = until(&c, "the connection-lost signal", Duration::from_secs(5),
            "const h = window.__wardgateAudio; return h.current && h.current.reason === 'connection' && h.current;", vec![]).await;
        assert_eq!(current["priority"], "medium");
        let (_, bursts) = audio(&c).await;
        let signal = bursts.iter().rev().find(|b| b["reason"] == "connection").expect("a connection-lost burst");
        check_burst(signal);
        check_phone_layout(&c).await;
        c.execute("window.scrollTo(0, 0);", vec![]).await.unwrap();
        std::fs::write(shots.join("phone-link-lost.png"), c.screenshot().await.unwrap()).unwrap();

        // A gateway answers again on the same address: the banner goes.
        let (back, _) = start_demo(port, &dir.path().join("demo-again.log"));
        until(&c, "the banner gone", Duration::from_secs(20),
            "return document.getElementById('link-lost').hidden;", vec![]).await;
        until(&c, "the connection-lost signal stopped", Duration::from_secs(5),
            "const h = window.__wardgateAudio; return !h.current || h.current.reason !== 'connection';", vec![]).await;
        drop(back);
        let _ = c.close().await;
    });
    eprintln!("phone test: {:?}", started.elapsed());
}
