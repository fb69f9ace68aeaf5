//! The parsers against the cases Prometheus 2.42's textparse accepts and
//! refuses (the facts of its lexers, written anew).

use super::*;

const OM: Option<&str> = Some("application/openmetrics-text; version=1.0.0; charset=utf-8");

fn text(body: &str) -> Vec<ParsedSample> {
    let mut out = Vec::new();
    let f =
        parse(body.as_bytes(), None, &mut out).unwrap_or_else(|e| panic!("{body:?} refused: {e}"));
    assert_eq!(f, Format::Text);
    out
}

fn om(body: &str) -> Vec<ParsedSample> {
    let mut out = Vec::new();
    let f =
        parse(body.as_bytes(), OM, &mut out).unwrap_or_else(|e| panic!("{body:?} refused: {e}"));
    assert_eq!(f, Format::OpenMetrics);
    out
}

/// The line a body is refused at.
fn text_err(body: &[u8]) -> usize {
    err_line(body, None)
}

fn om_err(body: &[u8]) -> usize {
    err_line(body, OM)
}

fn err_line(body: &[u8], ct: Option<&str>) -> usize {
    let mut out = vec![sample("stale", &[], 1.0, None)];
    match parse(body, ct, &mut out) {
        Ok(_) => panic!(
            "{:?} accepted as {ct:?}: {out:?}",
            String::from_utf8_lossy(body)
        ),
        Err(ParseError::Syntax { line, .. }) => {
            assert!(out.is_empty(), "a refused body leaves no samples");
            line
        }
    }
}

fn sample(name: &str, labels: &[(&str, &str)], value: f64, ts: Option<i64>) -> ParsedSample {
    ParsedSample {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        value,
        timestamp_ms: ts,
    }
}

#[test]
fn content_type_picks_the_format_as_prometheus() {
    assert_eq!(format_for(None), Format::Text);
    assert_eq!(format_for(Some("")), Format::Text);
    assert_eq!(format_for(Some("text/plain; version=0.0.4")), Format::Text);
    assert_eq!(format_for(Some("application/json")), Format::Text);
    assert_eq!(
        format_for(Some(
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily"
        )),
        Format::Text
    );
    for ct in [
        "application/openmetrics-text",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        "Application/OpenMetrics-Text;version=0.0.1",
        " application/openmetrics-text ; version=\"1.0.0\" ;",
    ] {
        assert_eq!(format_for(Some(ct)), Format::OpenMetrics, "{ct}");
    }
    // Parameters Go's mime package refuses: Prometheus falls back to text.
    for ct in [
        "application/openmetrics-text; version",
        "application/openmetrics-text; version=1; version=2",
        "application/openmetrics-text; version=\"1",
        "application/openmetrics-text; =1",
    ] {
        assert_eq!(format_for(Some(ct)), Format::Text, "{ct}");
    }
}

