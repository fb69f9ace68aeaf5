//! Agent mode against Prometheus 2.42's own agent on real exporters from
//! Debian: redis-server with prometheus-redis-exporter, and a PostgreSQL 15
//! cluster of the test's own (initdb in a temporary directory, run as an
//! unprivileged user) with prometheus-postgres-exporter, all on loopback.
//! `prometheus --enable-feature=agent` and cairn (through
//! `scrape_config_files`) read the same `scrape_configs` YAML and write
//! into one receiving Prometheus, told apart only by the external label
//! `agent`. For each job both deliver the same series (synthetic series
//! included) with `up` 1. Then targets die, and both agree each time on
//! `up` and on which series went stale: redis-server stopped (its
//! exporter answers `redis_up` 0 and stops exposing most series),
//! redis_exporter killed (connection refused: `up` 0, everything stale,
//! postgres untouched), postgres stopped (its exporter answers past
//! `scrape_timeout`: `up` 0, everything stale).

mod common;

use std::path::Path;

use common::agent::wait_for;
use common::agent_mode::{
    delivered, diff, names, same_series, start_cairn_agent, start_prometheus_agent, Delivered,
    CONVERGE, INTERVAL, SYNTHETIC, TIMEOUT,
};
use common::exporters::{spawn_postgres_exporter, spawn_redis_exporter, Postgres, Redis};
use common::free_port;
use common::receiver::Receiver;

/// Scrapes each agent must have made of a target before series sets are
/// compared (see `wait_for_scrapes`).
const MIN_SCRAPES: u32 = 3;

/// Keys the test writes, per redis database: what `redis_db_keys` must
/// report through both agents.
const DB0_KEYS: [&str; 3] = ["session:1", "session:2", "queue:emails"];
const DB1_KEYS: [&str; 2] = ["cache:home", "cache:about"];

/// The `scrape_configs` both agents run, as one Prometheus YAML document.
fn scrape_configs(redis_exporter_port: u16, postgres_exporter_port: u16) -> String {
    format!(
        r#"scrape_configs:
  - job_name: redis
    scrape_interval: {INTERVAL}
    scrape_timeout: {TIMEOUT}
    static_configs:
      - targets: ["127.0.0.1:{redis_exporter_port}"]
        labels:
          service: cache
  - job_name: postgres
    scrape_interval: {INTERVAL}
    scrape_timeout: {TIMEOUT}
    static_configs:
      - targets: ["127.0.0.1:{postgres_exporter_port}"]
        labels:
          service: db
"#
    )
}

