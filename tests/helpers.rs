//! Tests of the test helpers themselves (parser, HTTP response parsing,
//! parity comparison), so a parity failure is about cairn, not the harness.

mod common;

use common::expo::{parse, parse_value};
use common::http::{parse_response, urlencode};
use common::parity::{compare, DiffKind};

const SAMPLE: &str = r#"# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.
# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 1.2345678e+10
node_filesystem_avail_bytes{device="odd \"dev\" \\ name\nx",fstype="ext4",mountpoint="/a b"} 0
# HELP node_x Help with a \\ backslash\nand newline.
# TYPE node_x counter
node_x NaN
node_y +Inf 1700000000000
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0.5"} 1e-05
go_gc_duration_seconds_sum -Inf
go_gc_duration_seconds_count 3
"#;

#[test]
fn parses_node_exporter_style_text() {
    let f = parse(SAMPLE).unwrap();
    let fs = &f["node_filesystem_avail_bytes"];
    assert_eq!(fs.kind, "gauge");
    assert_eq!(
        fs.help,
        "Filesystem space available to non-root users in bytes."
    );
    assert_eq!(fs.samples[0].value, 1.2345678e10);
    assert_eq!(fs.samples[1].labels["device"], "odd \"dev\" \\ name\nx");
    assert_eq!(fs.samples[1].labels["mountpoint"], "/a b");
    assert!(f["node_x"].samples[0].value.is_nan());
    assert_eq!(f["node_x"].help, "Help with a \\ backslash\nand newline.");
    assert_eq!(f["node_y"].kind, "untyped");
    assert_eq!(f["node_y"].samples[0].value, f64::INFINITY);
    let s = &f["go_gc_duration_seconds"];
    assert_eq!(s.samples.len(), 3);
    assert_eq!(s.samples[1].value, f64::NEG_INFINITY);
    assert_eq!(parse_value("-1.5E3"), Some(-1500.0));
    assert_eq!(parse_value("1,5"), None);
}

