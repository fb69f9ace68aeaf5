//! The command line: node_exporter-compatible flags on top of the config file.
//!
//! Owns: flag definitions (built from the collector registry so every
//! `--collector.NAME` node_exporter knows parses), subcommands, and the merge
//! "defaults < config file < flags" into one `Agent` settings value. Must
//! never: start collecting, bind sockets, or touch the WAL.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command};

use crate::collector::options::{self, OptKind, Raw};
use crate::collector::{self, Context, Settings};
use crate::config::{self, Config, ConfigError};

/// Everything a running agent (or a one-shot collection) needs to know.
#[derive(Debug, Clone)]
pub struct Agent {
    pub config: Config,
    pub config_path: Option<PathBuf>,
    pub ctx: Context,
    /// Enabled collectors that cairn implements, in registry order.
    pub collectors: Vec<&'static str>,
    /// Enabled by the user but not implemented in this version.
    pub unimplemented: Vec<&'static str>,
    pub settings: Settings,
    pub listen: SocketAddr,
    pub telemetry_path: String,
    pub log_level: String,
    /// Connection and request limits of the listener.
    pub limits: crate::http::limits::Limits,
    /// The parsed web configuration file (`--web.config.file`), if any.
    pub web_config: Option<crate::http::web_config::WebConfig>,
    /// `--web.disable-exporter-metrics`: no `process_*` metrics.
    pub exporter_metrics: bool,
}

pub enum Invocation {
    Run(Agent),
    Collect(Agent),
    CheckConfig(PathBuf),
    /// `cairn wal status`: read-only report of the WAL and each remote's
    /// backlog; `true` for `--output json`.
    WalStatus(Agent, bool),
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("flag --{flag}: {msg}")]
    Flag { flag: String, msg: String },
}

fn value_flag(id: &str, help: &str) -> Arg {
    Arg::new(id.to_owned())
        .long(id.to_owned())
        .value_name(id.rsplit('.').next().unwrap_or(id).to_uppercase())
        .help(help.to_owned())
        .global(true)
        .action(ArgAction::Set)
}

fn bool_pair(cmd: Command, id: &str, help: &str) -> Command {
    cmd.arg(
        Arg::new(id.to_owned())
            .long(id.to_owned())
            .help(help.to_owned())
            .global(true)
            .action(ArgAction::SetTrue),
    )
    .arg(
        Arg::new(format!("no-{id}"))
            .long(format!("no-{id}"))
            .hide(true)
            .global(true)
            .action(ArgAction::SetTrue),
    )
}

pub fn command() -> Command {
    let mut cmd = Command::new("cairn")
        .version(env!("CARGO_PKG_VERSION"))
        .about("node_exporter-compatible host metrics with a crash-safe remote_write spool")
        .arg(value_flag("config", "Path to the TOML configuration file"))
        .arg(value_flag("web.listen-address", "Address to listen on for /metrics [default: 0.0.0.0:9100]"))
        .arg(value_flag("web.telemetry-path", "Path under which to expose metrics [default: /metrics]"))
        .arg(value_flag(
            "web.config.file",
            "Path to a web configuration file (node_exporter's format) that enables TLS or basic authentication",
        ))
        .arg(value_flag(
            "web.max-requests",
            "Maximum number of parallel scrape requests; 0 disables the limit [default: 40]",
        ))
        .arg(value_flag(
            "web.max-connections",
            "Maximum number of open client connections; when full, the quietest is closed [default: 512]",
        ))
        .arg(
            Arg::new("web.disable-exporter-metrics")
                .long("web.disable-exporter-metrics")
                .help("Exclude metrics about the exporter itself (process_*)")
                .global(true)
                .action(ArgAction::SetTrue),
        )
        .arg(value_flag("path.procfs", "procfs mountpoint [default: /proc]"))
        .arg(value_flag("path.sysfs", "sysfs mountpoint [default: /sys]"))
        .arg(value_flag("path.rootfs", "rootfs mountpoint [default: /]"))
        .arg(value_flag("path.udev.data", "udev data path [default: /run/udev/data]"))
        .arg(value_flag("log.level", "Log level: error, warn, info, debug [default: info]"))
        .arg(
            value_flag(
                "remote-write.url",
                "Send to this remote_write URL (added to the config file's [[remote_write]] as \"cli\")",
            )
            .action(ArgAction::Append),
        )
        .arg(
            Arg::new("collector.disable-defaults")
                .long("collector.disable-defaults")
                .help("Disable all collectors enabled by default; enable them one by one with --collector.NAME")
                .global(true)
                .action(ArgAction::SetTrue),
        )
        .subcommand(
            Command::new("check-config")
                .about("Validate a configuration file; exit non-zero naming the key and line of the first error")
                .arg(Arg::new("file").required(true).value_name("FILE")),
        )
        .subcommand(
            Command::new("wal")
                .about("Inspect the WAL")
                .subcommand_required(true)
                .subcommand(
                    Command::new("status")
                        .about("Print each remote's backlog and the WAL's size (read-only; the agent may be running), with the running agent's state of each remote")
                        .arg(
                            Arg::new("output")
                                .long("output")
                                .value_name("FORMAT")
                                .value_parser(["text", "json"])
                                .default_value("text")
                                .help("text for people, json for scripts"),
                        ),
                ),
        )
        .subcommand(
            Command::new("collect")
                .about("Run one collection and print it in the text format")
                .arg(
                    Arg::new("once")
                        .long("once")
                        .required(true)
                        .action(ArgAction::SetTrue)
                        .help("Collect once and exit"),
                ),
        );
    for opt in options::all() {
        cmd = match opt.kind {
            OptKind::Bool => bool_pair(
                cmd,
                opt.flag,
                &format!("{} [default: {}]", opt.help, opt.default),
            ),
            _ => {
                let help = if opt.default.is_empty() {
                    opt.help.to_owned()
                } else {
                    format!("{} [default: {}]", opt.help, opt.default)
                };
                let mut arg = value_flag(opt.flag, &help);
                for a in opt.aliases {
                    arg = arg.alias(*a);
                }
                cmd.arg(arg)
            }
        };
    }
    for k in collector::KNOWN {
        let id = format!("collector.{}", k.name);
        let help = format!(
            "Enable the {} collector (default: {})",
            k.name,
            if k.default_enabled {
                "enabled"
            } else {
                "disabled"
            }
        );
        cmd = bool_pair(cmd, &id, &help);
    }
    cmd
}

