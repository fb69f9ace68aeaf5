//! `os`: node_os_info and node_os_version from os-release, read from
//! `<rootfs>/etc/os-release`, else `<rootfs>/usr/lib/os-release` (only when
//! the first does not exist, as in 1.5.0).
//!
//! Owns a parser that accepts exactly what hashicorp/go-envparse (the library
//! node_exporter uses) accepts: `KEY=value` lines, `#` comment and blank
//! lines, an `export ` prefix, unquoted / '…' / "…" parts mixed in one
//! value, JSON escapes inside "…", and the same errors for anything else.
//! The parsed result is cached keyed by the open file's identity and mtime,
//! so an unchanged file is stat'ed, not re-read, each collection.
//!
//! Must never: panic on the file's content (invalid UTF-8 is replaced
//! lossily; node_exporter 1.5.0 itself crashes on it), or fall back to
//! /usr/lib/os-release when /etc/os-release exists but is unreadable or
//! malformed.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::SystemTime;

use super::{CollectError, Collector, Context};
use crate::metrics::{Emitter, MetricType};

const FILES: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];

/// os-release keys in the order of node_os_info's (sorted) label names.
const KEYS: [&str; 12] = [
    "BUILD_ID",
    "ID",
    "ID_LIKE",
    "IMAGE_ID",
    "IMAGE_VERSION",
    "NAME",
    "PRETTY_NAME",
    "VARIANT",
    "VARIANT_ID",
    "VERSION",
    "VERSION_CODENAME",
    "VERSION_ID",
];
const LABELS: [&str; 12] = [
    "build_id",
    "id",
    "id_like",
    "image_id",
    "image_version",
    "name",
    "pretty_name",
    "variant",
    "variant_id",
    "version",
    "version_codename",
    "version_id",
];
const ID: usize = 1;
const ID_LIKE: usize = 2;
const NAME: usize = 5;
const VERSION_ID: usize = 11;

/// Which file, and which version of it, a cached result came from. 1.5.0
/// compares path and mtime; inode, device and size are added so a file
/// replaced within the mtime's granularity is still noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    file: usize,
    mtime: Option<SystemTime>,
    dev: u64,
    ino: u64,
    len: u64,
}

#[derive(Debug, Default)]
struct Release {
    values: [String; 12],
    /// major.minor of VERSION_ID; 0 means node_os_version is not emitted.
    version: f64,
}

pub struct Os {
    /// The rootfs `paths` were built for (None until the first collection).
    root: Option<PathBuf>,
    /// `FILES` under `root`.
    paths: [PathBuf; 2],
    /// A parse failure is cached too (as its message), so a broken file is
    /// reported every collection without being re-read.
    cached: Option<(Stamp, Result<Release, String>)>,
    buf: Vec<u8>,
    scratch: Vec<u8>,
    #[cfg(test)]
    parses: usize,
}

impl Default for Os {
    fn default() -> Self {
        Self::new()
    }
}

impl Os {
    pub fn new() -> Self {
        Os {
            root: None,
            paths: [PathBuf::new(), PathBuf::new()],
            cached: None,
            buf: Vec::new(),
            scratch: Vec::new(),
            #[cfg(test)]
            parses: 0,
        }
    }
}

