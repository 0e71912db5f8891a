//! The page on a phone (Chromium's mobile emulation, 390×844) against
//! `wardgate demo`: the web app parts (manifest, service worker, icons), the
//! layout (no sideways scrolling, alerts in view, thumb-sized buttons), the
//! alarm signals (IEC 60601-1-8 rhythms, read from the page's test hook
//! `window.__wardgateAudio` rather than heard: the loudest calling alert
//! decides, a technical alarm sounds as its priority says, acknowledging or
//! silencing stops it), notifications per new alert, and the connection-lost banner
//! with its signal when the gateway dies, gone when a gateway is back.
//! Screenshots: `target/browser-test/phone.png`, `phone-link-lost.png`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use fantoccini::error::CmdError;
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use wardgate_e2e::{free_port, http};

use super::{CHROMEDRIVER, CHROMIUM, one_browser_at_a_time};
use super::{Guard, Screen, artifact_dir, browser, click, require, start_chromedriver, start_demo};

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

fn get(port: u16, path: &str) -> Value {
    let (status, body) = http(port, "GET", path, None, "");
    assert_eq!(status, 200, "{path}");
    serde_json::from_str(&body).unwrap()
}

/// The open alerts that call (active or latched: not acknowledged; their
/// subject or rule not silenced), as the gateway sees them.
fn calling(port: u16) -> Vec<Value> {
    let silences = get(port, "/api/silences");
    let now = chrono::Utc::now();
    let time = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    let silenced = |a: &Value| {
        silences["silences"].as_array().unwrap().iter().any(|s| {
            time(&s["from"]) <= now
                && now < time(&s["until"])
                && (s["target"]["subject"] == a["subject"] || s["target"]["rule"] == a["rule"])
        })
    };
    get(port, "/api/alerts")["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| (a["state"] == "active" || a["state"] == "latched") && !silenced(a))
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

/// Manifest, worker and icons served with their types; the worker runs.
async fn check_web_app(c: &Client, port: u16) {
    let served = c
        .execute(
            "return Promise.all(
               ['/manifest.webmanifest', '/sw.js', '/icons/icon-192.png', '/icons/icon-512.png']
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
}

async fn wait_pressed(c: &Client, id: &str, on: bool) {
    until(
        c,
        &format!("#{id} aria-pressed={on}"),
        Duration::from_secs(10),
        "return document.getElementById(arguments[0]).getAttribute('aria-pressed') === arguments[1];",
        vec![json!(id), json!(on.to_string())],
    )
    .await;
}

/// Sound starts off and is turned on by a tap (browsers start audio on a
/// gesture). Notifications are on where the browser already allows them
/// (this profile does); a tap turns them off, another on again. Returns
/// the page's time when notifications were turned on.
async fn turn_sound_and_notifications_on(c: &Client) -> f64 {
    wait_pressed(c, "sound", false).await;
    click(c, "#sound").await.unwrap();
    wait_pressed(c, "sound", true).await;
    let text = c
        .execute(
            "return document.getElementById('sound').textContent;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(text, "Sound: ON");
    until(
        c,
        "the audio context running",
        Duration::from_secs(10),
        "return window.__wardgateAudio.contextState === 'running';",
        vec![],
    )
    .await;
    wait_pressed(c, "notify", true).await;
    click(c, "#notify").await.unwrap();
    wait_pressed(c, "notify", false).await;
    click(c, "#notify").await.unwrap();
    wait_pressed(c, "notify", true).await;
    c.execute("return Date.now();", vec![])
        .await
        .unwrap()
        .as_f64()
        .unwrap()
}

/// The demo raises alerts of every priority within its first half minute,
/// pump 2's occlusion (a technical alarm, high) at 30 s.
async fn wait_for_every_priority(c: &Client, port: u16) {
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
    until(
        c,
        "the occlusion on the page",
        Duration::from_secs(10),
        "return document.querySelector('li.alert[data-alert-id^=\"bed-2/pump_occlusion/\"]');",
        vec![],
    )
    .await;
}

/// What the page sounds (`null` or a signal sounding for an alert) once it
/// agrees with the gateway on the loudest calling alert, with the alerts
/// calling and every burst scheduled. The page follows the gateway within
/// a moment; a new alert meanwhile changes the answer, so both are asked
/// again until they agree.
async fn agreed(c: &Client, port: u16) -> (Vec<Value>, Value, Vec<Value>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let open = calling(port);
        let (current, bursts) = audio(c).await;
        let top = open
            .iter()
            .map(|a| rank(a["priority"].as_str().unwrap()))
            .max();
        let sounds = current["priority"].as_str().map(rank);
        if top == sounds && (current.is_null() || current["reason"] == "alert") {
            return (open, current, bursts);
        }
        assert!(
            Instant::now() < deadline,
            "calling: {open:?}; the page sounds {current}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The loudest calling alert decides the signal. Acknowledges the loudest
/// priority (technical alarms last, to hear them on their own; one low
/// alert silenced instead) until nothing calls, checking each signal and
/// that it stops once its priority no longer calls.
async fn check_signals(c: &Client, port: u16, token: &str) {
    let mut heard: BTreeMap<String, Value> = BTreeMap::new();
    let mut technical_heard = None;
    let mut silenced = None;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (open, current, bursts) = agreed(c, port).await;
        if current.is_null() {
            break; // nothing calls, nothing sounds
        }
        assert!(
            Instant::now() < deadline,
            "alerts kept coming; heard {heard:?}"
        );
        let top = current["priority"].as_str().unwrap().to_owned();
        let latest = bursts
            .iter()
            .rev()
            .find(|b| b["priority"] == top.as_str() && b["stopped"].is_null())
            .unwrap_or_else(|| panic!("no {top} burst scheduled: {bursts:?}"));
        check_burst(latest);
        check_repeats(&bursts, &top);
        heard.insert(top.clone(), latest.clone());
        let loudest: Vec<&Value> = open
            .iter()
            .filter(|a| a["priority"] == top.as_str())
            .collect();
        let technical = |a: &&Value| a["kind"] == "technical";
        if loudest.iter().all(technical) {
            let sounding = current["alert"].as_str().unwrap();
            assert!(
                loudest.iter().any(|a| a["id"] == sounding),
                "{current} {loudest:?}"
            );
            technical_heard.get_or_insert((top.clone(), sounding.to_owned()));
        }
        let mut ack: Vec<&Value> = loudest.iter().copied().filter(|a| !technical(a)).collect();
        if ack.is_empty() {
            ack = loudest;
        }
        // One low alert is silenced (its subject, for 5 minutes) rather
        // than acknowledged: it stops sounding too.
        if top == "low"
            && silenced.is_none()
            && let Some(i) = ack.iter().position(|a| !technical(a))
        {
            let subject = ack.remove(i)["subject"].as_str().unwrap().to_owned();
            let body = json!({ "subject": subject, "minutes": 5 }).to_string();
            let (status, answer) = http(port, "POST", "/api/silence", Some(token), &body);
            assert_eq!(status, 200, "{answer}");
            until(
                c,
                "the silence on the page",
                Duration::from_secs(10),
                "return [...document.querySelectorAll('#silences li')]
                   .some((l) => l.textContent.includes(arguments[0]));",
                vec![json!(subject)],
            )
            .await;
            silenced = Some(subject);
        }
        for a in &ack {
            acknowledge(c, a["id"].as_str().unwrap()).await.unwrap();
        }
        if !calling(port).iter().any(|a| a["priority"] == top.as_str()) {
            // The last of this priority dealt with: its signal stops, every
            // burst of it still to come cancelled.
            let (current, _) = audio(c).await;
            assert_ne!(current["priority"], top.as_str(), "{top} still sounds");
            let due = c
                .execute(
                    "return window.__wardgateAudio.bursts.filter((b) => b.priority === arguments[0]
                       && b.stopped === null && b.wall > Date.now()).length;",
                    vec![json!(top)],
                )
                .await
                .unwrap();
            assert_eq!(
                due, 0,
                "{top} bursts still due after its alerts were acknowledged"
            );
        }
    }
    for p in RANK {
        assert!(heard.contains_key(p), "never heard {p}: {heard:?}");
    }
    let (priority, alert) = technical_heard.expect("a technical alarm sounding on its own");
    eprintln!("technical alarm {alert} sounded {priority}");
    assert!(silenced.is_some(), "no low alert was silenced");
}

/// A notification for every alert raised since they were turned on (and
/// not in the last moment: the page may not have had it yet), tagged by its
/// id, so that an escalation replaces it rather than stacking.
async fn check_notifications(c: &Client, port: u16, since: f64) {
    let before = (chrono::Utc::now() - chrono::TimeDelta::seconds(2)).timestamp_millis() as f64;
    let notes = c
        .execute("return window.__wardgateNotifications;", vec![])
        .await
        .unwrap();
    let notes = notes.as_array().unwrap();
    let alerts = get(port, "/api/alerts");
    let raised_since: Vec<&str> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| {
            let raised = chrono::DateTime::parse_from_rfc3339(a["raised_at"].as_str().unwrap());
            let raised = raised.unwrap().timestamp_millis() as f64;
            raised > since + 1000.0 && raised < before
        })
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert!(
        !raised_since.is_empty(),
        "no alert raised after notifications were turned on"
    );
    for id in &raised_since {
        assert!(
            notes
                .iter()
                .any(|n| n["tag"] == *id && n["transition"] == "raised"),
            "no notification for {id}: {notes:?}"
        );
    }
    let shown = c
        .execute(
            "return navigator.serviceWorker.ready
               .then((r) => r.getNotifications())
               .then((ns) => ns.map((n) => n.tag));",
            vec![],
        )
        .await
        .unwrap();
    let mut tags: Vec<&str> = shown
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let all = tags.len();
    tags.sort_unstable();
    tags.dedup();
    assert_eq!(tags.len(), all, "notifications stacked: {shown}");
}

/// The gateway dies: after 5 s without it, the banner and the
/// connection-lost signal (the medium-priority one); a gateway answering
/// again on the same address takes both away.
async fn check_link_lost(c: &Client, demo: &mut Guard, port: u16, log: &Path, shot: &Path) {
    let _ = demo.0.kill();
    let _ = demo.0.wait();
    let lost = Instant::now();
    let banner = "return !document.getElementById('link-lost').hidden;";
    until(
        c,
        "the connection-lost banner",
        Duration::from_secs(20),
        banner,
        vec![],
    )
    .await;
    let after = lost.elapsed();
    assert!(
        after >= Duration::from_millis(4900),
        "banner after {after:?}, before 5 s"
    );
    let current = until(
        c,
        "the connection-lost signal",
        Duration::from_secs(5),
        "const h = window.__wardgateAudio;
         return h.current && h.current.reason === 'connection' && h.current;",
        vec![],
    )
    .await;
    assert_eq!(current["priority"], "medium");
    let (_, bursts) = audio(c).await;
    let signal = bursts
        .iter()
        .rev()
        .find(|b| b["reason"] == "connection")
        .expect("a connection-lost burst");
    check_burst(signal);
    check_phone_layout(c).await;
    c.execute("window.scrollTo(0, 0);", vec![]).await.unwrap();
    std::fs::write(shot, c.screenshot().await.unwrap()).unwrap();

    let (_back, _) = start_demo(port, log);
    let gone = "return document.getElementById('link-lost').hidden;";
    until(c, "the banner gone", Duration::from_secs(20), gone, vec![]).await;
    until(
        c,
        "the connection-lost signal stopped",
        Duration::from_secs(5),
        "const h = window.__wardgateAudio; return !h.current || h.current.reason !== 'connection';",
        vec![],
    )
    .await;
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
        let live = "return document.getElementById('live').textContent.includes('LIVE');";
        until(&c, "the page live", Duration::from_secs(30), live, vec![]).await;
        check_web_app(&c, port).await;
        let notifying_since = turn_sound_and_notifications_on(&c).await;
        let field = c.find(Locator::Id("token")).await.unwrap();
        field.send_keys(&token).await.unwrap();
        click(&c, "#save-token").await.unwrap();

        wait_for_every_priority(&c, port).await;
        check_phone_layout(&c).await;
        std::fs::write(shots.join("phone.png"), c.screenshot().await.unwrap()).unwrap();
        check_signals(&c, port, &token).await;
        check_notifications(&c, port, notifying_since).await;
        let again = dir.path().join("demo-again.log");
        let shot = shots.join("phone-link-lost.png");
        check_link_lost(&c, &mut demo, port, &again, &shot).await;
        let _ = c.close().await;
    });
    eprintln!("phone test: {:?}", started.elapsed());
}
