//! The scrape parsers against a real exporter: Debian's node_exporter on
//! loopback, scraped once plainly and once with the `Accept` header
//! Prometheus sends. Every sample line of each body must come out of the
//! parser, in order, with the name, labels and value a naive independent
//! line split finds, for every line simple enough to split naively (no
//! backslash, no blank inside a label value), and the known families must
//! be there. node_exporter answers text either way, so its body is also
//! restated as OpenMetrics and must parse to the same samples.

mod common;

use cairn::scrape::parse::{parse, ACCEPT};
use cairn::scrape::{Format, ParsedSample};
use common::{free_port, http, spawn_node_exporter};

/// What the naive split finds: name, labels, the value as written.
type Split = (String, Vec<(String, String)>, String);

/// A naive split of one sample line: `name{k="v",...} value [ts]`.
/// None when the line holds anything the split cannot handle.
fn naive(line: &str) -> Option<Split> {
    if line.contains('\\') {
        return None;
    }
    let (series, rest) = match line.rfind('}') {
        Some(i) => (&line[..=i], line[i + 1..].trim()),
        None => {
            let mut it = line.splitn(2, ' ');
            (it.next()?, it.next()?.trim())
        }
    };
    let value = rest.split(' ').next()?.to_owned();
    let (name, labels) = match series.find('{') {
        None => (series.to_owned(), Vec::new()),
        Some(i) => {
            let inner = &series[i + 1..series.len() - 1];
            let mut labels = Vec::new();
            for pair in inner.split("\",") {
                if pair.is_empty() {
                    continue;
                }
                let (k, v) = pair.split_once("=\"")?;
                labels.push((k.to_owned(), v.trim_end_matches('"').to_owned()));
            }
            (series[..i].to_owned(), labels)
        }
    };
    Some((name, labels, value))
}

fn same_value(parsed: f64, text: &str) -> bool {
    let want: f64 = match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => match text.parse() {
            Ok(v) => v,
            Err(_) => return false,
        },
    };
    (parsed.is_nan() && want.is_nan()) || parsed == want
}

/// Parses `body` as `content_type` says and checks it against the naive
/// split; returns the samples.
fn check(body: &[u8], content_type: Option<&str>, want: Format) -> Vec<ParsedSample> {
    let mut out = Vec::new();
    let format = parse(body, content_type, &mut out)
        .unwrap_or_else(|e| panic!("node_exporter's body ({content_type:?}) refused: {e}"));
    assert_eq!(format, want, "format for {content_type:?}");
    let text = std::str::from_utf8(body).expect("node_exporter's body is UTF-8");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(lines.len() > 100, "only {} sample lines", lines.len());
    assert_eq!(out.len(), lines.len(), "every sample line parsed");
    let mut compared = 0;
    for (line, s) in lines.iter().zip(&out) {
        let Some((name, labels, value)) = naive(line) else {
            continue;
        };
        assert_eq!(s.name, name, "{line}");
        assert_eq!(s.labels, labels, "{line}");
        assert!(same_value(s.value, &value), "{line}: parsed {}", s.value);
        assert_eq!(s.timestamp_ms, None, "{line}");
        compared += 1;
    }
    assert!(
        compared * 10 >= lines.len() * 9,
        "only {compared} of {} lines simple enough to compare",
        lines.len()
    );
    for known in ["node_boot_time_seconds", "node_load1", "node_time_seconds"] {
        let s = out
            .iter()
            .find(|s| s.name == known)
            .unwrap_or_else(|| panic!("{known} missing"));
        assert!(s.labels.is_empty() && s.value > 0.0, "{known}: {s:?}");
    }
    assert!(
        out.iter().any(|s| s.name == "node_cpu_seconds_total"
            && s.labels.iter().any(|(k, v)| k == "mode" && v == "idle")),
        "node_cpu_seconds_total{{mode=\"idle\"}} missing"
    );
    out
}

#[test]
fn node_exporter_output_parses_in_both_negotiations() {
    let port = free_port();
    let _ne = spawn_node_exporter(port, &[]);
    let url = format!("http://127.0.0.1:{port}/metrics");

    let plain = http::get(&url).expect("plain scrape");
    assert_eq!(plain.status, 200);
    let plain_ct = plain.header("content-type").map(str::to_owned);
    let a = check(&plain.body, plain_ct.as_deref(), Format::Text);

    let neg = http::get_with(&url, &[("Accept", ACCEPT)]).expect("negotiated scrape");
    assert_eq!(neg.status, 200);
    let neg_ct = neg.header("content-type").map(str::to_owned);
    let want = match neg_ct.as_deref() {
        Some(ct) if ct.starts_with("application/openmetrics-text") => Format::OpenMetrics,
        _ => Format::Text,
    };
    let b = check(&neg.body, neg_ct.as_deref(), want);

    // node_exporter answers text even to Prometheus' Accept header. The
    // same real body restated as OpenMetrics (`unknown` for `untyped`, a
    // final `# EOF`) must give the very same samples.
    let restated = openmetrics_of(&plain.body);
    let mut om = Vec::new();
    let f = parse(
        restated.as_bytes(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        &mut om,
    )
    .unwrap_or_else(|e| panic!("node_exporter's body as OpenMetrics refused: {e}"));
    assert_eq!(f, Format::OpenMetrics);
    assert_eq!(om.len(), a.len());
    for (x, y) in om.iter().zip(&a) {
        assert_eq!(
            (&x.name, &x.labels, x.timestamp_ms),
            (&y.name, &y.labels, y.timestamp_ms)
        );
        assert!(
            x.value.to_bits() == y.value.to_bits(),
            "{}: {} vs {}",
            x.name,
            x.value,
            y.value
        );
    }

    // The boot time does not move between the two scrapes.
    let boot = |v: &[ParsedSample]| {
        v.iter()
            .find(|s| s.name == "node_boot_time_seconds")
            .map(|s| s.value)
    };
    assert_eq!(boot(&a), boot(&b));
}

/// A text 0.0.4 body as node_exporter writes it, restated as OpenMetrics.
fn openmetrics_of(body: &[u8]) -> String {
    let text = std::str::from_utf8(body).expect("UTF-8 body");
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.lines() {
        match line.strip_prefix("# TYPE ") {
            Some(rest) if rest.ends_with(" untyped") => {
                out.push_str("# TYPE ");
                out.push_str(&rest[..rest.len() - "untyped".len()]);
                out.push_str("unknown");
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out.push_str("# EOF\n");
    out
}
