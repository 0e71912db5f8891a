//! The rules stage's loop (`process`) and the commits it makes: the rules
//! engine over every driver event, nurses' commands, and the spool appends
//! (retried through reopens) that the [`Batcher`] asks for.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use wardgate_drivers::Emitted;
use wardgate_model::{AlarmPhase, AlertKind, DeviceAlarm, DeviceKind, DeviceRef, Event};
use wardgate_rules::Engine;

use super::batcher::{Batcher, Commit};
use super::{COMMIT_BATCH, Hooks, SPOOL_FAILURE_LIMIT, Summary};
use crate::commands::{AlertCommand, CommandRejected};
use crate::metrics::{Metrics, Trigger};
use crate::roster::Roster;
use crate::spool::{Spool, SpoolError};

/// The rules stage: every driver event goes through the engine, which may
/// add derived readings and alert transitions; its timer fires `for`,
/// staleness and escalation without new data; nurses' acknowledgements are
/// applied in between. Alert transitions are committed to the spool at once,
/// in their own transaction, so they never wait for telemetry; everything
/// else is group-committed within `flush_interval` (one fsync per batch),
/// or at once when a driver asks (`DriverContext::committed`). Ends when
/// every driver is gone, after committing what is left.
pub(super) async fn process(
    inputs: Inputs,
    mut stage: Stage,
    spool: &Arc<Spool>,
    summary: &mut Summary,
    mut hooks: Hooks,
    flush_interval: Duration,
) -> Result<(), SpoolError> {
    let Inputs {
        mut events,
        mut commits,
        mut commands,
    } = inputs;
    let mut http_commands = hooks.commands.take();
    // Drivers waiting for everything they sent to be committed.
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut batch = Vec::with_capacity(COMMIT_BATCH);
    let mut out = Vec::with_capacity(COMMIT_BATCH * 2);
    let mut batcher = Batcher::new(flush_interval, COMMIT_BATCH);
    let mut commands_open = true;
    let mut open = true;
    while open {
        let wake = stage.engine.poll_timeout().map(|at| {
            let wait = (at - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO);
            Instant::now() + wait
        });
        tokio::select! {
            n = events.recv_many(&mut batch, COMMIT_BATCH) => {
                if n == 0 {
                    open = false;
                    batcher.handle_closed();
                }
                let now = chrono::Utc::now();
                for item in batch.drain(..) {
                    feed(&mut stage, now, item, &mut out);
                }
            }
            () = sleep_until(wake) => {
                stage.metrics.evaluated(Trigger::Tick);
                out.extend(stage.engine.poll_tick(chrono::Utc::now()));
            }
            () = sleep_until(batcher.poll_timeout()) => {}
            Some(done) = commits.recv() => {
                // What the asking driver sent before asking is in the event
                // channel already: take all of it, then commit below.
                let now = chrono::Utc::now();
                while let Ok(item) = events.try_recv() {
                    feed(&mut stage, now, item, &mut out);
                }
                waiting.push(done);
                batcher.handle_commit_request();
            }
            cmd = commands.recv(), if commands_open => match cmd {
                Some(cmd) => out.extend(apply_command(&mut stage, cmd)),
                None => commands_open = false,
            },
            Some(cmd) = recv_some(http_commands.as_mut()) => {
                out.extend(apply_command(&mut stage, cmd));
            }
        }
        batcher.handle_events(Instant::now(), &mut out);
        while let Some(Commit::Alerts(events) | Commit::Telemetry(events)) =
            batcher.poll_commit(Instant::now())
        {
            commit(&mut stage, spool, events, summary, &hooks).await?;
        }
        for done in waiting.drain(..) {
            // A driver that stopped waiting is fine.
            let _ = done.send(());
        }
    }
    Ok(())
}

/// Runs what a driver emitted through the engine (a measurement's events
/// together) and appends what the engine derived, then the events themselves.
fn feed(
    stage: &mut Stage,
    now: chrono::DateTime<chrono::Utc>,
    item: Emitted,
    out: &mut Vec<Event>,
) {
    let engine = &mut stage.engine;
    match item {
        Emitted::Event(event) => {
            stage.metrics.evaluated(Trigger::Event);
            engine.handle_event_into(now, &event, out);
            out.push(event);
        }
        Emitted::Measurement(events) => {
            stage.metrics.evaluated(Trigger::Measurement);
            engine.handle_events_into(now, &events, out);
            out.extend(events);
        }
    }
}