/// Parses `args` (including argv[0]) into what to do. Clap's own errors
/// (unknown flag, --help, --version) exit the process as clap does.
pub fn parse<I, T>(args: I) -> Result<Invocation, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let m = command().get_matches_from(args);
    match m.subcommand() {
        Some(("check-config", sub)) => {
            let file = sub.get_one::<String>("file").cloned().unwrap_or_default();
            Ok(Invocation::CheckConfig(PathBuf::from(file)))
        }
        Some(("collect", _)) => Ok(Invocation::Collect(agent_from(&m)?)),
        Some(("wal", sub)) => {
            let json = sub
                .subcommand_matches("status")
                .and_then(|s| s.get_one::<String>("output"))
                .is_some_and(|o| o == "json");
            Ok(Invocation::WalStatus(agent_from(&m)?, json))
        }
        _ => Ok(Invocation::Run(agent_from(&m)?)),
    }
}

/// `cairn check-config FILE`: the TOML file with its `[[scrape_configs]]`,
/// the Prometheus YAML files of its `scrape_config_files`, and the web
/// configuration file it names, if any (relative to FILE's directory).
pub fn check_config(path: &std::path::Path) -> Result<(), CliError> {
    let config = Config::load(path)?;
    if let Some(p) = &config.web.config_file {
        let p = match path.parent() {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.clone(),
        };
        crate::http::web_config::load(&p)?;
    }
    Ok(())
}

/// The last of `--X` / `--no-X` given on the command line, if any.
fn last_bool(m: &ArgMatches, id: &str) -> Option<bool> {
    let no = format!("no-{id}");
    let pos = |name: &str| -> Option<usize> {
        if m.get_flag(name) {
            m.indices_of(name).and_then(|mut i| i.next_back())
        } else {
            None
        }
    };
    match (pos(id), pos(&no)) {
        (Some(a), Some(b)) => Some(a > b),
        (Some(_), None) => Some(true),
        (None, Some(_)) => Some(false),
        (None, None) => None,
    }
}