impl Collector for Os {
    fn update(&mut self, ctx: &Context, out: &mut Emitter) -> Result<(), CollectError> {
        if self.root.as_ref() != Some(&ctx.rootfs) {
            self.paths = FILES.map(|f| ctx.root_path(f));
            self.root = Some(ctx.rootfs.clone());
        }
        let mut found = None;
        for (i, path) in self.paths.iter().enumerate() {
            match File::open(path) {
                Ok(f) => {
                    found = Some((i, f));
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(CollectError::Io {
                        path: path.clone(),
                        source,
                    })
                }
            }
        }
        let Some((idx, mut file)) = found else {
            return Err(CollectError::Other(format!(
                "no os-release file found ({} nor {})",
                self.paths[0].display(),
                self.paths[1].display()
            )));
        };
        let path = &self.paths[idx];
        let io_err = |source| CollectError::Io {
            path: path.clone(),
            source,
        };
        let meta = file.metadata().map_err(io_err)?;
        let stamp = Stamp {
            file: idx,
            mtime: meta.modified().ok(),
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
        };
        let result = match &mut self.cached {
            Some((s, r)) if *s == stamp => r,
            slot => {
                self.buf.clear();
                file.read_to_end(&mut self.buf).map_err(io_err)?;
                #[cfg(test)]
                {
                    self.parses += 1;
                }
                let parsed = parse_release(&self.buf, &mut self.scratch);
                &mut slot.insert((stamp, parsed)).1
            }
        };
        let release = match result {
            Ok(r) => &*r,
            Err(msg) => return Err(CollectError::parse(path, msg.clone())),
        };

        out.family(
            "node_os_info",
            "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, \
             image_version, name, pretty_name, variant, variant_id, version, version_codename, \
             version_id.",
            MetricType::Gauge,
        )
        .sample_with(1.0, |l| {
            for (name, value) in LABELS.iter().zip(&release.values) {
                l.label(name, value);
            }
        });
        if release.version > 0.0 {
            let v = &release.values;
            out.family(
                "node_os_version",
                "Metric containing the major.minor part of the OS version.",
                MetricType::Gauge,
            )
            .sample(
                &[("id", &v[ID]), ("id_like", &v[ID_LIKE]), ("name", &v[NAME])],
                release.version,
            );
        }
        Ok(())
    }
}

/// Parses a whole os-release file; the error text names the line as
/// go-envparse does.
fn parse_release(data: &[u8], scratch: &mut Vec<u8>) -> Result<Release, String> {
    let mut rel = Release::default();
    for (n, line) in data.split(|&b| b == b'\n').enumerate() {
        // bufio.Scanner's default limit: a longer line fails the parse.
        if line.len() >= 64 * 1024 {
            return Err(format!("error on line {}: token too long", n + 1));
        }
        let key = parse_line(line, scratch).map_err(|e| format!("error on line {}: {e}", n + 1))?;
        let Some(key) = key else { continue };
        // Later assignments win, as in a shell (and go-envparse's map).
        if let Some(i) = KEYS.iter().position(|k| k.as_bytes() == key) {
            rel.values[i].clear();
            rel.values[i].push_str(&String::from_utf8_lossy(scratch));
        }
    }
    rel.version = major_minor(&rel.values[VERSION_ID])?;
    Ok(rel)
}

/// 1.5.0: `regexp("^[0-9]+\.?[0-9]*").FindString(VERSION_ID)` then
/// `strconv.ParseFloat`; no match gives 0 (and no node_os_version).
fn major_minor(version_id: &str) -> Result<f64, String> {
    let b = version_id.as_bytes();
    let digits = |from: usize| from + b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let int_end = digits(0);
    if int_end == 0 {
        return Ok(0.0);
    }
    let end = if b.get(int_end) == Some(&b'.') {
        digits(int_end + 1)
    } else {
        int_end
    };
    let s = &version_id[..end];
    match s.parse::<f64>() {
        // ParseFloat reports out-of-range values as an error.
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!(
            "strconv.ParseFloat: parsing {s:?}: value out of range"
        )),
    }
}

/// Go's `bytes.TrimSpace`: Unicode white space (so also U+0085, U+00A0…)
/// at both ends; bytes that are not valid UTF-8 are not space.
fn trim_space(mut s: &[u8]) -> &[u8] {
    fn ascii_space(b: u8) -> bool {
        matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ')
    }
    fn char_at(s: &[u8]) -> Option<(char, usize)> {
        let w = match s.first()? {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => return None,
        };
        let c = std::str::from_utf8(s.get(..w)?).ok()?.chars().next()?;
        Some((c, w))
    }
    loop {
        match s.first() {
            Some(&b) if ascii_space(b) => s = &s[1..],
            Some(&b) if b >= 0x80 => match char_at(s) {
                Some((c, w)) if c.is_whitespace() => s = &s[w..],
                _ => break,
            },
            _ => break,
        }
    }
    loop {
        match s.last() {
            Some(&b) if ascii_space(b) => s = &s[..s.len() - 1],
            Some(&b) if b >= 0x80 => {
                // Walk back to the lead byte of the last (multi-byte) char.
                let start = (s.len().saturating_sub(4)..s.len()).find(|&i| {
                    s[i] & 0xc0 != 0x80 && char_at(&s[i..]).is_some_and(|(_, w)| i + w == s.len())
                });
                match start.and_then(|i| Some((i, char_at(&s[i..])?.0))) {
                    Some((i, c)) if c.is_whitespace() => s = &s[..i],
                    _ => break,
                }
            }
            _ => break,
        }
    }
    s
}