#[test]
fn rejects_malformed_text() {
    for bad in [
        "x{a=\"b\" 1\n",
        "x 1\nx 2\n",
        "x{a=\"1\",a=\"2\"} 1\n",
        "x one\n",
        "# TYPE x gauge\n# TYPE x counter\nx 1\n",
        "x{1a=\"b\"} 1\n",
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[test]
fn parses_http_responses() {
    let r = parse_response(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"abcde"[..]));
    let r = parse_response(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nabXX").unwrap();
    assert_eq!((r.status, r.body.as_slice()), (404, &b"ab"[..]));
    assert_eq!(r.header("CONTENT-LENGTH"), Some("2"));
    assert_eq!(urlencode("up{job=\"x\"}"), "up%7Bjob%3D%22x%22%7D");
}

fn fams(s: &str) -> common::expo::Families {
    parse(s).unwrap()
}

#[test]
fn parity_accepts_values_in_the_window_and_ignores_own_metrics() {
    let before = fams(
        "# HELP node_load1 1m load average.\n# TYPE node_load1 gauge\nnode_load1 0.5\n\
         # HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n# TYPE node_cpu_seconds_total counter\n\
         node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 1000\n\
         # HELP node_boot_time_seconds Node boot time, in unixtime.\n# TYPE node_boot_time_seconds gauge\nnode_boot_time_seconds 1.7e9\n\
         # TYPE go_goroutines gauge\ngo_goroutines 7\n",
    );
    let after = fams(
        "# HELP node_load1 1m load average.\n# TYPE node_load1 gauge\nnode_load1 0.7\n\
         # HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n# TYPE node_cpu_seconds_total counter\n\
         node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 1010\n\
         # HELP node_boot_time_seconds Node boot time, in unixtime.\n# TYPE node_boot_time_seconds gauge\nnode_boot_time_seconds 1.7e9\n",
    );
    let cairn = fams(
        "# HELP node_load1 1m load average.\n# TYPE node_load1 gauge\nnode_load1 0.6\n\
         # HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n# TYPE node_cpu_seconds_total counter\n\
         node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 1005\n\
         # HELP node_boot_time_seconds Node boot time, in unixtime.\n# TYPE node_boot_time_seconds gauge\nnode_boot_time_seconds 1.7e9\n\
         # TYPE cairn_build_info gauge\ncairn_build_info{version=\"0\"} 1\n",
    );
    let d = compare(&before, &cairn, &after);
    assert!(d.is_empty(), "{d:#?}");
}

#[test]
fn parity_reports_every_kind_of_difference() {
    let ne = fams(
        "# HELP node_a A.\n# TYPE node_a gauge\nnode_a{x=\"1\"} 1\nnode_a{x=\"2\"} 1\n\
         # HELP node_b B.\n# TYPE node_b counter\nnode_b 5\n\
         # HELP node_c C.\n# TYPE node_c gauge\nnode_c{y=\"1\"} 1\n\
         # HELP node_boot_time_seconds Node boot time, in unixtime.\n# TYPE node_boot_time_seconds gauge\nnode_boot_time_seconds 100\n\
         # HELP node_load1 1m load average.\n# TYPE node_load1 gauge\nnode_load1 0.5\n\
         # HELP node_gone Gone.\n# TYPE node_gone gauge\nnode_gone 1\n",
    );
    let cairn = fams(
        "# HELP node_a A.\n# TYPE node_a gauge\nnode_a{x=\"1\"} 1\nnode_a{x=\"3\"} 1\n\
         # HELP node_b Bee.\n# TYPE node_b gauge\nnode_b 5\n\
         # HELP node_c C.\n# TYPE node_c gauge\nnode_c{z=\"1\"} 1\n\
         # HELP node_boot_time_seconds Node boot time, in unixtime.\n# TYPE node_boot_time_seconds gauge\nnode_boot_time_seconds 100.5\n\
         # HELP node_load1 1m load average.\n# TYPE node_load1 gauge\nnode_load1 2.6\n\
         # HELP node_new New.\n# TYPE node_new gauge\nnode_new 1\n",
    );
    let d = compare(&ne, &cairn, &ne);
    let kinds: Vec<(DiffKind, &str)> = d.iter().map(|d| (d.kind, d.family.as_str())).collect();
    assert_eq!(
        kinds,
        vec![
            (DiffKind::MissingFamily, "node_gone"),
            (DiffKind::ExtraFamily, "node_new"),
            (DiffKind::Type, "node_b"),
            (DiffKind::Help, "node_b"),
            (DiffKind::LabelNames, "node_c"),
            (DiffKind::MissingSeries, "node_a"),
            (DiffKind::ExtraSeries, "node_a"),
            (DiffKind::Value, "node_boot_time_seconds"),
            (DiffKind::Value, "node_load1"),
        ],
        "{d:#?}"
    );
    assert!(d[5].to_string().contains("node_a{x=\"2\"}"), "{}", d[5]);
}

#[test]
fn parity_coverage_counts_families_with_same_type_and_labels() {
    let ne = fams(
        "# HELP node_a A.\n# TYPE node_a gauge\nnode_a{x=\"1\"} 1\n\
         # HELP node_b B.\n# TYPE node_b counter\nnode_b 5\n\
         # HELP node_c C.\n# TYPE node_c gauge\nnode_c{y=\"1\"} 1\n\
         # HELP node_d D.\n# TYPE node_d gauge\nnode_d 1\n\
         # TYPE go_goroutines gauge\ngo_goroutines 7\n",
    );
    let cairn = fams(
        "# HELP node_a Other help still counts.\n# TYPE node_a gauge\nnode_a{x=\"2\"} 3\n\
         # HELP node_b B.\n# TYPE node_b gauge\nnode_b 5\n\
         # HELP node_c C.\n# TYPE node_c gauge\nnode_c{z=\"1\"} 1\n",
    );
    let c = common::parity::coverage(&ne, &cairn, &ne);
    assert_eq!((c.covered, c.total), (1, 4), "{c}");
    assert_eq!(c.missing, ["node_d (gauge, 1 series)"]);
    assert_eq!(c.type_mismatch.len(), 1);
    assert_eq!(c.label_mismatch.len(), 1);
    assert_eq!(c.ratio(), 0.25);
}

#[test]
fn parity_tolerates_churn_in_instantaneous_counts_only() {
    let ne = fams(
        "# HELP node_sockstat_TCP_inuse x\n# TYPE node_sockstat_TCP_inuse gauge\nnode_sockstat_TCP_inuse 10\n\
         # HELP node_load1 1m load average.\n# TYPE node_load1 gauge\nnode_load1 0.5\n",
    );
    let cairn = fams(
        "# HELP node_sockstat_TCP_inuse x\n# TYPE node_sockstat_TCP_inuse gauge\nnode_sockstat_TCP_inuse 40\n\
         # HELP node_load1 1m load average.\n# TYPE node_load1 gauge\nnode_load1 0.5\n",
    );
    assert!(compare(&ne, &cairn, &ne).is_empty());
    let way_off = fams(
        "# HELP node_sockstat_TCP_inuse x\n# TYPE node_sockstat_TCP_inuse gauge\nnode_sockstat_TCP_inuse 10240\n\
         # HELP node_load1 1m load average.\n# TYPE node_load1 gauge\nnode_load1 0.5\n",
    );
    assert_eq!(compare(&ne, &way_off, &ne).len(), 1);
}