/// Waits until `agent` delivered at least `MIN_SCRAPES` samples of `up`
/// for `job`. redis_exporter reports a per-command series (`cmd="info"`,
/// `cmd="slowlog|get"`, ...) for the commands it runs itself only from its
/// second scrape on, so the series set grows once; after each agent has
/// scraped a few times both see the exporter's settled set.
fn wait_for_scrapes(rx: &Receiver, agent: &str, job: &str) {
    wait_for(
        CONVERGE,
        &format!("{agent}: {MIN_SCRAPES} scrapes of {job}"),
        || {
            let r = rx.query(&format!(
                "count_over_time(up{{agent=\"{agent}\",job=\"{job}\"}}[1m])"
            ))?;
            let n = match r.as_slice() {
                [s] => s["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0),
                _ => 0.0,
            };
            if n >= f64::from(MIN_SCRAPES) {
                Ok(())
            } else {
                Err(format!("{n} scrapes: {r:?}"))
            }
        },
    );
}

/// The value of the one series named `name` with `labels` in `s`.
fn value(s: &Delivered, name: &str, labels: &[(&str, &str)]) -> Option<String> {
    s.iter()
        .find(|(k, _)| {
            k.get("__name__").map(String::as_str) == Some(name)
                && labels
                    .iter()
                    .all(|(l, v)| k.get(*l).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v.clone())
}

/// Ok if the one series `name` (no other labels asked) has `want`.
fn check(s: &Delivered, name: &str, want: &str) -> Result<(), String> {
    match value(s, name, &[]) {
        Some(v) if v == want => Ok(()),
        v => Err(format!("{name} = {v:?}, not {want}")),
    }
}

/// Ok if no series named `name` is left (stale or never there).
fn gone(s: &Delivered, name: &str) -> Result<(), String> {
    match s
        .keys()
        .filter(|k| k.get("__name__").map(String::as_str) == Some(name))
        .count()
    {
        0 => Ok(()),
        n => Err(format!("{n} {name} series not stale")),
    }
}

/// Waits until both agents delivered the same series for `job` and `ok`
/// holds for each agent's set; returns (Prometheus', cairn's).
fn same_state(
    rx: &Receiver,
    job: &str,
    what: &str,
    ok: impl Fn(&Delivered) -> Result<(), String>,
) -> (Delivered, Delivered) {
    wait_for(CONVERGE, &format!("{job}, {what}: the same series"), || {
        let p = delivered(rx, "prom", job)?;
        let c = delivered(rx, "cairn", job)?;
        ok(&p).map_err(|e| format!("prom: {e}"))?;
        ok(&c).map_err(|e| format!("cairn: {e}"))?;
        if p.keys().eq(c.keys()) {
            Ok((p, c))
        } else {
            Err(diff(&p, &c))
        }
    })
}

/// Waits until `job`'s one target is down in both agents: `up` 0, every
/// series it exposed stale (at once: without stale markers they would
/// linger for the 5 m lookback), and only the synthetic series left, the
/// same in both with the same values.
fn target_down(rx: &Receiver, job: &str) {
    let (p, c) = same_state(rx, job, "target down", |s| {
        check(s, "up", "0")?;
        let left: Vec<_> = names(s)
            .into_iter()
            .filter(|n| !SYNTHETIC.contains(&n.as_str()))
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{} names not stale: {left:?}", left.len()))
        }
    });
    let (pv, cv) = (synthetic_values(&p), synthetic_values(&c));
    assert_eq!(
        pv, cv,
        "{job} down: synthetic values (Prometheus', cairn's)"
    );
    eprintln!(
        "{job}, target down: {} series from each agent, equal",
        c.len()
    );
}

/// The values of the synthetic series of a job, but the scrape's own
/// duration (a measurement of each agent).
fn synthetic_values(s: &Delivered) -> Delivered {
    s.iter()
        .filter(|(k, _)| {
            k.get("__name__")
                .is_some_and(|n| n != "scrape_duration_seconds" && SYNTHETIC.contains(&n.as_str()))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn write_redis_keys(redis: &Redis) {
    let mut cmds: Vec<Vec<&str>> = Vec::new();
    for k in DB0_KEYS {
        cmds.push(vec!["SET", k, "1"]);
    }
    // One key with a TTL: `redis_db_keys_expiring`.
    cmds.push(vec!["EXPIRE", DB0_KEYS[0], "3600"]);
    cmds.push(vec!["SELECT", "1"]);
    for k in DB1_KEYS {
        cmds.push(vec!["SET", k, "<html/>"]);
    }
    let cmds: Vec<&[&str]> = cmds.iter().map(Vec::as_slice).collect();
    redis.commands(&cmds).expect("write the redis keys");
}

fn start_both(dir: &Path, rx: &Receiver, scrape: &str) -> (common::Proc, common::Proc) {
    let scrape_file = dir.join("scrape.yml");
    std::fs::write(&scrape_file, scrape).expect("write scrape.yml");
    let (_, prom) = start_prometheus_agent(dir, rx, scrape);
    let (_, cairn) = start_cairn_agent(dir, rx, &scrape_file);
    (prom, cairn)
}

#[test]
fn cairn_sends_what_prometheus_agent_sends_for_redis_and_postgres_exporters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::new(dir.path());
    let _receiver = rx.start();

    let redis = Redis::start();
    write_redis_keys(&redis);
    let redis_exporter_port = free_port();
    let redis_exporter = spawn_redis_exporter(redis_exporter_port, &redis);
    let postgres = Postgres::start();
    let postgres_exporter_port = free_port();
    let _postgres_exporter = spawn_postgres_exporter(postgres_exporter_port, &postgres);

    let scrape = scrape_configs(redis_exporter_port, postgres_exporter_port);
    let (mut prom_agent, mut cairn) = start_both(dir.path(), &rx, &scrape);

    for agent in ["prom", "cairn"] {
        for job in ["redis", "postgres"] {
            wait_for_scrapes(&rx, agent, job);
        }
    }

    // Per job: the same series from both agents, synthetic ones included,
    // `up` 1 and the exporter connected to its server.
    for job in ["redis", "postgres"] {
        let (p, c) = same_series(&rx, job);
        let n = names(&c);
        for synthetic in SYNTHETIC {
            assert!(n.contains(synthetic), "{job}: no {synthetic} in {n:?}");
        }
        for (agent, s) in [("prom", &p), ("cairn", &c)] {
            assert_eq!(
                value(s, "up", &[]).as_deref(),
                Some("1"),
                "{agent}: {job} up"
            );
            assert!(
                s.keys().all(|l| l.get("service").map(String::as_str)
                    == Some(if job == "redis" { "cache" } else { "db" })),
                "{agent}: a {job} series without its target's label"
            );
            if job == "redis" {
                assert_eq!(value(s, "redis_up", &[]).as_deref(), Some("1"), "{agent}");
                let keys = |db| value(s, "redis_db_keys", &[("db", db)]);
                assert_eq!(keys("db0"), Some(DB0_KEYS.len().to_string()), "{agent}");
                assert_eq!(keys("db1"), Some(DB1_KEYS.len().to_string()), "{agent}");
                assert_eq!(
                    value(s, "redis_db_keys_expiring", &[("db", "db0")]).as_deref(),
                    Some("1"),
                    "{agent}"
                );
            } else {
                assert_eq!(value(s, "pg_up", &[]).as_deref(), Some("1"), "{agent}");
                assert!(
                    value(
                        s,
                        "pg_stat_database_numbackends",
                        &[("datname", "postgres")]
                    )
                    .is_some(),
                    "{agent}: no pg_stat_database series for the database postgres"
                );
            }
        }
        eprintln!(
            "{job}: {} series from Prometheus' agent, {} from cairn, equal",
            p.len(),
            c.len()
        );
    }

    // redis-server dies, its exporter stays: `up` stays 1, the exporter
    // reports `redis_up` 0, and every series it stops exposing goes stale
    // in both agents, leaving the same set in both.
    drop(redis);
    let (p, c) = same_state(&rx, "redis", "redis-server stopped", |s| {
        check(s, "up", "1")?;
        check(s, "redis_up", "0")?;
        gone(s, "redis_db_keys")
    });
    eprintln!(
        "redis, redis-server stopped: {} series from Prometheus' agent, {} from cairn, equal",
        p.len(),
        c.len()
    );

    // redis_exporter dies (connection refused): the target is down in
    // both; postgres is untouched.
    drop(redis_exporter);
    target_down(&rx, "redis");
    for agent in ["prom", "cairn"] {
        let s = delivered(&rx, agent, "postgres").expect("query");
        check(&s, "up", "1").unwrap_or_else(|e| panic!("{agent}: postgres_exporter: {e}"));
    }

    // postgres dies, its exporter stays: postgres_exporter then answers
    // only after a 1 s pause of its own before reconnecting, past the
    // 900 ms scrape_timeout, so the scrape fails by timeout in both agents
    // (measured: every answer 1.00 s; the pause is a sleep, never shorter).
    drop(postgres);
    target_down(&rx, "postgres");

    assert!(
        prom_agent.exited().is_none(),
        "Prometheus agent exited:\n{}",
        prom_agent.output()
    );
    assert!(
        cairn.exited().is_none(),
        "cairn exited:\n{}",
        cairn.output()
    );
}