/// What the rules stage reads: driver events, drivers' requests for a commit,
/// and acknowledgements from MQTT.
pub(super) struct Inputs {
    pub(super) events: mpsc::Receiver<Emitted>,
    pub(super) commits: mpsc::Receiver<oneshot::Sender<()>>,
    pub(super) commands: mpsc::Receiver<AlertCommand>,
}

/// The next command, or never when there is no command channel (or it closed).
async fn recv_some<T>(rx: Option<&mut mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => match rx.recv().await {
            Some(v) => Some(v),
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Applies one HTTP command and answers its caller; every acknowledgement
/// and silence is logged with who and when (the engine's audit trail holds
/// them too).
fn apply_command(stage: &mut Stage, cmd: AlertCommand) -> Vec<Event> {
    let now = chrono::Utc::now();
    stage.metrics.evaluated(Trigger::Command);
    let engine = &mut stage.engine;
    match cmd {
        AlertCommand::Acknowledge { alert, who, reply } => {
            let (by, via) = (who.by.clone(), who.via.clone().unwrap_or_default());
            let (events, result) = match engine.acknowledge(now, &alert, who) {
                Ok(t) => {
                    tracing::info!(alert = %alert.0, by = %by, via = %via, at = %now, "alert acknowledged");
                    (t, Ok(()))
                }
                Err(e) => {
                    tracing::warn!(alert = %alert.0, by = %by, via = %via, error = %e, "acknowledgement not applied");
                    (Vec::new(), Err(CommandRejected::from(e)))
                }
            };
            let _ = reply.send(result);
            events
        }
        AlertCommand::Silence {
            target,
            until,
            who,
            reply,
        } => {
            let (by, via) = (who.by.clone(), who.via.clone().unwrap_or_default());
            match engine.silence(now, target.clone(), until, who) {
                Ok(record) => {
                    tracing::info!(target = ?target, until = %until, by = %by, via = %via, at = %now, "silenced");
                    let _ = reply.send(Ok(()));
                    // On the record: the alert lane carries it to every sink.
                    vec![record]
                }
                Err(e) => {
                    tracing::warn!(target = ?target, by = %by, via = %via, error = %e, "silence not applied");
                    let _ = reply.send(Err(CommandRejected::from(e)));
                    Vec::new()
                }
            }
        }
        AlertCommand::Assign {
            staff,
            subjects,
            who,
            reply,
        } => {
            let (by, via) = (who.by, who.via.unwrap_or_default());
            let listed = subjects.iter().map(ToString::to_string).collect::<Vec<_>>();
            match stage.roster.assign(&staff, subjects) {
                Ok(()) => {
                    tracing::info!(staff = %staff, subjects = ?listed, by = %by, via = %via, at = %now, "assignment changed");
                    let _ = reply.send(Ok(()));
                }
                Err(e) => {
                    tracing::warn!(staff = %staff, subjects = ?listed, by = %by, via = %via, error = %e, "assignment not changed");
                    let _ = reply.send(Err(CommandRejected::from(e)));
                }
            }
            Vec::new()
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A latching technical alarm about the gateway itself, through the rules
/// like any alarm. Raised and ended one after the other (as one measurement
/// they would cancel out): the latching alert stays until a person has seen
/// it.
pub(super) fn latch_gateway_alarm(
    engine: &mut Engine,
    gateway: &str,
    alarm: &str,
    detail: &str,
    out: &mut Vec<Event>,
) {
    let at = chrono::Utc::now();
    for phase in [AlarmPhase::Start, AlarmPhase::End] {
        let event = Event::DeviceAlarm(DeviceAlarm {
            at,
            subject: gateway.into(),
            device: DeviceRef::new("spool".into(), DeviceKind::Gateway),
            alarm: alarm.into(),
            phase,
            kind: AlertKind::Technical,
            raw: Some(detail.into()),
        });
        engine.handle_event_into(at, &event, out);
        out.push(event);
    }
}

/// The rules stage's state: the engine, who has which alerts, and the
/// gateway's id (the subject of its own technical alarms).
pub(super) struct Stage {
    pub(super) engine: Engine,
    pub(super) roster: Roster,
    pub(super) gateway: String,
    pub(super) metrics: Arc<Metrics>,
}

/// Commits one batch as [`append`] does, every alert in it addressed to
/// whoever has it now; when the spool failed for a while
/// before it took the batch, the failure is announced (`storage_failed`)
/// and that announcement committed in turn.
async fn commit(
    stage: &mut Stage,
    spool: &Arc<Spool>,
    events: Vec<Event>,
    summary: &mut Summary,
    hooks: &Hooks,
) -> Result<(), SpoolError> {
    let mut next = Some(events);
    while let Some(mut batch) = next.take() {
        stage.roster.address_events(&mut batch);
        if let Some(outage) = append(spool, batch, summary, hooks).await? {
            let mut alarm = Vec::new();
            latch_gateway_alarm(
                &mut stage.engine,
                &stage.gateway,
                crate::spool::FAILED_ALARM,
                &format!(
                    "{} could not be written for {} s ({}); it was reopened and takes writes again, nothing was lost",
                    spool.path().display(),
                    outage.lasted.as_secs().max(1),
                    outage.cause
                ),
                &mut alarm,
            );
            next = Some(alarm);
        }
    }
    Ok(())
}

/// A time the spool could not commit, ended by a reopen that worked.
#[derive(Debug)]
pub(super) struct Outage {
    lasted: Duration,
    cause: SpoolError,
}

/// Commits one batch, retrying while the spool fails: the drivers wait
/// meanwhile (the event channel is bounded), nothing is dropped. Each retry
/// reopens the database first (redb refuses every write after a failed one
/// until then). Gives up after [`SPOOL_FAILURE_LIMIT`].
pub(super) async fn append(
    spool: &Arc<Spool>,
    events: Vec<Event>,
    summary: &mut Summary,
    hooks: &Hooks,
) -> Result<Option<Outage>, SpoolError> {
    for event in &events {
        *summary.events.entry(event.type_name()).or_default() += 1;
        if let Event::Alert(a) = event {
            tracing::info!(alert = %a.id.0, subject = %a.subject, rule = %a.rule, priority = a.priority.as_str(), transition = ?a.transition, "alert");
        }
    }
    let events: Arc<[Event]> = events.into();
    let mut attempt = 0u32;
    let mut first: Option<SpoolError> = None;
    let mut reopen_failed = false;
    let started = tokio::time::Instant::now();
    let give_up = started + SPOOL_FAILURE_LIMIT;
    loop {
        if attempt > 0 {
            let spool = Arc::clone(spool);
            let reopened = tokio::task::spawn_blocking(move || spool.reopen())
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            if let Err(e) = reopened
                && !reopen_failed
            {
                reopen_failed = true;
                tracing::error!(error = %e, "spool cannot be reopened; retrying");
            }
        }
        let spool = Arc::clone(spool);
        let batch = Arc::clone(&events);
        let now = chrono::Utc::now();
        let result = tokio::task::spawn_blocking(move || spool.append(now, &batch))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        match result {
            Ok(appended) => {
                hooks.metrics.committed(&events, started.elapsed());
                if let Some(tx) = &hooks.committed {
                    // No subscriber is fine: nobody is looking.
                    let _ = tx.send(Arc::clone(&events));
                }
                if appended.evicted > 0 {
                    summary.evicted += appended.evicted;
                    tracing::warn!(
                        evicted = appended.evicted,
                        total = summary.evicted,
                        "spool full: oldest telemetry evicted"
                    );
                }
                if attempt == 0 {
                    return Ok(None);
                }
                let lasted = started.elapsed();
                tracing::warn!(
                    attempts = attempt + 1,
                    seconds = lasted.as_secs(),
                    "spool reopened; it commits again and nothing was lost"
                );
                return Ok(first.map(|cause| Outage { lasted, cause }));
            }
            Err(e) => {
                attempt += 1;
                // The first error is the cause; later ones only repeat that
                // the database latched it.
                if tokio::time::Instant::now() >= give_up {
                    return Err(first.unwrap_or(e));
                }
                if first.is_none() {
                    tracing::error!(error = %e, events = events.len(), "spool commit failed; reopening it and retrying (drivers are held back meanwhile)");
                    first = Some(e);
                }
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt.min(20)))).await;
            }
        }
    }
}
