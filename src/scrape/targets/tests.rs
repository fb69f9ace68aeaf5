use super::*;

/// The one scrape config of a TOML snippet (job `j` unless it says).
fn cfg(extra: &str) -> ScrapeConfig {
    let text = format!("[[scrape_configs]]\njob_name = \"j\"\n{extra}");
    crate::config::Config::parse(&text, "t.toml")
        .unwrap()
        .scrape_configs
        .remove(0)
}

fn one(addr: &str, group: &[(&str, &str)], c: &ScrapeConfig) -> Result<Option<Target>, String> {
    let labels = group
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    populate(addr, &labels, c, &mut Scratch::default())
}

fn target(addr: &str, group: &[(&str, &str)], c: &ScrapeConfig) -> Target {
    one(addr, group, c).unwrap().expect("kept")
}

fn pairs(t: &Target) -> Vec<(&str, &str)> {
    t.labels.iter().collect()
}

#[test]
fn defaults_job_instance_url_interval() {
    let t = target("localhost:9121", &[], &cfg(""));
    assert_eq!(pairs(&t), [("instance", "localhost:9121"), ("job", "j")]);
    assert_eq!(t.url, "http://localhost:9121/metrics");
    assert_eq!(t.job, "j");
    assert_eq!(t.interval, Duration::from_secs(15));
    assert_eq!(t.timeout, Duration::from_secs(10));
}

#[test]
fn group_and_meta_labels() {
    let c = cfg("");
    let t = target(
        "a:1",
        &[
            ("env", "prod"),
            ("__meta_filepath", "/etc/sd/a.json"),
            ("__address__", "other:2"),
        ],
        &c,
    );
    // The target's own address wins; meta labels are gone after relabeling.
    assert_eq!(
        pairs(&t),
        [("env", "prod"), ("instance", "a:1"), ("job", "j")]
    );
    // A group label may set job and the scrape labels themselves.
    let t = target("a:1", &[("job", "mine"), ("__metrics_path__", "/m")], &c);
    assert_eq!(t.labels.get("job"), "mine");
    assert_eq!(t.url, "http://a:1/m");
    // Meta labels can be used by relabeling before they go.
    let c = cfg("[[scrape_configs.relabel_configs]]\nsource_labels = [\"__meta_filepath\"]\ntarget_label = \"sd_file\"\n");
    let t = target("a:1", &[("__meta_filepath", "/x.json")], &c);
    assert_eq!(t.labels.get("sd_file"), "/x.json");
}

#[test]
fn default_port_as_prometheus_2_42() {
    let c = cfg("");
    for (addr, want) in [
        ("example.com", "example.com:80"),
        ("[::1]", "[::1]:80"),
        ("10.0.0.1:9187", "10.0.0.1:9187"),
        // No valid port can be added to these: left as they are.
        ("::1", "::1"),
        ("host:", "host:"),
    ] {
        let t = target(addr, &[], &c);
        assert_eq!(t.labels.get("instance"), want, "{addr}");
        assert_eq!(t.url, format!("http://{want}/metrics"), "{addr}");
    }
    let t = target("example.com", &[], &cfg("scheme = \"https\"\n"));
    assert_eq!(t.url, "https://example.com:443/metrics");
    // A relabeled scheme Prometheus does not know: the target fails.
    let c = cfg("[[scrape_configs.relabel_configs]]\ntarget_label = \"__scheme__\"\nreplacement = \"ftp\"\n");
    assert_eq!(
        one("example.com", &[], &c).unwrap_err(),
        "invalid scheme: \"http\""
    );
    // With a port there is nothing to add, and no check of the scheme.
    assert_eq!(
        target("example.com:21", &[], &c).url,
        "ftp://example.com:21/metrics"
    );
}

