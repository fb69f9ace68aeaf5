//! The exposition parsers: Prometheus text 0.0.4 and OpenMetrics 1.0.
//! (Being written: today every body is refused.)

use super::{Format, ParsedSample};

/// The `Accept` header Prometheus 2.42 sends when it scrapes.
pub const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Why a body could not be parsed; the scrape fails (`up` = 0).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    #[error("line {line}: {msg}")]
    Syntax { line: usize, msg: String },
}

/// Parses `body` (already decompressed) as the format `content_type`
/// names, appending its samples to `out` (cleared first).
pub fn parse(
    body: &[u8],
    content_type: Option<&str>,
    out: &mut Vec<ParsedSample>,
) -> Result<Format, ParseError> {
    let _ = (body, content_type);
    out.clear();
    Err(ParseError::Syntax {
        line: 0,
        msg: "parser not built yet".into(),
    })
}
