//! What every request to a target goes through: a bound on requests in
//! flight, the upload rate cap, a timeout, retries of transient failures
//! with jittered back-off, and the counters behind `StoreStats`; and how a
//! failed request is told in one line.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::StoreLimits;

/// Attempts per store call, and the back-off between them: exponential from
/// `RETRY_BASE`, capped, with equal jitter so that a fleet retrying after the
/// same outage spreads out. The waits add up to at most 7.75 s (plus each
/// attempt's own time, bounded by the timeout).
const RETRY_ATTEMPTS: u32 = 6;
const RETRY_BASE: Duration = Duration::from_millis(250);
const RETRY_CAP: Duration = Duration::from_secs(8);

/// What a target's calls have cost so far, for summaries and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    pub requests: u64,
    pub retries: u64,
    pub failures: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Objects uploaded in parts.
    pub multipart_uploads: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) requests: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) bytes_up: AtomicU64,
    pub(super) bytes_down: AtomicU64,
    pub(super) multipart_uploads: AtomicU64,
}

/// What every request to one target goes through: bounded concurrency, an
/// upload rate cap, a timeout per request, retries of transient failures,
/// and counters.
pub(super) struct Requests {
    limits: StoreLimits,
    permits: tokio::sync::Semaphore,
    /// The upload cap, shared by parallel uploads.
    upload_pacer: Option<crate::pace::Pacer>,
    pub(super) counters: Counters,
}

impl Requests {
    pub(super) fn new(limits: StoreLimits) -> Requests {
        Requests {
            limits,
            permits: tokio::sync::Semaphore::new(limits.concurrency),
            upload_pacer: limits.upload_rate.map(crate::pace::Pacer::new),
            counters: Counters::default(),
        }
    }

    /// Waits until `bytes` more may be uploaded under the cap.
    async fn pace_upload(&self, bytes: u64) {
        if let Some(pacer) = &self.upload_pacer {
            let start = pacer.reserve(bytes, Instant::now());
            tokio::time::sleep_until(start.into()).await;
        }
    }

    pub(super) fn stats(&self) -> StoreStats {
        let c = &self.counters;
        StoreStats {
            requests: c.requests.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            bytes_up: c.bytes_up.load(Ordering::Relaxed),
            bytes_down: c.bytes_down.load(Ordering::Relaxed),
            multipart_uploads: c.multipart_uploads.load(Ordering::Relaxed),
        }
    }

    /// Runs one store operation of target `target` through the limits: waits for the upload cap
    /// and a permit, bounds it by the timeout, repeats it on transient
    /// failures with back-off, and counts it. `upload` is the bytes it sends.
    pub(super) async fn call<T, F, Fut>(
        &self,
        target: &str,
        upload: u64,
        op: F,
    ) -> std::result::Result<T, Failed>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.pace_upload(upload).await;
            let outcome = {
                let _permit = self.permits.acquire().await.expect("never closed");
                self.counters.requests.fetch_add(1, Ordering::Relaxed);
                tokio::time::timeout(self.limits.timeout, op()).await
            };
            let failure = match outcome {
                Ok(Ok(v)) => {
                    self.counters.bytes_up.fetch_add(upload, Ordering::Relaxed);
                    return Ok(v);
                }
                Ok(Err(e)) if !is_transient(&e) => {
                    self.counters.failures.fetch_add(1, Ordering::Relaxed);
                    return Err(Failed {
                        failure: Failure::Store(e),
                        attempts: attempt,
                    });
                }
                Ok(Err(e)) => Failure::Store(e),
                Err(_) => Failure::Timeout(self.limits.timeout),
            };
            if attempt >= RETRY_ATTEMPTS {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                return Err(Failed {
                    failure,
                    attempts: attempt,
                });
            }
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            let wait = backoff(attempt);
            tracing::info!(
                target: "gallra::store",
                "target {}: retrying in {wait:?} after: {}",
                target,
                match &failure {
                    Failure::Store(e) => describe(e),
                    Failure::Timeout(t) => format!("no answer in {t:?}"),
                }
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// Why a call failed after its retries.
pub(super) enum Failure {
    Store(object_store::Error),
    Timeout(Duration),
}

pub(super) struct Failed {
    pub(super) failure: Failure,
    pub(super) attempts: u32,
}

/// Whether a store error may go away if the call is repeated: connection
/// failures, timeouts, throttling and server errors. Authentication,
/// permission, not-found and conflict answers are final.
fn is_transient(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    match e {
        E::Generic { .. } | E::JoinError { .. } => {}
        _ => return false,
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(h) = c.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as K;
            return matches!(
                h.kind(),
                K::Connect | K::Request | K::Timeout | K::Interrupted
            );
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            return matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::TimedOut
                    | K::Interrupted
                    | K::BrokenPipe
                    | K::UnexpectedEof
            );
        }
        cause = c.source();
    }
    http_status(&e.to_string()).is_some_and(|code| code == 429 || code >= 500)
}

