//! `hook dlq`, `hook redrive`: the queued hooks' dead-letter queue, shown without payloads.

use crate::OperatorError;

/// A dead-lettered hook event as `hooks-dlq` shows it: never the payload, a header or a
/// signature.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterSummary {
    /// The event id (the `202`'s `id`; what `hooks-redrive ID=` takes).
    pub id: String,
    /// The hook.
    pub hook: String,
    /// When it was accepted (RFC 3339).
    pub first_seen: String,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Why it is in the dead-letter queue.
    pub last_error: String,
}

/// How long a listing holds the dead letters it reads (hidden from other readers); it shows
/// them again at once when done.
const LIST_HOLD: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a redrive holds them: long enough to send back a thousand, one call pair each.
const REDRIVE_HOLD: std::time::Duration = std::time::Duration::from_secs(900);

/// The most dead letters one command reads.
const DLQ_MAX: usize = 1000;

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms).map_or_else(
        || "?".into(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// The dead-letter queue's events, oldest first (read, then made visible again: a listing
/// changes nothing).
pub async fn list_dead_letters(
    queue: &broker::hooks::queue::HookQueue,
) -> Result<Vec<DeadLetterSummary>, OperatorError> {
    let letters = queue.dead_letters(DLQ_MAX, LIST_HOLD).await?;
    queue.unhold(&letters).await?;
    let mut out: Vec<DeadLetterSummary> = letters
        .iter()
        .map(|l| DeadLetterSummary {
            id: l.id().to_owned(),
            hook: l.event.as_ref().map_or("?".into(), |e| e.hook.clone()),
            first_seen: rfc3339(
                l.event
                    .as_ref()
                    .map_or(l.sent.unwrap_or(0), |e| e.first_seen),
            ),
            attempts: l.event.as_ref().map_or(0, |e| e.attempts),
            last_error: l.reason(),
        })
        .collect();
    out.sort_by(|a, b| a.first_seen.cmp(&b.first_seen));
    Ok(out)
}

/// Sends dead letters back to the hook queue, once each: the one with event id `id`, or all of
/// them. `sent` hears each event id as it goes back (so a failure part way says what was done);
/// returns how many went back.
pub async fn redrive_dead_letters(
    queue: &broker::hooks::queue::HookQueue,
    id: Option<&str>,
    deadline: chrono::DateTime<chrono::Utc>,
    mut sent: impl FnMut(&str),
) -> Result<usize, OperatorError> {
    let letters = queue.dead_letters(DLQ_MAX, REDRIVE_HOLD).await?;
    let (chosen, others): (Vec<_>, Vec<_>) = letters
        .into_iter()
        .partition(|l| id.is_none_or(|id| l.id() == id || l.message_id == id));
    queue.unhold(&others).await?;
    if let Some(id) = id
        && chosen.is_empty()
    {
        return Err(OperatorError::BadInput(format!(
            "no event {id:?} in the dead-letter queue (hooks-dlq lists them)"
        )));
    }
    for letter in &chosen {
        queue.redrive(letter, deadline).await?;
        sent(letter.id());
    }
    Ok(chosen.len())
}
