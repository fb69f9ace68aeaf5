//! What /-/ready says beyond its status: lines naming what keeps cairn
//! from doing its job while it still runs (a remote refusing every
//! request). The status code stays what it was (200 once started, 503
//! while starting or stopping): a remote's credentials are not this
//! process's readiness, and a 503 would have orchestrators restart an
//! agent that restarting cannot fix.
//!
//! Owns: the note hook the server calls. Must never: block, do I/O, or
//! take a lock a sender holds while sending.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use crate::remote_write::SenderMetrics;

/// Extra lines for /-/ready's body, or None.
pub type Note = Box<dyn Fn() -> Option<String> + Send + Sync>;

/// Set once, after the senders exist (the server starts before them).
#[derive(Default)]
pub struct NoteSlot(OnceLock<Note>);

impl NoteSlot {
    pub fn set(&self, note: Note) {
        let _ = self.0.set(note);
    }
    pub fn get(&self) -> Option<String> {
        self.0.get().and_then(|f| f())
    }
}

/// One line per blocked remote: `remote "NAME" blocked: REASON (...)`.
pub fn blocked_remotes(senders: Vec<Arc<SenderMetrics>>) -> Note {
    Box::new(move || {
        let mut out = String::new();
        for m in &senders {
            if let Some(r) = m.blocked() {
                out.push_str(&format!(
                    "remote {:?} blocked: {} (the receiver refuses every request; data is kept and retried)\n",
                    m.remote(),
                    r.as_str()
                ));
            }
        }
        (!out.is_empty()).then_some(out)
    })
}

pub(super) fn response(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
