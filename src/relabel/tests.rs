//! The cases Prometheus' own relabel tests cover, written as facts about
//! the behaviour, plus Go's Expand rules and the validation messages.

use super::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// A rule from `(key, value)` pairs as a config would give them.
fn rule(keys: &[(&str, &str)]) -> RelabelConfig {
    let mut c = RelabelConfig::default();
    for (k, v) in keys {
        let v = (*v).to_owned();
        match *k {
            "source_labels" => {
                c.source_labels = Some(if v.is_empty() {
                    Vec::new()
                } else {
                    v.split(',').map(str::to_owned).collect()
                })
            }
            "separator" => c.separator = Some(v),
            "target_label" => c.target_label = Some(v),
            "regex" => c.regex = Some(v),
            "modulus" => c.modulus = Some(v.parse().expect("test modulus")),
            "replacement" => c.replacement = Some(v),
            "action" => c.action = Some(v),
            other => panic!("unknown key {other}"),
        }
    }
    c
}

fn run(input: &[(&str, &str)], rules: &[RelabelConfig]) -> Option<Labels> {
    let rules = Rules::compile(rules).expect("valid rules");
    let mut l = labels(input);
    let mut s = Scratch::default();
    rules.process(&mut l, &mut s).then_some(l)
}

fn invalid(keys: &[(&str, &str)]) -> RuleError {
    Rule::new(&rule(keys)).expect_err("must be invalid")
}

#[test]
fn replace_with_braced_group_adds_a_label() {
    let out = run(
        &[("a", "foo"), ("b", "bar"), ("c", "baz")],
        &[rule(&[
            ("source_labels", "a"),
            ("regex", "f(.*)"),
            ("target_label", "d"),
            ("replacement", "ch${1}-ch${1}"),
        ])],
    );
    assert_eq!(
        out,
        Some(labels(&[
            ("a", "foo"),
            ("b", "bar"),
            ("c", "baz"),
            ("d", "choo-choo")
        ]))
    );
}

#[test]
fn rules_apply_in_order_and_see_earlier_results() {
    let out = run(
        &[("a", "foo"), ("b", "bar"), ("c", "baz")],
        &[
            rule(&[
                ("source_labels", "a,b"),
                ("regex", "f(.*);(.*)r"),
                ("target_label", "a"),
                ("replacement", "b${1}${2}m"),
            ]),
            rule(&[
                ("source_labels", "c,a"),
                ("regex", "(b).*b(.*)ba(.*)"),
                ("target_label", "d"),
                ("replacement", "$1$2$2$3"),
            ]),
        ],
    );
    assert_eq!(
        out,
        Some(labels(&[
            ("a", "boobam"),
            ("b", "bar"),
            ("c", "baz"),
            ("d", "boooom")
        ]))
    );
}

#[test]
fn drop_stops_processing() {
    let drop_o = rule(&[
        ("source_labels", "a"),
        ("regex", ".*o.*"),
        ("action", "drop"),
    ]);
    let later = rule(&[
        ("source_labels", "a"),
        ("regex", "f(.*)"),
        ("target_label", "d"),
        ("replacement", "ch$1-ch$1"),
    ]);
    assert_eq!(run(&[("a", "foo")], &[drop_o.clone(), later]), None);
    assert_eq!(run(&[("a", "foo"), ("b", "bar")], &[drop_o]), None);
}

#[test]
fn regexes_are_fully_anchored() {
    // ".*(b).*" on "abc": the whole value matches, group 1 is "b".
    let out = run(
        &[("a", "abc")],
        &[rule(&[
            ("source_labels", "a"),
            ("regex", ".*(b).*"),
            ("target_label", "d"),
        ])],
    );
    assert_eq!(out, Some(labels(&[("a", "abc"), ("d", "b")])));
    // "f|o" matches neither all of "foo" nor is it a prefix match.
    for re in ["no-match", "f|o"] {
        let keep = run(
            &[("a", "foo")],
            &[rule(&[
                ("source_labels", "a"),
                ("regex", re),
                ("action", "drop"),
            ])],
        );
        assert_eq!(keep, Some(labels(&[("a", "foo")])), "{re}");
    }
}