/// go-envparse's `parseLine`: returns the key (None for blank and comment
/// lines) and leaves the unquoted, unescaped value in `val`.
fn parse_line<'a>(line: &'a [u8], val: &mut Vec<u8>) -> Result<Option<&'a [u8]>, String> {
    val.clear();
    let ln = trim_space(line);
    if ln.is_empty() || ln[0] == b'#' {
        return Ok(None);
    }
    let Some(eq) = ln.iter().position(|&b| b == b'=') else {
        return Err("missing =".into());
    };
    let mut key = trim_space(&ln[..eq]);
    let value = trim_space(&ln[eq + 1..]);

    const EXPORT: &[u8] = b"export ";
    if key.len() > EXPORT.len() && key.starts_with(EXPORT) {
        key = &key[EXPORT.len()..];
    }
    let Some(&first) = key.first() else {
        return Err("empty key".into());
    };
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return Err(format!(
            "key must start with [A-Za-z_] but found {}",
            quote_byte(first)
        ));
    }
    if let Some(&bad) = key[1..]
        .iter()
        .find(|&&c| !(c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/')))
    {
        return Err(format!(
            "key characters must be [A-Za-z0-9/_.] but found {}",
            quote_byte(bad)
        ));
    }

    #[derive(PartialEq)]
    enum Mode {
        Normal,
        Double,
        Single,
        Escape,
    }
    let mut mode = Mode::Normal;
    // Length of the value up to its last significant (non-blank or quoted)
    // byte, for trimming blanks before a trailing comment.
    let mut last_sig = 0;
    let mut i = 0;
    while i < value.len() {
        let v = value[i];
        if v < 32 {
            return Err(format!("0x{v:02x} is an invalid value character"));
        }
        if v > 127 {
            if mode == Mode::Escape {
                return Err("multibyte characters disallowed in escape sequences".into());
            }
            // go-envparse records lastSig *before* appending here, so a
            // multi-byte char right before a trailing comment loses its
            // last byte; kept for parity (the lossy UTF-8 step shows it).
            last_sig = val.len();
            val.push(v);
            i += 1;
            continue;
        }
        match mode {
            Mode::Normal => match v {
                b'"' => mode = Mode::Double,
                b'\'' => mode = Mode::Single,
                b'#' => {
                    val.truncate(last_sig);
                    return Ok(Some(key));
                }
                b' ' | b'\t' => val.push(v),
                _ => {
                    val.push(v);
                    last_sig = val.len();
                }
            },
            Mode::Double => match v {
                b'"' => mode = Mode::Normal,
                b'\\' => mode = Mode::Escape,
                _ => {
                    val.push(v);
                    last_sig = val.len();
                }
            },
            Mode::Escape => {
                match v {
                    b'"' | b'\\' | b'/' => val.push(v),
                    b'b' => val.push(0x08),
                    b'f' => val.push(0x0c),
                    b'r' => val.push(b'\r'),
                    b'n' => val.push(b'\n'),
                    b't' => val.push(b'\t'),
                    b'u' => {
                        let mut r = hex4(&value[i + 1..])?;
                        i += 4;
                        if (0xd800..0xe000).contains(&r) {
                            if value.len() < i + 6 || value[i + 1] != b'\\' || value[i + 2] != b'u'
                            {
                                return Err("incomplete Unicode surrogate pair".into());
                            }
                            let r2 = hex4(&value[i + 3..])?;
                            i += 6;
                            // utf16.DecodeRune: U+FFFD unless a proper pair.
                            r = if (0xd800..0xdc00).contains(&r) && (0xdc00..0xe000).contains(&r2) {
                                0x10000 + ((r - 0xd800) << 10) + (r2 - 0xdc00)
                            } else {
                                0xfffd
                            };
                        }
                        let c = char::from_u32(r).unwrap_or('\u{fffd}');
                        let mut enc = [0u8; 4];
                        val.extend_from_slice(c.encode_utf8(&mut enc).as_bytes());
                    }
                    _ => {
                        return Err(format!(
                            "invalid escape sequence: {:?}",
                            char::from(v).to_string()
                        ))
                    }
                }
                last_sig = val.len();
                mode = Mode::Double;
            }
            Mode::Single => match v {
                b'\'' => mode = Mode::Normal,
                _ => {
                    val.push(v);
                    last_sig = val.len();
                }
            },
        }
        i += 1;
    }
    match mode {
        Mode::Normal => Ok(Some(key)),
        Mode::Double => Err("unmatched \"".into()),
        Mode::Single => Err("unmatched '".into()),
        Mode::Escape => Err("incomplete escape sequence".into()),
    }
}

/// Four hex digits as a code point (go-envparse's `h2r`).
fn hex4(b: &[u8]) -> Result<u32, String> {
    if b.len() < 4 {
        return Err("incomplete hex sequence".into());
    }
    let mut r = 0u32;
    for &d in &b[..4] {
        let n = (d as char)
            .to_digit(16)
            .ok_or_else(|| format!("invalid hex character: {:?}", char::from(d).to_string()))?;
        r = r * 16 + n;
    }
    Ok(r)
}

fn quote_byte(b: u8) -> String {
    format!("{:?}", char::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testutil::{fixture_ctx, render};

    fn info(labels: &[(&str, &str)]) -> String {
        let mut all: Vec<(&str, &str)> = LABELS.iter().map(|l| (*l, "")).collect();
        for (k, v) in labels {
            all.iter_mut().find(|(l, _)| l == k).unwrap().1 = v;
        }
        let body: Vec<String> = all.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        format!("node_os_info{{{}}} 1", body.join(","))
    }

    fn samples(case: &str) -> Vec<String> {
        let text = render(&mut Os::new(), &fixture_ctx(&format!("os/{case}"))).unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn debian_12() {
        assert_eq!(
            samples("debian12"),
            [
                info(&[
                    ("id", "debian"),
                    ("name", "Debian GNU/Linux"),
                    ("pretty_name", "Debian GNU/Linux 12 (bookworm)"),
                    ("version", "12 (bookworm)"),
                    ("version_codename", "bookworm"),
                    ("version_id", "12"),
                ]),
                "node_os_version{id=\"debian\",id_like=\"\",name=\"Debian GNU/Linux\"} 12".into(),
            ]
        );
        let text = render(&mut Os::new(), &fixture_ctx("os/debian12")).unwrap();
        assert!(text.starts_with(
            "# HELP node_os_info A metric with a constant '1' value labeled by build_id, id, \
             id_like, image_id, image_version, name, pretty_name, variant, variant_id, version, \
             version_codename, version_id.\n# TYPE node_os_info gauge\n"
        ));
        assert!(text.contains(
            "# HELP node_os_version Metric containing the major.minor part of the OS version.\n\
             # TYPE node_os_version gauge\n"
        ));
    }

    #[test]
    fn ubuntu_22_04() {
        assert_eq!(
            samples("ubuntu2204"),
            [
                info(&[
                    ("id", "ubuntu"),
                    ("id_like", "debian"),
                    ("name", "Ubuntu"),
                    ("pretty_name", "Ubuntu 22.04.3 LTS"),
                    ("version", "22.04.3 LTS (Jammy Jellyfish)"),
                    ("version_codename", "jammy"),
                    ("version_id", "22.04"),
                ]),
                "node_os_version{id=\"ubuntu\",id_like=\"debian\",name=\"Ubuntu\"} 22.04".into(),
            ]
        );
    }

    #[test]
    fn raspberry_pi_os_11() {
        assert_eq!(
            samples("raspbian11"),
            [
                info(&[
                    ("id", "raspbian"),
                    ("id_like", "debian"),
                    ("name", "Raspbian GNU/Linux"),
                    ("pretty_name", "Raspbian GNU/Linux 11 (bullseye)"),
                    ("version", "11 (bullseye)"),
                    ("version_codename", "bullseye"),
                    ("version_id", "11"),
                ]),
                "node_os_version{id=\"raspbian\",id_like=\"debian\",name=\"Raspbian GNU/Linux\"} 11"
                    .into(),
            ]
        );
    }

    #[test]
    fn alpine_3_18_4_keeps_major_minor() {
        assert_eq!(
            samples("alpine3184"),
            [
                info(&[
                    ("id", "alpine"),
                    ("name", "Alpine Linux"),
                    ("pretty_name", "Alpine Linux v3.18"),
                    ("version_id", "3.18.4"),
                ]),
                "node_os_version{id=\"alpine\",id_like=\"\",name=\"Alpine Linux\"} 3.18".into(),
            ]
        );
    }

    #[test]
    fn falls_back_to_usr_lib_os_release() {
        assert_eq!(
            samples("usr_lib_only"),
            [
                info(&[
                    ("id", "fedora"),
                    ("name", "Fedora Linux"),
                    ("pretty_name", "Fedora CoreOS 38.20231027.3.2"),
                    ("variant", "CoreOS"),
                    ("variant_id", "coreos"),
                    ("version", "38.20231027.3.2 (CoreOS)"),
                    ("version_id", "38"),
                ]),
                "node_os_version{id=\"fedora\",id_like=\"\",name=\"Fedora Linux\"} 38".into(),
            ]
        );
    }

    #[test]
    fn odd_quoting_parses_like_go_envparse() {
        assert_eq!(
            samples("odd_quoting"),
            [info(&[
                ("build_id", "2023-10-01"),
                ("id", "odd"),
                ("id_like", "debian ubuntu"),
                ("image_id", "img#1"),
                ("image_version", "1.2 beta"),
                ("name", "Odd \\\"Linux\\\" é 🔥"),
                ("pretty_name", "single \\\\\\\\n 'kept' # not a comment"),
                ("variant", "mixed plain single double  "),
                ("variant_id", "a\\nb\tc/"),
                ("version", "2 (sid)"),
                ("version_codename", "sid"),
                ("version_id", "bookworm/sid"),
            ])]
        );
    }

    #[test]
    fn missing_both_files_fails() {
        let err = render(&mut Os::new(), &fixture_ctx("os/missing")).unwrap_err();
        assert!(
            err.to_string().contains("no os-release file found"),
            "{err}"
        );
    }

    #[test]
    fn malformed_etc_file_fails_without_fallback() {
        let mut os = Os::new();
        let ctx = fixture_ctx("os/malformed");
        for _ in 0..2 {
            let err = render(&mut os, &ctx).unwrap_err();
            assert!(
                err.to_string().contains("error on line 3: unmatched \""),
                "{err}"
            );
        }
        assert_eq!(os.parses, 1, "an unchanged broken file is not re-read");
    }

    #[test]
    fn unchanged_file_is_not_reparsed() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        let file = etc.join("os-release");
        std::fs::write(&file, "ID=one\nVERSION_ID=1\n").unwrap();
        let ctx = Context {
            rootfs: dir.path().to_owned(),
            ..Context::default()
        };
        let mut os = Os::new();
        for _ in 0..3 {
            assert!(render(&mut os, &ctx).unwrap().contains("id=\"one\""));
        }
        assert_eq!(os.parses, 1);

        // A rewrite with a new mtime is picked up.
        std::fs::write(&file, "ID=two\nVERSION_ID=2.5\n").unwrap();
        let f = File::options().write(true).open(&file).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1))
            .unwrap();
        let text = render(&mut os, &ctx).unwrap();
        assert!(text.contains("id=\"two\""), "{text}");
        assert!(text.contains("} 2.5\n"), "{text}");
        assert_eq!(os.parses, 2);

        // Removing /etc/os-release switches to /usr/lib/os-release.
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir_all(dir.path().join("usr/lib")).unwrap();
        std::fs::write(dir.path().join("usr/lib/os-release"), "ID=three\n").unwrap();
        let text = render(&mut os, &ctx).unwrap();
        assert!(text.contains("id=\"three\""), "{text}");
        assert!(!text.contains("node_os_version"), "{text}");
    }

    #[test]
    fn version_id_major_minor() {
        for (v, want) in [
            ("12", 12.0),
            ("22.04", 22.04),
            ("3.18.4", 3.18),
            ("bookworm/sid", 0.0),
            ("", 0.0),
            ("0", 0.0),
            ("1.", 1.0),
            ("01.0200", 1.02),
            (" 3", 0.0),
            ("2023.1-rc", 2023.1),
        ] {
            assert_eq!(major_minor(v), Ok(want), "{v:?}");
        }
        assert!(major_minor(&"9".repeat(400)).is_err());
    }

    #[test]
    fn line_errors_match_go_envparse() {
        let mut v = Vec::new();
        let cases: &[(&[u8], &str)] = &[
            (b"noequals", "missing ="),
            (b"=x", "empty key"),
            (b"1A=x", "key must start with [A-Za-z_] but found '1'"),
            (
                b"NA-ME=x",
                "key characters must be [A-Za-z0-9/_.] but found '-'",
            ),
            (
                b"export  A=x",
                "key must start with [A-Za-z_] but found ' '",
            ),
            (b"A=\"x", "unmatched \""),
            (b"A='x", "unmatched '"),
            (b"A=\"x\\", "incomplete escape sequence"),
            (b"A=\"\\$\"", "invalid escape sequence: \"$\""),
            (b"A=a\tb", "0x09 is an invalid value character"),
            (b"A=\"\\u12zz\"", "invalid hex character: \"z\""),
            (b"A=\"\\u12", "incomplete hex sequence"),
            (b"A=\"\\ud83dx\"", "incomplete Unicode surrogate pair"),
            (
                b"A=\"\\\xc3\xa9\"",
                "multibyte characters disallowed in escape sequences",
            ),
        ];
        for (line, want) in cases {
            let got = parse_line(line, &mut v).unwrap_err();
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn line_values_match_go_envparse() {
        let mut v = Vec::new();
        let cases: &[(&[u8], &str, &[u8])] = &[
            (b"FoO=", "FoO", b""),
            (b" FOO = bar baz ", "FOO", b"bar baz"),
            (b"export FOO=bar", "FOO", b"bar"),
            (b"FOO=#bar#", "FOO", b""),
            (b"FOO= # bar ", "FOO", b""),
            (b"FOO=\"bar\\n\" # comment", "FOO", b"bar\n"),
            (b"FOO = \" bar\\t\" ", "FOO", b" bar\t"),
            (b"FOO='\\n' # empty", "FOO", b"\\n"),
            (b"FOO=normal'single ' ", "FOO", b"normalsingle "),
            (b"_=x' ' ", "_", b"x "),
            (b"A.b/c=1", "A.b/c", b"1"),
            (b"A=\"\\ud83d\\udd25\"", "A", "\u{1F525}".as_bytes()),
            (b"A=\"\\udd25\\ud83d\"", "A", "\u{FFFD}".as_bytes()),
            (b"A=\xc2\xa0x\xc2\xa0\r", "A", b"x"),
            // The multi-byte char before a comment loses its last byte.
            (b"A=\xc3\xa9 # c", "A", b"\xc3"),
        ];
        for (line, key, want) in cases {
            let got = parse_line(line, &mut v).unwrap();
            assert_eq!(
                got,
                Some(key.as_bytes()),
                "{:?}",
                String::from_utf8_lossy(line)
            );
            assert_eq!(&v[..], *want, "{:?}", String::from_utf8_lossy(line));
        }
        for blank in [&b""[..], b"   ", b"# x", b"  # x=1", b"\r"] {
            assert_eq!(parse_line(blank, &mut v).unwrap(), None);
        }
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut s = Vec::new();
        let rel = parse_release(b"NAME=\xff\xfe\nID=x\n", &mut s).unwrap();
        assert_eq!(rel.values[NAME], "\u{FFFD}\u{FFFD}");
        assert_eq!(trim_space(b"\xff "), b"\xff");
        assert_eq!(trim_space(" \u{3000}a\u{2029}".as_bytes()), b"a");
    }
}