#[test]
fn relabeling_drops_and_rewrites() {
    let c = cfg("[[scrape_configs.relabel_configs]]\nsource_labels = [\"__address__\"]\nregex = \"drop.*\"\naction = \"drop\"\n");
    assert_eq!(one("drop-me:1", &[], &c).unwrap(), None);
    assert!(one("keep-me:1", &[], &c).unwrap().is_some());
    // The blackbox pattern: the address becomes a parameter.
    let c = cfg(
        "params = { module = [\"http_2xx\", \"second\"] }\n\
         [[scrape_configs.relabel_configs]]\nsource_labels = [\"__address__\"]\ntarget_label = \"__param_target\"\n\
         [[scrape_configs.relabel_configs]]\nsource_labels = [\"__param_target\"]\ntarget_label = \"instance\"\n\
         [[scrape_configs.relabel_configs]]\ntarget_label = \"__address__\"\nreplacement = \"127.0.0.1:9115\"\n",
    );
    let t = target("https://example.com/a b", &[], &c);
    assert_eq!(
        t.url,
        "http://127.0.0.1:9115/metrics?module=http_2xx&module=second&target=https%3A%2F%2Fexample.com%2Fa+b"
    );
    assert_eq!(t.labels.get("instance"), "https://example.com/a b");
    // A relabeled path is escaped as Go escapes it.
    let c = cfg("[[scrape_configs.relabel_configs]]\ntarget_label = \"__metrics_path__\"\nreplacement = \"api/v1/my metrics\"\n");
    assert_eq!(target("a:1", &[], &c).url, "http://a:1/api/v1/my%20metrics");
    // No address left: an error.
    let c = cfg(
        "[[scrape_configs.relabel_configs]]\naction = \"labeldrop\"\nregex = \"__address__\"\n",
    );
    assert_eq!(one("a:1", &[], &c).unwrap_err(), "no address");
    // An address with a path after relabeling: not a hostname.
    let c = cfg("[[scrape_configs.relabel_configs]]\ntarget_label = \"__address__\"\nreplacement = \"a:1/x\"\n");
    assert!(one("a:1", &[], &c)
        .unwrap_err()
        .contains("is not a valid hostname"));
}

#[test]
fn interval_and_timeout_from_relabeled_labels() {
    let set = |label: &str, value: &str| {
        cfg(&format!(
            "[[scrape_configs.relabel_configs]]\ntarget_label = \"{label}\"\nreplacement = \"{value}\"\n"
        ))
    };
    let t = target("a:1", &[], &set("__scrape_interval__", "1m"));
    assert_eq!(t.interval, Duration::from_secs(60));
    assert_eq!(t.timeout, Duration::from_secs(10));
    let e = one("a:1", &[], &set("__scrape_interval__", "soon")).unwrap_err();
    assert!(e.starts_with("error parsing scrape interval"), "{e}");
    let e = one("a:1", &[], &set("__scrape_timeout__", "0s")).unwrap_err();
    assert_eq!(e, "scrape timeout cannot be 0");
    let e = one("a:1", &[], &set("__scrape_timeout__", "20s")).unwrap_err();
    assert_eq!(
        e,
        "scrape timeout cannot be greater than scrape interval (\"20s\" > \"15s\")"
    );
    // A group label sets them too.
    let t = target("a:1", &[("__scrape_interval__", "30s")], &cfg(""));
    assert_eq!(t.interval, Duration::from_secs(30));
}

#[test]
fn hash_is_stable_and_tells_targets_apart() {
    let c = cfg("");
    let a = target("a:1", &[("env", "x")], &c);
    assert_eq!(a.hash, target("a:1", &[("env", "x")], &c).hash);
    assert_ne!(a.hash, target("a:1", &[("env", "y")], &c).hash);
    assert_ne!(a.hash, target("a:2", &[("env", "x")], &c).hash);
    let other_path = cfg("metrics_path = \"/other\"\n");
    assert_ne!(a.hash, target("a:1", &[("env", "x")], &other_path).hash);
}

#[test]
fn build_dedups_and_applies_target_limit() {
    let groups = [
        Group {
            targets: vec!["a:1".into(), "b:1".into(), "a:1".into()],
            labels: BTreeMap::new(),
        },
        Group {
            targets: vec!["c:1".into(), "bad/x".into()],
            labels: BTreeMap::new(),
        },
    ];
    let (limit0, errors0) = counters();
    let all = build(&cfg(""), &groups);
    let names: Vec<&str> = all.iter().map(|t| t.labels.get("instance")).collect();
    assert_eq!(names, ["a:1", "b:1", "c:1"]);
    assert!(counters().1 > errors0);
    assert_eq!(build(&cfg("target_limit = 3\n"), &groups).len(), 3);
    // Over the limit the targets stay (the manager fails their scrapes,
    // up = 0, as Prometheus does); only the counter says so here.
    assert_eq!(build(&cfg("target_limit = 2\n"), &groups).len(), 3);
    assert!(counters().0 > limit0);
}

#[test]
fn durations_as_prometheus_prints_them() {
    for (ms, want) in [
        (0, "0s"),
        (500, "500ms"),
        (15_000, "15s"),
        (90_000, "1m30s"),
        (3_600_000, "1h"),
        (14 * 86_400_000, "2w"),
        (90 * 86_400_000, "90d"),
        (365 * 86_400_000, "1y"),
        (86_400_000 + 1, "1d1ms"),
    ] {
        assert_eq!(prom_duration(Duration::from_millis(ms)), want, "{ms}");
    }
}