#[test]
fn keep_keeps_only_matches() {
    let keep = |re: &str| {
        run(
            &[("a", "foo")],
            &[rule(&[
                ("source_labels", "a"),
                ("regex", re),
                ("action", "KEEP"),
            ])],
        )
    };
    assert_eq!(keep("no-match"), None);
    assert_eq!(keep("f.*"), Some(labels(&[("a", "foo")])));
}

#[test]
fn replace_without_match_changes_nothing() {
    let out = run(
        &[("a", "boo")],
        &[rule(&[
            ("source_labels", "a"),
            ("regex", "f"),
            ("target_label", "b"),
            ("replacement", "bar"),
        ])],
    );
    assert_eq!(out, Some(labels(&[("a", "boo")])));
}

#[test]
fn hashmod_is_md5s_last_eight_bytes_modulo() {
    let out = run(
        &[("a", "foo"), ("b", "bar"), ("c", "baz")],
        &[rule(&[
            ("source_labels", "c"),
            ("target_label", "d"),
            ("action", "hashmod"),
            ("modulus", "1000"),
        ])],
    );
    assert_eq!(out.as_ref().map(|l| l.get("d")), Some("976"));
    let out = run(
        &[("a", "foo\nbar")],
        &[rule(&[
            ("source_labels", "a"),
            ("target_label", "b"),
            ("action", "hashmod"),
            ("modulus", "1000"),
        ])],
    );
    assert_eq!(out.as_ref().map(|l| l.get("b")), Some("734"));
}

#[test]
fn labelmap_copies_matching_names() {
    let out = run(
        &[("a", "foo"), ("b1", "bar"), ("b2", "baz")],
        &[rule(&[
            ("regex", "(b.*)"),
            ("replacement", "bar_${1}"),
            ("action", "labelmap"),
        ])],
    );
    assert_eq!(
        out,
        Some(labels(&[
            ("a", "foo"),
            ("b1", "bar"),
            ("b2", "baz"),
            ("bar_b1", "bar"),
            ("bar_b2", "baz"),
        ]))
    );
    let out = run(
        &[
            ("a", "foo"),
            ("__meta_my_bar", "aaa"),
            ("__meta_my_baz", "bbb"),
            ("__meta_other", "ccc"),
        ],
        &[rule(&[
            ("regex", "__meta_(my.*)"),
            ("replacement", "${1}"),
            ("action", "labelmap"),
        ])],
    );
    assert_eq!(
        out,
        Some(labels(&[
            ("a", "foo"),
            ("__meta_my_bar", "aaa"),
            ("__meta_my_baz", "bbb"),
            ("__meta_other", "ccc"),
            ("my_bar", "aaa"),
            ("my_baz", "bbb"),
        ]))
    );
}

#[test]
fn target_label_from_groups() {
    let re = "some-([^-]+)-([^,]+)";
    let out = run(
        &[("a", "some-name-value")],
        &[rule(&[
            ("source_labels", "a"),
            ("regex", re),
            ("replacement", "${2}"),
            ("target_label", "${1}"),
        ])],
    );
    assert_eq!(
        out,
        Some(labels(&[("a", "some-name-value"), ("name", "value")]))
    );
    // A replacement that expands to nothing deletes (here: never sets).
    let out = run(
        &[("a", "some-name-value")],
        &[rule(&[
            ("source_labels", "a"),
            ("regex", re),
            ("replacement", "${3}"),
            ("target_label", "${1}"),
        ])],
    );
    assert_eq!(out, Some(labels(&[("a", "some-name-value")])));
    // A target that expands to an invalid name ("" here) is skipped.
    let bad_target = |re: &str| {
        rule(&[
            ("source_labels", "a"),
            ("regex", re),
            ("replacement", "${1}"),
            ("target_label", "${3}"),
        ])
    };
    let out = run(
        &[("a", "some-name-0")],
        &[
            bad_target(re),
            bad_target(re),
            bad_target("some-([^-]+)(-[^,]+)"),
        ],
    );
    assert_eq!(out, Some(labels(&[("a", "some-name-0")])));
}

