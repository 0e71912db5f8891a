//! `GET /api/events`: the committed events as server-sent events, bounded
//! globally and per client address.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use tokio_stream::wrappers::BroadcastStream;

use super::api::streams_refused;
use super::{ClientAddr, HttpState};

/// `text/event-stream`: one SSE event per committed event, named by its
/// type (`reading`, `device_status`, `device_alarm`, `alert`), the data
/// being the event's JSON; `lagged` when this client fell behind. At most
/// [`MAX_EVENT_STREAMS`](super::MAX_EVENT_STREAMS) at once; beyond that 503
/// with `Retry-After` (the page tries again after a pause).
pub(super) async fn events(
    State(state): State<HttpState>,
    client: Option<axum::Extension<ClientAddr>>,
) -> Response {
    // Per client first: a greedy client is refused before it can take the
    // last global places.
    let mine = match client {
        Some(axum::Extension(ClientAddr(peer))) => match state.client_streams.take(peer.ip()) {
            Some(slot) => Some(slot),
            None => {
                return streams_refused(
                    &state,
                    format!(
                        "this client has {} event streams open already; close one",
                        super::MAX_EVENT_STREAMS_PER_CLIENT
                    ),
                );
            }
        },
        None => None,
    };
    let Ok(permit) = Arc::clone(&state.streams).try_acquire_owned() else {
        if !state.streams_full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                limit = super::MAX_EVENT_STREAMS,
                "event streams refused: as many are open as the gateway serves (counted in wardgate_http_streams_refused_total)"
            );
        }
        return streams_refused(
            &state,
            format!(
                "too many event streams open (at most {}); try again shortly",
                super::MAX_EVENT_STREAMS
            ),
        );
    };
    state.streams_full.store(false, Ordering::Relaxed);
    let permit = (permit, mine);
    let lagged = state.lagged.clone();
    let stream = BroadcastStream::new(state.events.subscribe()).flat_map(move |batch| {
        // The permit lives as long as the stream: dropped when the client goes.
        let _held = &permit;
        let out: Vec<Result<SseEvent, Infallible>> = match batch {
            Ok(batch) => batch
                .iter()
                .filter_map(|e| SseEvent::default().event(e.type_name()).json_data(e).ok())
                .map(Ok)
                .collect(),
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                lagged.fetch_add(n, Ordering::Relaxed);
                vec![Ok(SseEvent::default().event("lagged").data(n.to_string()))]
            }
        };
        futures_util::stream::iter(out)
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