#[test]
fn text_families_with_help_type_comments_and_blank_lines() {
    let body = "# HELP http_requests_total The total.\n\
                # TYPE http_requests_total counter\n\
                http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
                \n\
                # a comment\n\
                #another comment\n\
                   \t\n\
                http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\
                # TYPE rpc summary\n\
                rpc{quantile=\"0.5\"} 4773\n\
                rpc_sum 1.7560473e+07\n\
                rpc_count 2693\n\
                # TYPE x untyped\n\
                x 1";
    assert_eq!(
        text(body),
        vec![
            sample(
                "http_requests_total",
                &[("method", "post"), ("code", "200")],
                1027.0,
                Some(1395066363000)
            ),
            sample(
                "http_requests_total",
                &[("method", "post"), ("code", "400")],
                3.0,
                Some(1395066363000)
            ),
            sample("rpc", &[("quantile", "0.5")], 4773.0, None),
            sample("rpc_sum", &[], 1.7560473e7, None),
            sample("rpc_count", &[], 2693.0, None),
            sample("x", &[], 1.0, None),
        ]
    );
}

#[test]
fn text_whitespace_commas_and_names_as_prometheus_lexes_them() {
    let s = text("  a:b_c1 { x = \"1\" , y=\"2\" , } 5 \t\n");
    assert_eq!(
        s,
        vec![sample("a:b_c1", &[("x", "1"), ("y", "2")], 5.0, None)]
    );
    // Commas may be left out; no blank is needed after the brace.
    let s = text("m{x=\"1\"y=\"2\"}7\n");
    assert_eq!(s, vec![sample("m", &[("x", "1"), ("y", "2")], 7.0, None)]);
    let s = text("m{} 1\n_m 2\n:m 3\n");
    assert_eq!(s.len(), 3);
    assert_eq!(text("").len(), 0);
    assert_eq!(text("\n\n  \n# only comments\n").len(), 0);
}

#[test]
fn text_label_values_unescape_as_prometheus() {
    let s = text("m{a=\"x\\\\y\",b=\"q\\\"q\",c=\"l\\nl\",d=\"\\t\",e=\"ü\"} 1\n");
    assert_eq!(
        s[0].labels,
        vec![
            ("a".into(), "x\\y".into()),
            ("b".into(), "q\"q".into()),
            ("c".into(), "l\nl".into()),
            ("d".into(), "\\t".into()),
            ("e".into(), "ü".into()),
        ]
    );
    // A raw newline inside a quoted value is accepted by the text lexer.
    let s = text("m{a=\"two\nlines\"} 1\nn 2\n");
    assert_eq!(s[0].labels[0].1, "two\nlines");
    assert_eq!(s[1].name, "n");
}

#[test]
fn values_follow_go_parse_float_without_hex() {
    let s = text(
        "a 1.5e3\nb -Inf\nc +Inf\nd Inf\ne infinity\nf .5\ng 1.\nh -0\ni 1E-2\nj 007\nk 1e-400\n",
    );
    let v: Vec<f64> = s.iter().map(|s| s.value).collect();
    assert_eq!(
        v,
        vec![
            1500.0,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::INFINITY,
            f64::INFINITY,
            0.5,
            1.0,
            -0.0,
            0.01,
            7.0,
            0.0
        ]
    );
    for bad in [
        "0x10", "0x1p3", "1_000", "+NaN", "-nan", "1e", "1e+", ".", "", "- 1", "1e400", "infin",
        "1,5", "true",
    ] {
        assert_eq!(parse_go_float(bad.as_bytes()), None, "{bad}");
    }
    for bad in ["a 0x10\n", "a 1_0\n", "a 1e400\n", "a +NaN\n"] {
        assert_eq!(text_err(bad.as_bytes()), 1, "{bad}");
    }
}

#[test]
fn every_nan_is_the_one_prometheus_stores() {
    for body in ["a NaN\n", "a nan\n", "a NAN\n"] {
        let s = text(body);
        assert_eq!(s[0].value.to_bits(), NORMAL_NAN_BITS, "{body}");
    }
    let s = om("a NaN\nb nan 1\n# EOF\n");
    for x in &s {
        assert_eq!(x.value.to_bits(), NORMAL_NAN_BITS);
        assert_ne!(x.value.to_bits(), 0x7ff0_0000_0000_0002);
        assert_ne!(x.value.to_bits(), 0x7ff0_0000_0000_0003);
    }
}

#[test]
fn text_timestamps_are_integer_milliseconds() {
    assert_eq!(
        text("a 1 1700000000123 \n")[0].timestamp_ms,
        Some(1_700_000_000_123)
    );
    assert_eq!(
        text("a 1 9223372036854775807\n")[0].timestamp_ms,
        Some(i64::MAX)
    );
    for bad in [
        "a 1 -5\n",
        "a 1 -0\n",
        "a 1 1.5\n",
        "a 1 9223372036854775808\n",
        "a 1 2 3\n",
        "a 1 2x\n",
    ] {
        assert_eq!(text_err(bad.as_bytes()), 1, "{bad}");
    }
}

#[test]
fn text_refusals_name_their_line() {
    let ok = "# HELP a x\na 1\n";
    let cases: &[(&str, usize)] = &[
        ("a\n", 4),                     // no value
        ("a{b=\"c\"\n", 4),             // unclosed
        ("a{b=c} 1\n", 4),              // unquoted
        ("a{b=\"c\",,d=\"e\"} 1\n", 4), // double comma
        ("a{,} 1\n", 4),                // leading comma
        ("a{1b=\"c\"} 1\n", 4),         // label name
        ("a{b:c=\"d\"} 1\n", 4),        // colon in a label name
        ("1a 1\n", 4),                  // metric name
        ("a 1{b=\"c\"}\n", 4),          // value then brace
        ("a{b=\"c\"}{d=\"e\"} 1\n", 4), // two label sets
        ("# TYPE a counter \n", 4),     // trailing blank in TYPE
        ("# TYPE a  counter\n", 4),     // two blanks in TYPE
        ("# TYPE a unknown\n", 4),      // OpenMetrics' word
        ("# TYPE a\n", 4),              // no type
        ("# TYPE 1a counter\n", 4),     // bad name
        ("a{b=\"c\",b=\"d\"} 1\n", 4),  // duplicate label
        ("a{__name__=\"x\"} 1\n", 4),   // a second name
        ("a 1\r\n", 4),                 // CRLF
        ("a{b=\"x\\\ny\"} 1\n", 4),     // escaped raw newline
        ("a 1 \0\n", 4),                // NUL after the value
        ("{b=\"c\"} 1\n", 4),           // no name
    ];
    for (bad, line) in cases {
        let body = format!("{ok}\n{bad}b 2\n");
        assert_eq!(text_err(body.as_bytes()), *line, "{bad:?}");
    }
    // Invalid UTF-8 in a label value or HELP text; elsewhere in a comment
    // it is fine.
    assert_eq!(text_err(b"a 1\nb{c=\"\xff\"} 1\n"), 2);
    assert_eq!(text_err(b"a 1\n\n# HELP b \xc3\n"), 3);
    let mut out = Vec::new();
    assert!(parse(b"# just \xc3 bytes\na 1\n", None, &mut out).is_ok());
    assert_eq!(out.len(), 1);
}

#[test]
fn text_help_and_comment_edge_cases() {
    // HELP with any text (escapes, empty, blanks only), comments that look
    // like keywords.
    let s = text("# HELP a\n# HELP a \n# HELP a    \n# HELP a x\\ny \\\\\n# HELPER x\n#HELP a\n# TYPEx\na 1\n");
    assert_eq!(s.len(), 1);
    // A NUL at the start of a line ends the body without error, as the
    // lexer takes it for the end of input.
    let mut out = Vec::new();
    parse(b"a 1\n\0garbage {{{\n", None, &mut out).expect("NUL ends input");
    assert_eq!(out.len(), 1);
    // Inside a label value a NUL is kept.
    let mut out = Vec::new();
    parse(b"a{b=\"x\0y\"} 1\n", None, &mut out).expect("NUL in a value");
    assert_eq!(out[0].labels[0].1, "x\0y");
}

#[test]
fn empty_name_label_is_dropped_and_empty_values_kept() {
    let s = text("a{__name__=\"\",b=\"\",b=\"x\",c=\"\"} 1\n");
    assert_eq!(
        s,
        vec![sample("a", &[("b", ""), ("b", "x"), ("c", "")], 1.0, None)]
    );
}

#[test]
fn huge_label_values_and_many_labels() {
    let big = "v".repeat(1 << 20);
    let s = text(&format!("a{{b=\"{big}\"}} 1\n"));
    assert_eq!(s[0].labels[0].1.len(), 1 << 20);
    let many: Vec<String> = (0..200).map(|i| format!("l{i}=\"{i}\"")).collect();
    let s = text(&format!("a{{{}}} 1\n", many.join(",")));
    assert_eq!(s[0].labels.len(), 200);
    let mut dup = many.clone();
    dup.push("l7=\"x\"".into());
    assert_eq!(
        text_err(format!("a{{{}}} 1\n", dup.join(",")).as_bytes()),
        1
    );
}

#[test]
fn openmetrics_and_text_give_the_same_families() {
    let t = "# HELP foo_seconds A histogram.\n\
             # TYPE foo_seconds histogram\n\
             foo_seconds_bucket{le=\"0.1\",path=\"/a\\\"b\"} 8\n\
             foo_seconds_bucket{le=\"+Inf\",path=\"/a\\\"b\"} 10\n\
             foo_seconds_sum{path=\"/a\\\"b\"} 1.5\n\
             foo_seconds_count{path=\"/a\\\"b\"} 10\n\
             # TYPE reqs counter\n\
             reqs_total{job=\"app\"} 3\n\
             # TYPE temp gauge\n\
             temp -1.5e-3\n";
    let o = "# HELP foo_seconds A histogram.\n\
             # TYPE foo_seconds histogram\n\
             # UNIT foo_seconds seconds\n\
             foo_seconds_bucket{le=\"0.1\",path=\"/a\\\"b\"} 8\n\
             foo_seconds_bucket{le=\"+Inf\",path=\"/a\\\"b\"} 10 # {trace_id=\"x\"} 0.7 123.4\n\
             foo_seconds_sum{path=\"/a\\\"b\"} 1.5\n\
             foo_seconds_count{path=\"/a\\\"b\"} 10\n\
             # TYPE reqs counter\n\
             reqs_total{job=\"app\"} 3 # {} 1\n\
             # TYPE temp gauge\n\
             temp -1.5e-3\n\
             # EOF\n";
    assert_eq!(text(t), om(o));
    assert_eq!(text(t).len(), 6);
}

#[test]
fn openmetrics_types_units_timestamps_and_created() {
    let s = om("# TYPE a stateset\n\
                a{a=\"x\"} 1\n\
                # TYPE b info\n\
                b_info{v=\"1\"} 1\n\
                # TYPE c gaugehistogram\n\
                c_gcount 2\n\
                # TYPE d unknown\n\
                d 1 1.5\n\
                # TYPE e counter\n\
                e_total 1 1700000000.001\n\
                e_created 1700000000 -1.0015\n\
                # UNIT f_bytes bytes\n\
                # UNIT g \n\
                # HELP h \n\
                # EOF");
    assert_eq!(s.len(), 6);
    assert_eq!(s[3].timestamp_ms, Some(1500));
    // Go's int64(ts * 1000): 1700000000.001 * 1000 rounds to ...000.9999.
    assert_eq!(s[4].timestamp_ms, Some((1700000000.001f64 * 1000.0) as i64));
    // `_created` is an ordinary series in Prometheus 2.42.
    assert_eq!(s[5].name, "e_created");
    assert_eq!(s[5].value, 1.7e9);
    assert_eq!(s[5].timestamp_ms, Some(-1001));
}

#[test]
fn openmetrics_refusals_name_their_line() {
    let ok = "# TYPE a gauge\na 1\n";
    let cases: &[&str] = &[
        "",                     // no # EOF
        "\n# EOF\n",            // blank line
        "# a comment\n# EOF\n", // comments other than metadata
        "#HELP a x\n# EOF\n",
        "a  1\n# EOF\n",                  // two blanks
        " a 1\n# EOF\n",                  // leading blank
        "a 1 \n# EOF\n",                  // trailing blank
        "a{b=\"c\",} 1\n# EOF\n",         // trailing comma
        "a{b=\"c\" ,d=\"e\"} 1\n# EOF\n", // blank in labels
        "a{b=\"c\"d=\"e\"} 1\n# EOF\n",   // missing comma
        "a{b=\"c\nd\"} 1\n# EOF\n",       // newline in a value
        "a 1 NaN\n# EOF\n",               // NaN timestamp
        "a 1 +Inf\n# EOF\n",              // infinite timestamp
        "a 1 1 1\n# EOF\n",
        "# TYPE a untyped\n# EOF\n", // the text format's word
        "# TYPE a counter \n# EOF\n",
        "# UNIT a_seconds bytes\n# EOF\n",
        "# UNIT aseconds seconds\n# EOF\n",
        "# HELP a\n# EOF\n",              // no blank before the text
        "a 1 # {b=\"c\"} 1\n# EOF\n",     // exemplar on a gauge name
        "a_total 1 # {b=\"c\"}\n# EOF\n", // exemplar without value
        "a_total 1 # {b=\"c\"} 1 NaN\n# EOF\n",
        "a_total 1 # {b=\"c\"} x\n# EOF\n",
        "a 1\r\n# EOF\n",
        "a 1\n# EOF\nb 2\n", // data after # EOF
        "a 1\n# EOF\n\n",
        "a 1\n# EOF ",
        "a 1", // ends without # EOF or newline
        "a 1 2",
        "a{b=\"c\",b=\"d\"} 1\n# EOF\n", // duplicate label
    ];
    for bad in cases {
        let body = format!("{ok}{bad}");
        let line = om_err(body.as_bytes());
        assert!(line >= 3, "{bad:?}: line {line}");
    }
    assert_eq!(om_err(b"a 1\nb 2\nc{ 3\n# EOF\n"), 3);
    // The empty body is valid text but not OpenMetrics.
    assert_eq!(om_err(b""), 1);
    assert_eq!(text("").len(), 0);
    // # EOF without a final newline is fine.
    assert_eq!(om("a 1\n# EOF").len(), 1);
}

#[test]
fn warm_parse_reuses_entries() {
    let body: String = (0..100)
        .map(|i| format!("m{{a=\"{i}\",b=\"x\"}} {i}\n"))
        .collect();
    let mut out = Vec::new();
    parse(body.as_bytes(), None, &mut out).expect("parse");
    let ptrs: Vec<*const u8> = out.iter().map(|s| s.labels[0].1.as_ptr()).collect();
    parse(body.as_bytes(), None, &mut out).expect("parse");
    let again: Vec<*const u8> = out.iter().map(|s| s.labels[0].1.as_ptr()).collect();
    assert_eq!(ptrs, again, "label strings are overwritten in place");
    // A shorter body truncates.
    parse(b"m 1\n", None, &mut out).expect("parse");
    assert_eq!(out, vec![sample("m", &[], 1.0, None)]);
}

/// Bodies of the kind Prometheus' own parser tests accept, with the
/// samples they hold.
#[test]
fn bodies_prometheus_accepts() {
    let t = "# HELP gc A summary.\n\
             # \tTYPE gc summary\n\
             gc{quantile=\"0.25\",} 7.4e-05\n\
             gc{quantile=\"0.8\", a=\"b\"} 1\n\
             gc{ quantile=\"0.9\", a=\"b\"} 1\n\
             # Hrandom comment starting like HELP\n\
             #\n\
             # HELP nohelp1\n\
             # HELP nohelp2 \n\
             gc { quantile= \"1.0\", a= \"b\", } 2\n\
             gc { quantile = \"1.0\", a = \"b\" } 3\n\
             some:aggregate:rate5m{a_b=\"c\"}\t1\n\
             go_goroutines 33  \t123123\n\
             _m 1\n\
             t{_l=\"foo\"} 1\n\
             t{label=\"\\\"bar\\\"\"} 1\n\
             # HELP metric foo\0bar\n\
             null_byte_metric{a=\"abc\0\"} 1\n";
    let s = text(t);
    assert_eq!(s.len(), 11);
    assert_eq!(s[5].name, "some:aggregate:rate5m");
    assert_eq!(s[6].timestamp_ms, Some(123123));
    assert_eq!(s[9].labels[0].1, "\"bar\"");
    assert_eq!(s[10].labels[0].1, "abc\0");

    let o = "# HELP gc A summary.\n\
             # TYPE gc summary\n\
             # UNIT gc_seconds seconds\n\
             gc{quantile=\"0.5\",a=\"b\"} 8.3835e-05\n\
             # HELP nohelp1 \n\
             # HELP help2 escape \\ \\n \\\\ \\\" \\x chars\n\
             # UNIT nounit \n\
             go_goroutines 33 123.123\n\
             # TYPE hhh histogram\n\
             hhh_bucket{le=\"+Inf\"} 1 # {aa=\"bb\"} 4\n\
             # TYPE ggh gaugehistogram\n\
             ggh_bucket{le=\"+Inf\"} 1 # {cc=\"dd\",xx=\"yy\"} 4 123.123\n\
             # TYPE ss stateset\n\
             ss{ss=\"foo\"} 1\n\
             ss{A=\"a\"} 0\n\
             # TYPE foo counter\n\
             foo_total 17.0 1520879607.789 # {xx=\"yy\"} 5\n\
             # HELP metric foo\0bar\n\
             null_byte_metric{a=\"abc\0\"} 1\n\
             # EOF\n";
    let s = om(o);
    assert_eq!(s.len(), 8);
    assert_eq!(s[1].timestamp_ms, Some(123123));
    assert_eq!(s[6].timestamp_ms, Some((1520879607.789f64 * 1000.0) as i64));
    assert_eq!(s[6].value, 17.0);
    assert_eq!(s[7].labels[0].1, "abc\0");
    assert_eq!(om("# EOF").len(), 0);
    assert_eq!(om("# EOF\n").len(), 0);
}

/// Bodies of the kind Prometheus' own parser tests refuse.
#[test]
fn bodies_prometheus_refuses() {
    for bad in [
        "a",
        "a{b='c'} 1\n",
        "a{b=\n",
        "a{\u{ff}=\"foo\"} 1\n",
        "a true\n",
        "something_weird{problem=\"",
        "empty_label_name{=\"\"} 0",
        "foo 1_2\n",
        "foo 0x1p-3\n",
        "foo 0x1P-3\n",
        "foo 0 1_2\n",
        "{a=\"ok\"} 1",
        "# TYPE #\n#EOF\n",
        "# HELP #\n#EOF\n",
    ] {
        text_err(bad.as_bytes());
    }
    for bad in [
        "",
        "\n",
        "metric",
        "metric 1",
        "metric 1\n",
        "metric_total 1 # {aa=\"bb\"} 4",
        "a\n#EOF\n",
        "a 1\n#EOF\n",
        " a 1\n# EOF\n",
        "9\n# EOF\n",
        "# TYPE u untyped\n# EOF\n",
        "# TYPE c counter \n# EOF\n",
        "#  TYPE c counter\n# EOF\n",
        "# TYPE \n# EOF\n",
        "# TYPE m\n# EOF\n",
        "# UNIT metric suffix\n# EOF\n",
        "# UNIT metricsuffix suffix\n# EOF\n",
        "# UNIT m suffix\n# EOF\n",
        "# UNIT m\n# EOF\n",
        "# HELP m\n# EOF\n",
        "a\t1\n# EOF\n",
        "a 1\t2\n# EOF\n",
        "a 1 2 \n# EOF\n",
        "a 1 2 #\n# EOF\n",
        "a 1 1z\n# EOF\n",
        " # EOF\n",
        "# EOF\na 1",
        "# EOF\n\n",
        "# EOFa 1",
        "#\tTYPE c counter\n# EOF\n",
        "a{,b=\"c\"} 1\n# EOF\n",
        "a{b=\"c\",,d=\"e\"} 1\n# EOF\n",
        "foo 0 1_2\n\n# EOF\n",
        "custom_metric_total 1 # {aa=bb}\n# EOF\n",
        "custom_metric_total 1 # {aa=\"bb\"}\n# EOF\n",
        "custom_metric_total 1 # {aa=\"bb\"}",
        "custom_metric 1 # {aa=\"bb\"}",
        "custom_metric_total 1 # {aa=\"bb\",,cc=\"dd\"} 1",
        "custom_metric_total 1 # {aa=\"bb\"} 1_2",
        "custom_metric_total 1 # {aa=\"bb\"} true",
        "custom_metric_total 1 # {aa=\"bb\",cc=}",
        "{b=\"c\",} 1",
        "a 1 NaN",
        "a 1 -Inf",
        "# TYPE hhh histogram\nhhh_bucket{le=\"+Inf\"} 1 # {aa=\"bb\"} 4 Inf",
    ] {
        om_err(bad.as_bytes());
    }
    // Raw invalid UTF-8 (the cases above spell ÿ as UTF-8).
    text_err(b"a{b=\"\xff\"} 1\n");
    om_err(b"a{b=\"\xff\"} 1\n# EOF\n");
    om_err(b"a{\xff=\"foo\"} 1\n# EOF\n");
}

#[test]
fn parse_each_hands_over_what_parse_returns_one_sample_at_a_time() {
    let bodies: [(&str, Option<&str>); 2] = [
        (
            "# TYPE a counter\na_total{x=\"1\",y=\"a\\\"b\"} 3 1000\nb 2\nc{z=\"\"} NaN\n",
            None,
        ),
        (
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 3 1.5\nh_count 3\n# EOF\n",
            OM,
        ),
    ];
    for (body, ct) in bodies {
        let mut all = Vec::new();
        parse(body.as_bytes(), ct, &mut all).expect("parses");
        let mut slot = Vec::new();
        let mut each = Vec::new();
        parse_each(body.as_bytes(), ct, &mut slot, &mut |s| {
            each.push(s.clone())
        })
        .expect("parses");
        assert_eq!(each.len(), all.len());
        for (a, b) in each.iter().zip(&all) {
            assert_eq!(a.name, b.name);
            assert_eq!(a.labels, b.labels);
            assert_eq!(a.value.to_bits(), b.value.to_bits());
            assert_eq!(a.timestamp_ms, b.timestamp_ms);
        }
        assert!(slot.len() <= 1, "one sample held at a time");
    }
    // An error names its line; the samples before it were handed over.
    let mut slot = Vec::new();
    let mut seen = 0;
    let e =
        parse_each(b"a 1\nb 2\nc{ 3\n", None, &mut slot, &mut |_| seen += 1).expect_err("refused");
    assert_eq!(seen, 2);
    assert!(matches!(e, ParseError::Syntax { line: 3, .. }), "{e}");
}