#[test]
fn service_discovery_tags_example() {
    let tags = "path:/secret,job:some-job,label:foo=bar";
    let out = run(
        &[("__meta_sd_tags", tags)],
        &[
            rule(&[
                ("source_labels", "__meta_sd_tags"),
                ("regex", "(?:.+,|^)path:(/[^,]+).*"),
                ("replacement", "${1}"),
                ("target_label", "__metrics_path__"),
            ]),
            rule(&[
                ("source_labels", "__meta_sd_tags"),
                ("regex", "(?:.+,|^)job:([^,]+).*"),
                ("replacement", "${1}"),
                ("target_label", "job"),
            ]),
            rule(&[
                ("source_labels", "__meta_sd_tags"),
                ("regex", "(?:.+,|^)label:([^=]+)=([^,]+).*"),
                ("replacement", "${2}"),
                ("target_label", "${1}"),
            ]),
        ],
    );
    assert_eq!(
        out,
        Some(labels(&[
            ("__meta_sd_tags", tags),
            ("__metrics_path__", "/secret"),
            ("job", "some-job"),
            ("foo", "bar"),
        ]))
    );
}

#[test]
fn labeldrop_then_replace_then_keep() {
    let port_name = "__meta_kubernetes_pod_container_port_name";
    let port = "__meta_kubernetes_pod_annotation_XXX_metrics_port";
    let out = run(
        &[(port_name, "foo"), (port, "9091")],
        &[
            rule(&[
                ("regex", "^__meta_kubernetes_pod_container_port_name$"),
                ("action", "labeldrop"),
            ]),
            rule(&[
                ("source_labels", port),
                ("regex", "(.+)"),
                ("replacement", "metrics"),
                ("target_label", port_name),
            ]),
            rule(&[
                ("source_labels", port_name),
                ("regex", "^metrics$"),
                ("action", "keep"),
            ]),
        ],
    );
    assert_eq!(out, Some(labels(&[(port, "9091"), (port_name, "metrics")])));
}

#[test]
fn labelkeep_and_labeldrop() {
    let input = [("a", "foo"), ("b1", "bar"), ("b2", "baz")];
    let keep = run(
        &input,
        &[rule(&[("regex", "(b.*)"), ("action", "labelkeep")])],
    );
    assert_eq!(keep, Some(labels(&[("b1", "bar"), ("b2", "baz")])));
    let drop = run(
        &input,
        &[rule(&[("regex", "(b.*)"), ("action", "labeldrop")])],
    );
    assert_eq!(drop, Some(labels(&[("a", "foo")])));
}

#[test]
fn lowercase_and_uppercase() {
    let out = run(
        &[("foo", "bAr123Foo")],
        &[
            rule(&[
                ("source_labels", "foo"),
                ("action", "uppercase"),
                ("target_label", "foo_uppercase"),
            ]),
            rule(&[
                ("source_labels", "foo"),
                ("action", "lowercase"),
                ("target_label", "foo_lowercase"),
            ]),
        ],
    );
    assert_eq!(
        out,
        Some(labels(&[
            ("foo", "bAr123Foo"),
            ("foo_lowercase", "bar123foo"),
            ("foo_uppercase", "BAR123FOO"),
        ]))
    );
}