fn agent_from(m: &ArgMatches) -> Result<Agent, CliError> {
    let config_path = m.get_one::<String>("config").map(PathBuf::from);
    let mut config = match &config_path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };

    if let Some(v) = m.get_one::<String>("web.listen-address") {
        let a = config::parse_listen_addr(v).map_err(|msg| CliError::Flag {
            flag: "web.listen-address".into(),
            msg,
        })?;
        config.web.listen_address = config::ListenAddr(a);
    }
    if let Some(urls) = m.get_many::<String>("remote-write.url") {
        for (i, url) in urls.enumerate() {
            let url = config::parse_http_url(url).map_err(|msg| CliError::Flag {
                flag: "remote-write.url".into(),
                msg,
            })?;
            let name = if i == 0 {
                "cli".to_owned()
            } else {
                format!("cli-{i}")
            };
            if config
                .remote_write
                .iter()
                .any(|r| r.name.as_deref() == Some(name.as_str()))
            {
                return Err(CliError::Flag {
                    flag: "remote-write.url".into(),
                    msg: format!("the config file already has a remote named {name:?}"),
                });
            }
            config
                .remote_write
                .push(config::RemoteWrite::new(name, config::HttpUrl(url)));
        }
    }
    if let Some(v) = m.get_one::<String>("web.telemetry-path") {
        if !v.starts_with('/') {
            return Err(CliError::Flag {
                flag: "web.telemetry-path".into(),
                msg: format!("{v:?} must start with /"),
            });
        }
        config.web.telemetry_path = v.clone();
    }
    for (id, slot) in [
        ("path.procfs", &mut config.paths.procfs),
        ("path.sysfs", &mut config.paths.sysfs),
        ("path.rootfs", &mut config.paths.rootfs),
        ("path.udev.data", &mut config.paths.udev_data),
    ] {
        if let Some(v) = m.get_one::<String>(id) {
            *slot = PathBuf::from(v);
        }
    }

    // Collector selection: defaults, then the file, then flags.
    let disable_defaults =
        config.collectors.disable_defaults || m.get_flag("collector.disable-defaults");
    let mut collectors = Vec::new();
    let mut unimplemented = Vec::new();
    for k in collector::KNOWN {
        let mut on = k.default_enabled && !disable_defaults;
        if config.collectors.enable.iter().any(|n| n == k.name) {
            on = true;
        }
        if config.collectors.disable.iter().any(|n| n == k.name) {
            on = false;
        }
        if let Some(v) = last_bool(m, &format!("collector.{}", k.name)) {
            on = v;
        }
        if !on {
            continue;
        }
        if k.build.is_some() {
            collectors.push(k.name);
        } else {
            unimplemented.push(k.name);
        }
    }

    // Per-collector options: upstream defaults, then the file, then flags.
    let mut settings = config.collectors.settings.clone();
    for opt in options::all() {
        let res = match opt.kind {
            OptKind::Bool => match last_bool(m, opt.flag) {
                Some(b) => settings.set(opt.flag, Raw::Bool(b)),
                None => Ok(()),
            },
            _ => match m.get_one::<String>(opt.flag) {
                Some(v) => settings.set(opt.flag, Raw::Str(v)),
                None => Ok(()),
            },
        };
        res.map_err(|msg| CliError::Flag {
            flag: opt.flag.to_owned(),
            msg,
        })?;
    }

    let mut limits = crate::http::limits::Limits::default();
    for (id, slot) in [
        ("web.max-requests", &mut limits.max_requests),
        ("web.max-connections", &mut limits.max_connections),
    ] {
        if let Some(v) = m.get_one::<String>(id) {
            *slot = v.parse().map_err(|_| CliError::Flag {
                flag: id.into(),
                msg: format!("{v:?} is not a non-negative integer"),
            })?;
        }
    }
    if limits.max_connections == 0 {
        return Err(CliError::Flag {
            flag: "web.max-connections".into(),
            msg: "must be at least 1".into(),
        });
    }
    let web_config_path = match m.get_one::<String>("web.config.file") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        Some(_) => None,
        None => config.web.config_file.as_ref().map(|p| {
            match config_path.as_deref().and_then(std::path::Path::parent) {
                Some(dir) if p.is_relative() => dir.join(p),
                _ => p.clone(),
            }
        }),
    };
    let web_config = match web_config_path {
        Some(p) => Some(crate::http::web_config::load(&p)?),
        None => None,
    };

    let ctx = Context {
        procfs: config.paths.procfs.clone(),
        sysfs: config.paths.sysfs.clone(),
        rootfs: config.paths.rootfs.clone(),
        udev_data: config.paths.udev_data.clone(),
    };
    Ok(Agent {
        listen: config.web.listen_address.0,
        telemetry_path: config.web.telemetry_path.clone(),
        log_level: m
            .get_one::<String>("log.level")
            .cloned()
            .unwrap_or_else(|| "info".into()),
        limits,
        web_config,
        exporter_metrics: !m.get_flag("web.disable-exporter-metrics"),
        config,
        config_path,
        ctx,
        collectors,
        unimplemented,
        settings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(args: &[&str]) -> Agent {
        let mut v = vec!["cairn"];
        v.extend_from_slice(args);
        match parse(v).unwrap() {
            Invocation::Run(a) | Invocation::Collect(a) | Invocation::WalStatus(a, _) => a,
            Invocation::CheckConfig(_) => panic!("unexpected check-config"),
        }
    }

    #[test]
    fn defaults_enable_implemented_default_collectors() {
        let a = agent(&[]);
        for c in [
            "cpu",
            "meminfo",
            "loadavg",
            "stat",
            "uname",
            "time",
            "os",
            "diskstats",
            "netdev",
            "filesystem",
        ] {
            assert!(a.collectors.contains(&c), "{c}");
        }
        assert_eq!(a.listen.to_string(), "0.0.0.0:9100");
    }

    #[test]
    fn disable_defaults_then_enable_one() {
        let a = agent(&["--collector.disable-defaults", "--collector.loadavg"]);
        assert_eq!(a.collectors, vec!["loadavg"]);
        assert!(a.unimplemented.is_empty());
    }

    #[test]
    fn no_collector_and_last_flag_wins() {
        let a = agent(&["--no-collector.cpu"]);
        assert!(!a.collectors.contains(&"cpu"));
        let a = agent(&["--no-collector.cpu", "--collector.cpu"]);
        assert!(a.collectors.contains(&"cpu"));
    }

    #[test]
    fn flags_after_subcommand_and_filters() {
        let v = [
            "cairn",
            "collect",
            "--once",
            "--path.procfs=/tmp/p",
            "--collector.diskstats.device-include=^sd",
            "--collector.filesystem.mount-points-exclude=",
        ];
        let Invocation::Collect(a) = parse(v).unwrap() else {
            panic!("expected collect")
        };
        assert_eq!(a.ctx.procfs, PathBuf::from("/tmp/p"));
        let s = &a.settings;
        assert!(s
            .regex("collector.diskstats.device-include")
            .unwrap()
            .is_match("sda"));
        assert!(s
            .regex("collector.filesystem.mount-points-exclude")
            .is_none());
    }

    #[test]
    fn remote_write_url_flag_adds_a_remote() {
        let a = agent(&["--remote-write.url=http://127.0.0.1:9090/api/v1/write"]);
        assert_eq!(a.config.remote_write.len(), 1);
        assert_eq!(a.config.remote_write[0].name.as_deref(), Some("cli"));
        let r = parse(["cairn", "--remote-write.url=ftp://x"]);
        assert!(matches!(r, Err(CliError::Flag { .. })));
    }

    #[test]
    fn bad_flag_regex_is_named() {
        let r = parse(["cairn", "--collector.netdev.device-include=("]);
        let Err(e) = r else { panic!("expected error") };
        assert!(
            e.to_string().contains("collector.netdev.device-include"),
            "{e}"
        );
    }

    #[test]
    fn web_limits_and_exporter_metrics_flags() {
        let a = agent(&[]);
        assert_eq!(a.limits.max_requests, 40);
        assert!(a.exporter_metrics && a.web_config.is_none());
        let a = agent(&[
            "--web.max-requests=0",
            "--web.max-connections=8",
            "--web.disable-exporter-metrics",
        ]);
        assert_eq!((a.limits.max_requests, a.limits.max_connections), (0, 8));
        assert!(!a.exporter_metrics);
        for bad in ["--web.max-requests=-1", "--web.max-connections=0"] {
            let Err(e) = parse(["cairn", bad]) else {
                panic!("{bad} accepted")
            };
            assert!(e.to_string().contains("web.max-"), "{e}");
        }
    }

    #[test]
    fn web_config_file_is_loaded_relative_to_the_toml_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("web.yml"),
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
        )
        .unwrap();
        let toml = dir.path().join("cairn.toml");
        std::fs::write(&toml, "[web]\nconfig_file = \"web.yml\"\n").unwrap();
        let a = agent(&["--config", toml.to_str().unwrap()]);
        assert_eq!(a.web_config.map(|w| w.headers.len()), Some(1));
        assert!(check_config(&toml).is_ok());
        std::fs::write(dir.path().join("web.yml"), "headers: {}\n").unwrap();
        let e = check_config(&toml).unwrap_err().to_string();
        assert!(e.contains("web.yml:1:") && e.contains("headers"), "{e}");
    }

    #[test]
    fn check_config_validates_scrape_configs_in_toml_and_yaml() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("scrape.d")).unwrap();
        let yml = dir.path().join("scrape.d/apps.yml");
        std::fs::write(&yml, "scrape_configs:\n  - job_name: app\n    metrics_path: /api/v1/metrics\n    static_configs:\n      - targets: ['localhost:8000']\n").unwrap();
        let toml = dir.path().join("cairn.toml");
        let head = "scrape_config_files = [\"scrape.d/*.yml\"]\n[[scrape_configs]]\njob_name = \"redis\"\n";
        std::fs::write(&toml, head).unwrap();
        assert!(check_config(&toml).is_ok());
        std::fs::write(&toml, format!("{head}honor_label = true\n")).unwrap();
        let e = check_config(&toml).unwrap_err().to_string();
        assert!(
            e.contains("cairn.toml:4: key `scrape_configs.honor_label`"),
            "{e}"
        );
        std::fs::write(&toml, head).unwrap();
        std::fs::write(&yml, "scrape_configs:\n  - job_name: redis\n").unwrap();
        let e = check_config(&toml).unwrap_err().to_string();
        assert!(
            e.contains(
                "apps.yml:2:15: key `scrape_configs.job_name`: found multiple scrape configs"
            ),
            "{e}"
        );
    }
}