/// The HTTP status in an object_store error's text: its HTTP stores say it
/// in the message and keep the typed error private.
pub(super) fn http_status(text: &str) -> Option<u16> {
    let i = text.find("status code: ")?;
    text[i + 13..].get(..3)?.parse().ok()
}

/// The text between the first `open` and the `close` after it, trimmed.
pub(super) fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let len = text[start..].find(close)?;
    Some(text[start..start + len].trim())
}

/// An object_store error in one short line: the HTTP status, the server's
/// error code and message, and the request without its query string (which
/// may hold a signature or SAS token), instead of the whole response body.
pub(super) fn describe(e: &object_store::Error) -> String {
    let text = e.to_string().replace('\n', " ");
    // The innermost "Error performing METHOD URL in TIME" names the request.
    let innermost = text
        .rfind("Error performing ")
        .map_or(text.as_str(), |i| &text[i..]);
    let request = between(innermost, "Error performing ", " in ").map(|r| {
        let r = r.split('?').next().unwrap_or(r);
        format!(" ({r})")
    });
    let marker = "status code: ";
    if let Some(i) = text.find(marker) {
        let rest = &text[i + marker.len()..];
        let status = rest.split(':').next().unwrap_or(rest).trim();
        let code = between(rest, "<Code>", "</Code>")
            .map(|c| format!(" {c}"))
            .unwrap_or_default();
        let message = between(rest, "<Message>", "</Message>")
            .map(|m| {
                let m = m.split("RequestId:").next().unwrap_or(m).trim();
                format!(": {m}")
            })
            .unwrap_or_default();
        return format!("{status}{code}{message}{}", request.unwrap_or_default());
    }
    if text.contains("error sending request") {
        return format!(
            "cannot reach the server{}: connection failed",
            request.unwrap_or_default()
        );
    }
    text
}

fn backoff(attempt: u32) -> Duration {
    use rand::RngExt;
    let exp = RETRY_BASE
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(RETRY_CAP);
    let half = exp / 2;
    half + half.mul_f64(rand::rng().random_range(0.0..1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_are_summarised_without_body_or_query() {
        let text = "Error performing GET http://127.0.0.1:1/b?list-type=2&X-Amz-Signature=abc in 1ms - Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?> <Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><RequestId>X</RequestId></Error>";
        let e = object_store::Error::Generic {
            store: "S3",
            source: text.into(),
        };
        assert_eq!(
            describe(&e),
            "404 Not Found NoSuchBucket: The specified bucket does not exist (GET http://127.0.0.1:1/b)"
        );
        assert!(!is_transient(&e));
        let e = object_store::Error::Generic {
            store: "S3",
            source: "Error performing PUT http://h/b/k in 2ms - Server returned non-2xx status code: 503 Service Unavailable: slow down".into(),
        };
        assert!(is_transient(&e));
        assert_eq!(describe(&e), "503 Service Unavailable (PUT http://h/b/k)");
        let e = object_store::Error::Generic {
            store: "S3",
            source: "Error performing GET http://127.0.0.1:1/b?sig=s in 1ms - HTTP error: error sending request".into(),
        };
        assert_eq!(
            describe(&e),
            "cannot reach the server (GET http://127.0.0.1:1/b): connection failed"
        );
    }
}