#[test]
fn keepequal_and_dropequal_compare_with_the_target() {
    let input = [
        ("__tmp_port", "1234"),
        ("__port1", "1234"),
        ("__port2", "5678"),
    ];
    let with = |action: &str, target: &str| {
        run(
            &input,
            &[rule(&[
                ("source_labels", "__tmp_port"),
                ("action", action),
                ("target_label", target),
            ])],
        )
    };
    assert_eq!(with("keepequal", "__port1"), Some(labels(&input)));
    assert_eq!(with("dropequal", "__port1"), None);
    assert_eq!(with("dropequal", "__port2"), Some(labels(&input)));
    assert_eq!(with("keepequal", "__port2"), None);
}

#[test]
fn defaults_copy_the_joined_sources_and_empty_results_delete() {
    // Defaults: separator ";", regex "(.*)", replacement "$1", action replace.
    let out = run(
        &[("a", "x"), ("b", "y")],
        &[rule(&[("source_labels", "a,b"), ("target_label", "c")])],
    );
    assert_eq!(out, Some(labels(&[("a", "x"), ("b", "y"), ("c", "x;y")])));
    // A missing source is "", so "$1" is "" and the target goes away.
    let out = run(
        &[("a", "x"), ("gone", "1")],
        &[rule(&[
            ("source_labels", "missing"),
            ("target_label", "gone"),
        ])],
    );
    assert_eq!(out, Some(labels(&[("a", "x")])));
    // A literal replacement sets the target even from no sources.
    let out = run(
        &[("a", "x")],
        &[rule(&[("target_label", "env"), ("replacement", "prod")])],
    );
    assert_eq!(out, Some(labels(&[("a", "x"), ("env", "prod")])));
    // Custom separator.
    let out = run(
        &[("a", "x"), ("b", "y")],
        &[rule(&[
            ("source_labels", "a,b"),
            ("separator", "-"),
            ("target_label", "c"),
        ])],
    );
    assert_eq!(out.as_ref().map(|l| l.get("c")), Some("x-y"));
}

#[test]
fn rename_a_label_with_replace_and_labeldrop() {
    let out = run(
        &[("__name__", "node_load1"), ("cpu", "0"), ("host", "a")],
        &[
            rule(&[("source_labels", "host"), ("target_label", "node")]),
            rule(&[("regex", "host"), ("action", "labeldrop")]),
        ],
    );
    assert_eq!(
        out,
        Some(labels(&[
            ("__name__", "node_load1"),
            ("cpu", "0"),
            ("node", "a")
        ]))
    );
}

#[test]
fn go_expand_rules() {
    let expand_with = |re: &str, src: &str, template: &str| {
        let regex = Regex::new(&format!("^(?:{re})$")).expect("test regex");
        let mut locs = regex.capture_locations();
        assert!(regex.captures_read(&mut locs, src).is_some());
        let names: Vec<Option<String>> = regex
            .capture_names()
            .map(|n| n.map(str::to_owned))
            .collect();
        let mut out = String::new();
        expand(template, src, &locs, &names, &mut out);
        out
    };
    let re = "(?P<first>a)(b)(?P<x1>c)?";
    assert_eq!(expand_with(re, "ab", "$1-${2}"), "a-b");
    // `$1x` names the group "1x": none here, so nothing.
    assert_eq!(expand_with(re, "ab", "$1x"), "");
    assert_eq!(expand_with(re, "ab", "${1}x"), "ax");
    assert_eq!(expand_with(re, "ab", "$first/${first}"), "a/a");
    // Unmatched optional group and out-of-range index expand to nothing.
    assert_eq!(expand_with(re, "ab", "[$x1][$9]"), "[][]");
    // `$$` is a dollar; a `$` that starts no reference stays.
    assert_eq!(expand_with(re, "ab", "$$1 $ ${ ${} $-"), "$1 $ ${ ${} $-");
    // Leading zeros are a name, not a number; $0 is the whole match.
    assert_eq!(expand_with(re, "ab", "$01|$0"), "|ab");
}

#[test]
fn target_pattern_matches_prometheus() {
    for (s, ok) in [
        ("-label", false),
        ("label", true),
        ("label${1}", true),
        ("${1}label", true),
        ("${1}", true),
        ("${", false),
        ("$", false),
        ("${}", false),
        ("foo${", false),
        ("$1", true),
        ("asd$2asd", true),
        ("-foo${1}bar-", false),
        ("_${1}_", true),
        ("foo${bar}foo", true),
        ("0${3}", false),
    ] {
        assert_eq!(is_valid_target_pattern(s), ok, "{s:?}");
    }
}

#[test]
fn validation_as_prometheus() {
    let e = invalid(&[("action", "")]);
    assert_eq!(
        (e.field, e.msg.as_str()),
        ("action", "relabel action cannot be empty")
    );
    let e = invalid(&[("action", "explode")]);
    assert!(
        e.field == "action" && e.msg.contains("unknown relabel action"),
        "{e:?}"
    );
    for action in [
        "replace",
        "lowercase",
        "uppercase",
        "hashmod",
        "keepequal",
        "dropequal",
    ] {
        let mut keys = vec![("action", action)];
        if action == "hashmod" {
            keys.push(("modulus", "8"));
        }
        let e = invalid(&keys);
        assert_eq!(e.field, "target_label", "{action}");
        assert!(e.msg.contains("requires 'target_label' value"), "{e:?}");
    }
    let e = invalid(&[("action", "hashmod"), ("target_label", "x")]);
    assert_eq!(e.field, "modulus");
    let e = invalid(&[("action", "lowercase"), ("target_label", "${3}")]);
    assert!(
        e.msg.contains("\"${3}\" is invalid 'target_label'"),
        "{e:?}"
    );
    // With references a target is checked against the pattern only.
    assert!(Rule::new(&rule(&[
        ("target_label", "${3}"),
        ("regex", "some-([^-]+)-([^,]+)")
    ]))
    .is_ok());
    for target in ["0${3}", "-${3}", "1abc", "a-b"] {
        let e = invalid(&[("target_label", target)]);
        assert_eq!(e.field, "target_label", "{target}");
        assert!(
            e.msg
                .contains("is invalid 'target_label' for replace action"),
            "{e:?}"
        );
    }
    let e = invalid(&[("regex", "(unclosed"), ("target_label", "x")]);
    assert_eq!(e.field, "regex");
    let e = invalid(&[
        ("action", "labeldrop"),
        ("regex", "a"),
        ("target_label", "x"),
    ]);
    assert_eq!(e.field, "target_label");
    assert!(e.msg.contains("requires only 'regex'"), "{e:?}");
    let e = invalid(&[("action", "labelkeep"), ("source_labels", "a")]);
    assert_eq!(e.field, "source_labels");
    let e = invalid(&[
        ("action", "keepequal"),
        ("source_labels", "a"),
        ("target_label", "b"),
        ("regex", "(.*)"),
    ]);
    assert_eq!(e.field, "regex");
    let e = invalid(&[
        ("action", "dropequal"),
        ("source_labels", "a"),
        ("target_label", "b"),
        ("replacement", "x"),
    ]);
    assert_eq!(e.field, "replacement");
    let e = invalid(&[("action", "labelmap"), ("replacement", "bad-name")]);
    assert_eq!(e.field, "replacement");
    let e = invalid(&[("source_labels", "ok,not-ok"), ("target_label", "x")]);
    assert_eq!(e.field, "source_labels");
}

#[test]
fn labels_setters_keep_the_set_sorted_and_without_empty_values() {
    let mut l = labels(&[("b", "2"), ("a", "1"), ("a", "dup"), ("e", "")]);
    assert_eq!(
        l.pairs(),
        &[("a".into(), "1".into()), ("b".into(), "2".into())]
    );
    l.set("c", "3");
    l.set("a", "");
    assert_eq!(l, labels(&[("b", "2"), ("c", "3")]));
    l.assign([("z", "1"), ("y", "2"), ("x", "")]);
    assert_eq!(l, labels(&[("y", "2"), ("z", "1")]));
}
